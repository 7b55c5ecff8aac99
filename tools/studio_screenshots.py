"""Screenshots of the studio for docs/studio.md, made from a real run (so they stay current).

Opens a folder of the bundled samples plus two of Debian's wallpapers with a bar and a mosaic in
``cendetect studio`` (the default model), drives it with Playwright on Debian's chromium, and
writes docs/studio/{grid,image,after,correct,export}.jpg.

    .venv/bin/python tools/studio_screenshots.py [--out docs/studio]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.studio.conftest import Server, censored, pixelate_box, write  # noqa: E402

WALLPAPERS = Path("/usr/share/wallpapers")


def picture(seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A picture with a black bar and a 16-px mosaic, and the bar's truth: one of Debian's
    wallpapers when they are installed (./setup.sh), else generated texture."""
    import cv2

    files = sorted(WALLPAPERS.glob(f"{name}/contents/images/1920x1080.*"))
    if not files:
        image, bar, _ = censored(seed, 540, 960)
        return image, bar
    image = cv2.resize(cv2.imread(str(files[0])), (960, 540), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    bar = np.zeros((h, w), np.uint8)
    pts = cv2.boxPoints(((w * 0.3, h * 0.35), (w * 0.3, h * 0.08), 20)).astype(np.int32)
    cv2.fillPoly(bar, [pts], 1)
    image[bar > 0] = (0, 0, 0)
    image = pixelate_box(image, (528, 272, 720, 400), 16)
    return image, bar > 0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "studio")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "pictures"
        for p in sorted((ROOT / "samples").glob("*.jpg")):
            (folder / p.name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(p, folder / p.name)
        image, bar = picture(11, "FallenLeaf")
        write(folder / "wallpapers" / "leaves.png", image)
        write(folder / "wallpapers" / "path.png", picture(12, "Path")[0])
        server = Server([str(folder), "--output_path", str(Path(tmp) / "out")])
        url = server.start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                page.goto(url)
                page.wait_for_function(
                    "() => document.querySelector('#progress-text').textContent.includes('done')",
                    timeout=300_000,
                )
                page.wait_for_function(
                    "() => [...document.querySelectorAll('.tile img')].every(i => i.complete)"
                )
                page.screenshot(path=str(args.out / "grid.jpg"), type="jpeg", quality=85)
                page.click('.tile[data-name="sample_1.jpg"]')
                page.wait_for_function("() => S.info && S.info.status === 'done'")
                page.wait_for_function("() => document.querySelector('#picture').complete")
                page.screenshot(path=str(args.out / "image.jpg"), type="jpeg", quality=85)
                page.keyboard.press("f")
                page.wait_for_function(
                    "() => document.querySelector('#picture').src.includes('/api/result/')"
                    " && document.querySelector('#picture').complete"
                )
                page.wait_for_timeout(300)
                page.screenshot(path=str(args.out / "after.jpg"), type="jpeg", quality=85)
                page.keyboard.press("f")
                # correct: drop the model's bar, grow it with one click, paint a stroke
                page.keyboard.press("Escape")
                page.click('.tile[data-name="wallpapers/leaves.png"]')
                page.wait_for_function("() => S.info && S.info.status === 'done'")
                page.wait_for_function("() => document.querySelector('#picture').complete")
                v = page.evaluate("() => S.view")
                r = page.locator("#stage").bounding_box()

                def at(x: float, y: float) -> tuple[float, float]:
                    return r["x"] + v["x"] + x * v["s"], r["y"] + v["y"] + y * v["s"]

                ys, xs = np.nonzero(bar)
                page.keyboard.press("1")
                page.keyboard.press("a")
                n = page.evaluate("() => S.info.instances.length")
                page.mouse.click(*at(float(np.median(xs)), float(np.median(ys))))
                page.wait_for_function(f"() => S.info.instances.length > {n}")
                page.keyboard.press("Escape")
                page.keyboard.press("2")
                page.keyboard.press("b")
                page.mouse.move(*at(80, 470))
                page.mouse.down()
                for x in range(80, 260, 10):
                    page.mouse.move(*at(x, 470 - (x - 80) / 4))
                page.mouse.up()
                page.wait_for_function(f"() => S.info.instances.length > {n + 1}")
                page.screenshot(path=str(args.out / "correct.jpg"), type="jpeg", quality=85)
                page.click("#export-open")
                page.check("#export-form input[name=deepcreampy]")
                page.check("#export-form input[name=coco]")
                page.click("#export-go")
                result = "document.querySelector('#export-result').textContent"
                page.wait_for_function(f"() => {result}.includes('exported')")
                page.screenshot(path=str(args.out / "export.jpg"), type="jpeg", quality=85)
                browser.close()
        finally:
            server.stop()
    for f in sorted(args.out.glob("*.jpg")):
        print(f, f.stat().st_size // 1024, "KB")


if __name__ == "__main__":
    main()
