"""Bar mask refinement cost per instance, beside the paste, on one core, in one run.

A 2048 x 2048 BGR picture (smooth texture) with N solid bars of sides 3-25 % of the image
(some rotated, some with anti-aliased edges, the whole picture JPEG'd at quality 85); model-like
masks: each bar's mask resized to 28 x 28 and pasted back over its box by the compositor.

  paste      ``cendetect.engine.paste_masks`` of the N 28 x 28 masks (compact bitmaps)
  refine     ``cendetect.engine.refine.refine_masks`` (C++, csrc/refine.cpp) on the N masks
  reference  ``refine_masks_reference`` (NumPy + OpenCV, engine/refine.py): the peer, the same
             definition written with library calls

One compositor thread and one torch / OpenCV thread (the issue's target is per core). Prints
the median ms per image and per instance, and the ratio reference / refine.

    .venv/bin/python benchmarks/bench_refine.py [--n 5 20] [--size 2048] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import cv2
import numpy as np
import torch

from cendetect.data.paint import paint_bar
from cendetect.engine import paste_masks
from cendetect.engine.compositor import get_num_threads, set_num_threads
from cendetect.engine.refine import refine_masks, refine_masks_reference
from cendetect.runtime import cpu_name


def _case(size: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    probs, boxes = [], []
    for _ in range(n):
        w, h = rng.uniform(0.03, 0.25, 2) * size
        cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
        t = np.zeros((size, size), np.uint8)
        rect = ((cx, cy), (w, h), float(rng.choice([0.0, rng.uniform(-30, 30)])))
        cv2.fillPoly(t, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        paint_bar(img, t.astype(bool), colour, float(rng.choice([0.0, 0.6])))
        ys, xs = np.nonzero(t)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        crop = t[y0:y1, x0:x1].astype(np.float32)
        probs.append(cv2.resize(crop, (28, 28), interpolation=cv2.INTER_AREA))
        boxes.append((x0, y0, x1, y1))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, np.stack(probs).astype(np.float32), np.array(boxes, np.float32)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _row(size: int, n: int, repeats: int) -> tuple[float, float, float]:
    """Median ms of (paste, refine, reference) for one case of ``n`` bars."""
    img, probs, boxes = _case(size, n, n)
    masks = paste_masks(probs, boxes, img.shape[:2])
    which = np.ones(n, bool)
    paste = _median_ms(lambda: paste_masks(probs, boxes, img.shape[:2]), repeats)
    ours = _median_ms(lambda: refine_masks(img, masks, which), repeats)
    ref = _median_ms(
        lambda: refine_masks_reference(img, masks, np.zeros(n, int), {0}), max(1, repeats // 2)
    )
    return paste, ours, ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--n", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    before = get_num_threads()
    set_num_threads(1)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"CPU: {cpu_name()}; 1 thread; {args.size} x {args.size}; median of {args.repeats}")
    print(f"{'N':>4} {'paste ms':>9} {'refine ms':>10} {'per inst':>9} {'ref ms':>9} {'ratio':>7}")
    try:
        for n in args.n:
            paste, ours, ref = _row(args.size, n, args.repeats)
            print(f"{n:>4} {paste:>9.2f} {ours:>10.2f} {ours / n:>9.2f} {ref:>9.1f} "
                  f"{ref / ours:>6.1f}x")  # fmt: skip
    finally:
        set_num_threads(before)


if __name__ == "__main__":
    main()
