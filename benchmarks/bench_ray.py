"""``cendetect run`` against ``cendetect run --ray`` (1 and 2 model actors), side by side.

The same ``--images`` pictures (default 200: the bundled samples and the parity photos, each
resized to a few sizes, written once to a temporary folder) go through each way in turn, in
one invocation, each in a fresh process with a fresh output folder. Printed per way: wall
time of the whole command (start-up, and for Ray the local cluster's start and stop,
included), images/s, the ratio to the local run, and the peak of the summed resident memory
of the command's whole process tree (the driver, and Ray's GCS, raylet and workers; sampled
every 0.1 s from /proc).

    .venv/bin/python benchmarks/bench_ray.py [--images 200] [--ways local,ray1,ray2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cendetect.runtime import cpu_name  # noqa: E402

WAYS = {
    "local": [],
    "ray1": ["--ray", "--actors", "1", "--cpus-per-actor", "1"],
    "ray2": ["--ray", "--actors", "2", "--cpus-per-actor", "1"],
}


def _pictures(folder: Path, n: int) -> None:
    sources = sorted((ROOT / "samples").glob("*.jpg"))
    sources += sorted((ROOT / "tests" / "data" / "mmdet" / "images").glob("*.jpg"))
    images = [cv2.imread(str(p)) for p in sources]
    images = [im for im in images if im is not None]
    sides = (512, 768, 1024)
    for k in range(n):
        im = images[k % len(images)]
        side = sides[(k // len(images)) % len(sides)]
        scale = side / max(im.shape[:2])
        im = cv2.resize(im, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"img_{k:04d}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 92])


def _tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            ppid, pages = int(fields[1]), int(fields[21])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * page
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        total += rss.get(p, 0)
        stack.extend(children.get(p, []))
    return total


def _run(args: list[str]) -> tuple[float, int, str]:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.1)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    th.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
    return seconds, peak, out.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--ways", default="local,ray1,ray2", help=f"comma list of {', '.join(WAYS)}")
    args = ap.parse_args()
    ways = [w for w in args.ways.split(",") if w]
    for w in ways:
        if w not in WAYS:
            raise SystemExit(f"unknown way {w!r}; choose from {', '.join(WAYS)}")
    with tempfile.TemporaryDirectory(prefix="cendetect_bench_ray_") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "in").mkdir()
        _pictures(tmp / "in", args.images)
        rows = []
        for way in ways:
            out = tmp / f"out_{way}"
            cmd = [sys.executable, "-m", "cendetect", "run", "--input_path", str(tmp / "in"),
                   "--output_path", str(out), "--no-progress", *WAYS[way]]  # fmt: skip
            seconds, peak, line = _run(cmd)
            rows.append((way, seconds, peak, line))
    load = os.getloadavg()
    print(f"date: {time.strftime('%Y-%m-%d %H:%M %Z')}; cpu: {cpu_name()}, {os.cpu_count()} cores")
    print(f"{args.images} images (512-1024 px long side), the bundled default model")
    print(f"load average at the end: {load[0]:.2f}")
    print("| way | wall s | images/s | vs local | peak RSS MB | summary |")
    print("|---|---|---|---|---|---|")
    base = next((s for w, s, _, _ in rows if w == "local"), None)
    for way, seconds, peak, line in rows:
        ratio = f"{base / seconds:.2f}x" if base else "-"
        rate = args.images / seconds
        print(f"| {way} | {seconds:.1f} | {rate:.2f} | {ratio} | {peak / 1e6:.0f} | {line} |")


if __name__ == "__main__":
    main()
