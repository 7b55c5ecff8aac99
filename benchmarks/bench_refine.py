"""Mask refinement cost per instance, beside the paste, on one core, in one run.

A 2048 x 2048 BGR picture (smooth texture) with N regions of sides 3-25 % of the image, the
whole picture JPEG'd at quality 85: solid bars (``--kind bar``: some rotated, some with
anti-aliased edges) or mosaics (``--kind mosaic``: cells of 0.4-3 % of the side, rectangles and
ellipses, half of them snapped to whole cells). Model-like masks: each region's mask resized to
28 x 28 and pasted back over its box by the compositor.

  paste      ``cendetect.engine.paste_masks`` of the N 28 x 28 masks (compact bitmaps)
  refine     ``cendetect.engine.refine.refine_masks`` (C++: csrc/refine.cpp, refine_mosaic.cpp)
  reference  ``refine_masks_reference`` (NumPy + OpenCV + plain Python loops, engine/refine.py,
             engine/refine_mosaic.py): the peer, the same definition

One compositor thread and one torch / OpenCV thread (the issue's target is per core). Prints
the median ms per image and per instance, and the ratio reference / refine.

    .venv/bin/python benchmarks/bench_refine.py [--kind bar mosaic] [--n 5 20] [--size 2048]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import cv2
import numpy as np
import torch
from common import median_ms  # benchmarks/common.py (this script's folder is on the path)

from cendetect.data.paint import paint_bar, pixelate, snap_to_grid
from cendetect.engine import paste_masks
from cendetect.engine.compositor import get_num_threads, set_num_threads
from cendetect.engine.refine import (
    REFINE_BAR,
    REFINE_MOSAIC,
    refine_masks,
    refine_masks_reference,
)
from cendetect.runtime import cpu_name


def _case(size: int, n: int, seed: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size // 32, size // 32, 3), dtype=np.uint8)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    if kind == "mosaic":  # fine detail for the pixelation to remove
        noise = rng.integers(-20, 21, img.shape, dtype=np.int16)
        img = np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    probs, boxes = [], []
    for _ in range(n):
        w, h = rng.uniform(0.03, 0.25, 2) * size
        cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
        t = np.zeros((size, size), np.uint8)
        if kind == "bar":
            rect = ((cx, cy), (w, h), float(rng.choice([0.0, rng.uniform(-30, 30)])))
            cv2.fillPoly(t, [np.round(cv2.boxPoints(rect)).astype(np.int32)], 1)
            colour = tuple(int(v) for v in rng.integers(0, 256, 3))
            paint_bar(img, t.astype(bool), colour, float(rng.choice([0.0, 0.6])))
        else:
            if rng.random() < 0.5:
                cv2.rectangle(
                    t, (int(cx - w / 2), int(cy - h / 2)), (int(cx + w / 2), int(cy + h / 2)), 1, -1
                )  # noqa: E501
            else:
                cv2.ellipse(t, (int(cx), int(cy)), (int(w / 2), int(h / 2)), 0.0, 0, 360, 1, -1)
            block = max(3, round(size * float(rng.uniform(0.004, 0.03))))
            origin = (int(rng.integers(0, block)), int(rng.integers(0, block)))
            m = t.astype(bool)
            if rng.random() < 0.5:
                m = snap_to_grid(m, block, origin)
            img[m] = pixelate(img, block, origin)[m]
            t = m.astype(np.uint8)
        ys, xs = np.nonzero(t)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        crop = t[y0:y1, x0:x1].astype(np.float32)
        probs.append(cv2.resize(crop, (28, 28), interpolation=cv2.INTER_AREA))
        boxes.append((x0, y0, x1, y1))
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img, np.stack(probs).astype(np.float32), np.array(boxes, np.float32)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    return median_ms(fn, repeats)[0]


def _row(size: int, n: int, repeats: int, kind: str) -> tuple[float, float, float]:
    """Median ms of (paste, refine, reference) for one case of ``n`` regions."""
    img, probs, boxes = _case(size, n, n, kind)
    masks = paste_masks(probs, boxes, img.shape[:2])
    kinds = np.full(n, REFINE_BAR if kind == "bar" else REFINE_MOSAIC, np.uint8)
    paste = _median_ms(lambda: paste_masks(probs, boxes, img.shape[:2]), repeats)
    ours = _median_ms(lambda: refine_masks(img, masks, kinds), repeats)
    ref = _median_ms(lambda: refine_masks_reference(img, masks, kinds), max(1, repeats // 4))
    return paste, ours, ref


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--n", type=int, nargs="+", default=[5, 20])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--kind", nargs="+", choices=("bar", "mosaic"), default=["bar", "mosaic"])
    args = ap.parse_args()
    before = get_num_threads()
    set_num_threads(1)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    print(f"CPU: {cpu_name()}; 1 thread; {args.size} x {args.size}; median of {args.repeats}")
    print(f"{'kind':>6} {'N':>4} {'paste ms':>9} {'refine ms':>10} {'per inst':>9} {'ref ms':>9} "
          f"{'ratio':>7}")  # fmt: skip
    try:
        for kind in args.kind:
            for n in args.n:
                paste, ours, ref = _row(args.size, n, args.repeats, kind)
                print(f"{kind:>6} {n:>4} {paste:>9.2f} {ours:>10.2f} {ours / n:>9.2f} {ref:>9.1f} "
                      f"{ref / ours:>6.1f}x")  # fmt: skip
    finally:
        set_num_threads(before)


if __name__ == "__main__":
    main()
