"""The studio's speed, as a person meets it, in a real browser (Playwright + Debian's chromium).

  open        time from pressing Open on a folder of N pictures (1,000 and 5,000 JPEGs of
              1280 x 720) until the first 12 thumbnails are on screen (cold: no thumbnail
              cached yet); the model loads and detection runs at the same time, as in real use
  redraw      a click on a region of a 2048 x 2048 picture (drop / keep) until the page has
              redrawn it, median of 10; and a brush stroke until its region is drawn
  large       the same click and a one-click bar on an 8000 x 8000 picture
  seed        (``--seed-accuracy``, no browser) how well one click grows a region: 12 of
              Debian's wallpapers at 960 x 540, each with a rotated black bar and a pixelated
              rectangle (cells 4-24 px), JPEG at quality 60-95; IoU of the grown region with
              the truth, and the time per click
  export      green PNGs of 20 pictures of 2048 x 2048: the studio's export (read, fill, write)
              against ``cendetect run`` writing the same files (the peer: it also detects),
              per picture, with the ratio

The studio runs as ``cendetect studio`` in a child process (2 CPU threads); the default model.

    .venv/bin/python benchmarks/bench_studio.py [--sizes 1000 5000] [--work /tmp/bench_studio]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from common import cpu_name  # benchmarks/common.py (this script's folder is on the path)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.studio.conftest import censored  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def _write(path: Path, image: np.ndarray, quality: int = 90) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    path.write_bytes(buf.tobytes())


def make_folder(root: Path, n: int) -> Path:
    """``n`` JPEGs of 1280 x 720 (50 distinct pictures, hard-linked under other names)."""
    folder = root / f"pictures_{n}"
    if folder.is_dir() and len(list(folder.rglob("*.jpg"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    base = []
    for i in range(50):
        image = cv2.resize(censored(i, 360, 640)[0], (1280, 720), interpolation=cv2.INTER_LINEAR)
        p = root / "distinct" / f"{i:02d}.jpg"
        _write(p, image)
        base.append(p)
    for i in range(n):
        dst = folder / f"part_{i // 500:02d}" / f"picture_{i:05d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(base[i % 50], dst)
    return folder


class Studio:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cendetect", "studio", "--no-browser", "--port", "0", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            m = re.search(r"(http://\S+)", line)
            if m:
                self.url = m.group(1)
                break

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def _first_thumbs(page, count: int = 12) -> None:
    page.wait_for_function(
        f"""() => {{
          const imgs = [...document.querySelectorAll('.tile:not(.hidden) img')].slice(0, {count});
          return imgs.length === {count} && imgs.every(i => i.complete && i.naturalWidth > 0);
        }}""",
        timeout=120_000,
    )


def bench_open(browser, work: Path, sizes: list[int]) -> list[str]:
    rows = []
    for n in sizes:
        folder = make_folder(work, n)
        out = work / f"out_{n}"
        shutil.rmtree(out, ignore_errors=True)
        s = Studio()
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(s.url)
            page.fill("#folder", str(folder))
            page.fill("#output", str(out))
            t0 = time.perf_counter()
            page.click("#open")
            _first_thumbs(page)
            cold = time.perf_counter() - t0
            tiles = page.locator(".tile").count()
            page.wait_for_function(f"() => document.querySelectorAll('.tile').length === {n}",
                                   timeout=120_000)  # fmt: skip
            grid = time.perf_counter() - t0
            page.reload()
            t0 = time.perf_counter()
            page.wait_for_selector(".tile")
            _first_thumbs(page)
            warm = time.perf_counter() - t0
            page.close()
        finally:
            s.stop()
        rows.append(f"| open {n:,} pictures | first 12 thumbnails {cold:.2f} s ({tiles:,} tiles "
                    f"built by then; all {n:,} in {grid:.2f} s) | reload (cached thumbnails): "
                    f"{warm:.2f} s |")  # fmt: skip
    return rows


def _click_latency(page, repeats: int = 10) -> float:
    times = []
    for _ in range(repeats):
        before = page.evaluate("() => S.info.version")
        box = page.evaluate("() => S.info.instances.find(i => i.kept || true).box")
        v = page.evaluate("() => S.view")
        r = page.locator("#stage").bounding_box()
        # the centre of the region's box
        x = r["x"] + v["x"] + (box[0] + box[2]) / 2 * v["s"]
        y = r["y"] + v["y"] + (box[1] + box[3]) / 2 * v["s"]
        t0 = time.perf_counter()
        page.mouse.click(x, y)
        page.wait_for_function(f"() => S.info.version > {before}")
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def bench_redraw(browser, work: Path) -> list[str]:
    rows = []
    for side in (2048, 8000):
        folder = work / f"one_{side}"
        shutil.rmtree(folder, ignore_errors=True)
        image, bar, _ = censored(7, 360, 480)
        big = cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST)
        _write(folder / "picture.jpg", big, 95)
        s = Studio(str(folder), "--output_path", str(work / f"one_{side}_out"))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto(s.url)
            page.wait_for_function("() => S.images.length && S.images[0].status === 'done'",
                                   timeout=300_000)  # fmt: skip
            page.click(".tile")
            page.wait_for_function("() => S.info && S.info.instances.length > 0", timeout=120_000)
            page.wait_for_function("() => document.querySelector('#picture').complete",
                                   timeout=120_000)  # fmt: skip
            click = _click_latency(page)
            # a one-click bar on the (known) bar
            ys, xs = np.nonzero(bar)
            bx, by = (
                (float(np.median(xs)) + 0.5) * side / 480,
                (float(np.median(ys)) + 0.5) * side / 360,
            )
            page.keyboard.press("Escape")
            page.keyboard.press("1")
            page.keyboard.press("a")
            v = page.evaluate("() => S.view")
            r = page.locator("#stage").bounding_box()
            n = page.evaluate("() => S.info.instances.length")
            t0 = time.perf_counter()
            page.mouse.click(r["x"] + v["x"] + bx * v["s"], r["y"] + v["y"] + by * v["s"])
            page.wait_for_function(f"() => S.info.instances.length > {n}", timeout=120_000)
            seed = (time.perf_counter() - t0) * 1000
            # a brush stroke of 10 points
            page.keyboard.press("Escape")
            page.keyboard.press("b")
            n = page.evaluate("() => S.info.instances.length")
            sx, sy = r["x"] + v["x"] + 0.1 * side * v["s"], r["y"] + v["y"] + 0.9 * side * v["s"]
            page.mouse.move(sx, sy)
            page.mouse.down()
            for k in range(10):
                page.mouse.move(sx + 8 * k, sy)
            t0 = time.perf_counter()
            page.mouse.up()
            page.wait_for_function(f"() => S.info.instances.length > {n}")
            stroke = (time.perf_counter() - t0) * 1000
            page.close()
        finally:
            s.stop()
        rows.append(f"| {side} x {side} picture | click to redraw {click:.0f} ms (median of 10) | "
                    f"brush stroke {stroke:.0f} ms | one-click bar {seed:.0f} ms |")  # fmt: skip
        print(rows[-1], flush=True)
    return rows


def bench_export(work: Path, n: int = 20) -> list[str]:
    from cendetect import Detector
    from cendetect.cli import main
    from cendetect.studio.export import ExportOptions, export
    from cendetect.studio.session import Studio as Session

    folder = work / "export_in"
    shutil.rmtree(folder, ignore_errors=True)
    for i in range(n):
        image = cv2.resize(
            censored(100 + i, 360, 360)[0], (2048, 2048), interpolation=cv2.INTER_LINEAR
        )
        _write(folder / f"p{i:02d}.jpg", image)
    model = ROOT / "cendetect" / "weights" / "mobilenet_v2_fpn.pth"
    det = Detector.from_checkpoint(model)
    studio = Session(lambda: det)
    studio.open(folder, work / "export_out")
    while studio.done < n:
        time.sleep(0.2)
    t0 = time.perf_counter()
    res = export(studio, ExportOptions(green=True))
    ours = (time.perf_counter() - t0) / n
    assert res["images"] == n
    ref = work / "export_ref"
    shutil.rmtree(ref, ignore_errors=True)
    t0 = time.perf_counter()
    main(["run", "--no-progress", "--input_path", str(folder), "--output_path", str(ref),
          "--checkpoint", str(model)])  # fmt: skip
    peer = (time.perf_counter() - t0) / n
    names = [f"p{i:02d}.png" for i in range(n)]
    same = all((ref / f).read_bytes() == (work / "export_out" / f).read_bytes() for f in names)
    return [f"| export green PNGs, {n} x 2048 x 2048 | {ours * 1000:.0f} ms / picture | "
            f"cendetect run (detects too) {peer * 1000:.0f} ms / picture | ratio run / export "
            f"{peer / ours:.2f} | byte-equal: {same} |"]  # fmt: skip


def seed_accuracy() -> list[str]:
    import glob

    from cendetect.data.paint import pixelate
    from cendetect.studio.seed import SeedError, seed_region

    files = sorted(glob.glob("/usr/share/wallpapers/*/contents/images/1920x1080.*"))[:12]
    rows = ["| wallpaper | cell px | JPEG q | bar IoU | mosaic IoU | ms / click (bar, mosaic) |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for k, f in enumerate(files):
        img = cv2.resize(cv2.imread(f), (960, 540), interpolation=cv2.INTER_AREA)
        h, w = img.shape[:2]
        cell, q = [4, 6, 9, 12, 16, 24][k % 6], [60, 75, 90, 95][k % 4]
        bar = np.zeros((h, w), np.uint8)
        pts = cv2.boxPoints(((w * 0.3, h * 0.4), (w * 0.25, h * 0.06), 25)).astype(np.int32)
        cv2.fillPoly(bar, [pts], 1)
        img[bar > 0] = (0, 0, 0)
        mosaic = np.zeros((h, w), bool)
        mosaic[int(h * 0.55) : int(h * 0.85), int(w * 0.5) : int(w * 0.8)] = True
        img[mosaic] = pixelate(img, cell, (3, 5))[mosaic]
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        cells, times = [], []
        for truth, x, y, cls in ((bar > 0, 0.3, 0.4, "bar"), (mosaic, 0.65, 0.7, "mosaic")):
            t0 = time.perf_counter()
            try:
                (x0, y0, x1, y1), crop = seed_region(img, int(w * x), int(h * y), cls)
                m = np.zeros((h, w), bool)
                m[y0:y1, x0:x1] = crop
                cells.append(f"{(m & truth).sum() / (m | truth).sum():.3f}")
            except SeedError:
                cells.append("refused")
            times.append(f"{(time.perf_counter() - t0) * 1000:.0f}")
        name = Path(f).parts[4]
        rows.append(f"| {name} | {cell} | {q} | {cells[0]} | {cells[1]} | {', '.join(times)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench_studio"))
    ap.add_argument("--skip", nargs="*", default=[], choices=["open", "redraw", "export"])
    ap.add_argument("--seed-accuracy", action="store_true", help="only the one-click study")
    args = ap.parse_args()
    if args.seed_accuracy:
        print("\n".join(seed_accuracy()))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    print(f"# bench_studio: {cpu_name()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")
    rows: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        if "open" not in args.skip:
            rows += bench_open(browser, args.work, args.sizes)
            print("\n".join(rows), flush=True)
        if "redraw" not in args.skip:
            rows += bench_redraw(browser, args.work)
        browser.close()
    if "export" not in args.skip:
        more = bench_export(args.work)
        print("\n".join(more), flush=True)
        rows += more


if __name__ == "__main__":
    main()
