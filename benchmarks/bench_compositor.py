"""Mask compositor: ours against the peers' algorithms and the memory floor, in one run.

What is measured: the wall time of turning N instance masks (``float32 [N, 28, 28]``
probabilities + ``[N, 4]`` boxes, as the model returns them) into a BGR uint8 image with every
selected pixel set to pure green (CenDetect's output), on one image already in memory:

  ours        ``cendetect.engine.fill_masks(..., inplace=True)``: C++ paste + fill in one pass,
              compositor threads = all cores
  ours+masks  ``paste_masks`` (compact bitmaps, what ``Detections`` keeps) then
              ``composite(mode="fill")``
  grid_sample mmdetection 2.28 ``get_seg_masks`` on CPU (detectron2's ``paste_masks_in_image``
              is the same algorithm): ``im_mask = zeros(N, H, W, bool)``; per box,
              ``_do_paste_mask(skip_empty=True)`` = float32 pixel-centre grid over the box +- 1
              window, ``F.grid_sample``, ``>= 0.5``; then the numpy fill
              ``image[im_mask.any(0)] = green``. torch threads = all cores.
  cv2.resize  per instance ``cv2.resize(mask, (w, h), INTER_LINEAR)`` to the integer box,
              ``> 0.5``, ``image[y0:y1, x0:x1][m] = green`` (torchvision / Matterport style)
  floor       one memcpy of the pixels inside the boxes: per box
              ``image[y0:y1, x0:x1] = green_image[y0:y1, x0:x1]`` (numpy, row memcpy)

Each method runs in a block: a 50 ms pause (torch's OpenMP workers spin-wait for milliseconds
after an op and would otherwise compete with the next method's threads on 2 cores), a warm-up
call, then at least ``--repeats`` timed calls back to back (more, up to 50, while under 0.5 s);
the median is reported in ms per image. The machine's load average is printed before and after:
other processes on the machine slow multi-threaded methods most.
``Mpx in`` is the number of pixels in the paste windows (box +- 1) of all instances.
``peak MB`` (``pk+mk MB``) is the peak resident memory one call of ours (ours+masks) adds
(Linux: ``/proc/self/clear_refs`` resets the high-water mark, then ``VmHWM - VmRSS before``);
``masks MB`` is the size of the output masks: the compact bitmaps (one byte per window pixel)
for ours, N x H x W bools for the peers.

Cases: square images of 1024, 2048 and 4096 pixels with N = 5, 20, 100 instances. Boxes have
sides uniform in [5 %, 30 %] of the image side, placed inside the image (seed 0); masks are
smooth random blobs (4 x 4 logits N(1.5, 2) upsampled to 28 x 28, sigmoid).

Usage (repo root):  .venv/bin/python benchmarks/bench_compositor.py [--repeats N] [--sizes ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from cendetect.engine import composite, fill_masks, paste_masks
from cendetect.engine.compositor import get_num_threads, set_num_threads

GREEN = np.array([0, 255, 0], np.uint8)
SETTLE_S = 0.05


def make_case(size: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
    sides = rng.uniform(0.05, 0.3, (n, 2)) * size
    x0 = rng.uniform(0, size - sides[:, 0])
    y0 = rng.uniform(0, size - sides[:, 1])
    boxes = np.stack([x0, y0, x0 + sides[:, 0], y0 + sides[:, 1]], 1).astype(np.float32)
    logits = torch.from_numpy(rng.normal(1.5, 2.0, (n, 1, 4, 4)).astype(np.float32))
    probs = torch.sigmoid(F.interpolate(logits, (28, 28), mode="bilinear", align_corners=False))
    return image, probs[:, 0].numpy().copy(), boxes


# ---- the peers, from their documented algorithms ----------------------------------------


def grid_sample_fill(image: np.ndarray, probs: np.ndarray, boxes: np.ndarray) -> None:
    h, w = image.shape[:2]
    n = probs.shape[0]
    masks_t = torch.from_numpy(probs)
    boxes_t = torch.from_numpy(boxes)
    im_mask = torch.zeros((n, h, w), dtype=torch.bool)
    for i in range(n):  # mmdet on CPU: one box per chunk, skip_empty=True
        box = boxes_t[i : i + 1]
        x0_int, y0_int = torch.clamp(box.min(dim=0).values.floor()[:2] - 1, min=0).to(torch.int32)
        x1_int = torch.clamp(box[:, 2].max().ceil() + 1, max=w).to(torch.int32)
        y1_int = torch.clamp(box[:, 3].max().ceil() + 1, max=h).to(torch.int32)
        bx0, by0, bx1, by1 = torch.split(box, 1, dim=1)
        img_y = torch.arange(int(y0_int), int(y1_int)).to(torch.float32) + 0.5
        img_x = torch.arange(int(x0_int), int(x1_int)).to(torch.float32) + 0.5
        img_y = (img_y - by0) / (by1 - by0) * 2 - 1
        img_x = (img_x - bx0) / (bx1 - bx0) * 2 - 1
        gx = img_x[:, None, :].expand(1, img_y.size(1), img_x.size(1))
        gy = img_y[:, :, None].expand(1, img_y.size(1), img_x.size(1))
        grid = torch.stack([gx, gy], dim=3)
        chunk = F.grid_sample(masks_t[i : i + 1, None], grid, align_corners=False)[:, 0]
        im_mask[i : i + 1, int(y0_int) : int(y1_int), int(x0_int) : int(x1_int)] = chunk >= 0.5
    image[im_mask.numpy().any(0)] = GREEN


def int_box(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0 = int(np.floor(box[0])), int(np.floor(box[1]))
    x1, y1 = max(int(np.ceil(box[2])), x0 + 1), max(int(np.ceil(box[3])), y0 + 1)
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def cv2_resize_fill(image: np.ndarray, probs: np.ndarray, boxes: np.ndarray) -> None:
    h, w = image.shape[:2]
    for i in range(probs.shape[0]):
        x0, y0, x1, y1 = int_box(boxes[i], h, w)
        m = cv2.resize(probs[i], (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) > 0.5
        image[y0:y1, x0:x1][m] = GREEN


def floor_copy(image: np.ndarray, green: np.ndarray, boxes: np.ndarray) -> None:
    h, w = image.shape[:2]
    for box in boxes:
        x0, y0, x1, y1 = int_box(box, h, w)
        image[y0:y1, x0:x1] = green[y0:y1, x0:x1]


# ---- measurement ------------------------------------------------------------------------


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median ms of back-to-back calls: a pause, a warm-up call, then at least ``repeats``
    timed calls (more, up to 50, while under 0.5 s in total)."""
    time.sleep(SETTLE_S)
    fn()
    times: list[float] = []
    while len(times) < repeats or (len(times) < 50 and sum(times) < 0.5):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_extra_mb(fn: Callable[[], object]) -> float:
    """Peak RSS the call adds, in MB (nan where /proc/self/clear_refs is unavailable)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        before = _status_kb("VmRSS")
    except OSError:
        return float("nan")
    fn()
    return (_status_kb("VmHWM") - before) / 1024


def measure(size: int, n: int, repeats: int) -> dict[str, float]:
    """Times of every method on one case, plus its memory figures."""
    image, probs, boxes = make_case(size, n)
    green = np.empty_like(image)
    green[:] = GREEN
    work = image.copy()

    def ours() -> None:
        fill_masks(work, probs, boxes, inplace=True)

    def ours_masks() -> None:
        composite(work, paste_masks(probs, boxes, work.shape[:2]), inplace=True)

    methods: dict[str, Callable[[], object]] = {
        "ours": ours,
        "ours+masks": ours_masks,
        "grid": lambda: grid_sample_fill(work, probs, boxes),
        "cv2": lambda: cv2_resize_fill(work, probs, boxes),
        "floor": lambda: floor_copy(work, green, boxes),
    }
    t = {name: median_ms(fn, repeats) for name, fn in methods.items()}
    t["peak"] = peak_extra_mb(ours)
    t["peak_mk"] = peak_extra_mb(ours_masks)
    t["masks"] = paste_masks(probs, boxes, image.shape[:2]).data.size / 2**20
    return t


def run(sizes: list[int], counts: list[int], repeats: int) -> None:
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"compositor threads {get_num_threads()}, torch threads {torch.get_num_threads()}, "
        f"load {os.getloadavg()[0]:.2f}"
    )
    head = (
        f"{'image':>9} {'N':>4} {'Mpx in':>7} | {'ours':>8} {'ours+mk':>8} {'grid_smp':>9} "
        f"{'cv2.rsz':>8} {'floor':>7} | {'grid/ours':>9} {'cv2/ours':>8} {'ours/flr':>8} | "
        f"{'peak MB':>7} {'pk+mk MB':>8} {'masks MB':>8} {'peer masks MB':>13}"
    )
    print(head)
    print("-" * len(head))
    for size in sizes:
        for n in counts:
            t = measure(size, n, repeats)
            print(
                f"{size:>4}x{size:<4} {n:>4} {t['masks'] * 2**20 / 1e6:>7.2f} | {t['ours']:>8.2f} "
                f"{t['ours+masks']:>8.2f} {t['grid']:>9.1f} {t['cv2']:>8.2f} {t['floor']:>7.2f} | "
                f"{t['grid'] / t['ours']:>8.1f}x {t['cv2'] / t['ours']:>7.1f}x "
                f"{t['ours'] / t['floor']:>7.2f}x | {t['peak']:>7.1f} {t['peak_mk']:>8.1f} "
                f"{t['masks']:>8.1f} "
                f"{n * size * size / 2**20:>13.1f}",
                flush=True,
            )
    print(f"# load after: {os.getloadavg()[0]:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    ap.add_argument("--counts", type=int, nargs="+", default=[5, 20, 100])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="compositor threads (0: all cores)")
    args = ap.parse_args()
    set_num_threads(args.threads)
    run(args.sizes, args.counts, args.repeats)


if __name__ == "__main__":
    main()
