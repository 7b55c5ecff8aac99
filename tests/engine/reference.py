"""Slow, obviously-right references for the mask compositor. Only for tests.

``paste_reference`` is mmdetection 2.28's ``_do_paste_mask`` for one box at a time (what it runs
on the CPU, ``skip_empty=True``), written with torch ops exactly as that function (and
detectron2's ``paste_masks_in_image``) computes: float32 pixel-centre coordinates, inf -> 0,
``F.grid_sample(align_corners=False)``, then ``>= threshold``. It also returns the sampled
values and a bound on their rounding noise (:func:`sample_noise`), so tests can tell
disagreements at the threshold from real ones. Boxes with a
non-finite coordinate or ``x2 < x1`` / ``y2 < y1`` select nothing (the compositor's documented
rule; mmdetection never produces such boxes).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from tests.tolerances import U32


def sample_noise(masks: np.ndarray) -> np.ndarray:
    """Per mask, how far apart two CPU code paths' bilinear samples of it can be (``[N]``).

    The compositor and torch's AVX2/AVX-512 ``grid_sample`` compute the sample coordinate
    ``X = (u + 1) * M / 2 - 0.5`` with one fused multiply-add, torch's scalar path
    (``ATEN_CPU_CAPABILITY=default``) with a product and a sum: per axis two roundings of values
    below ``M + 1`` (``U32 * (M + 1)`` each), which move the sample by that times the mask's
    largest step between neighbouring cells (zero padding included). The four taps'
    multiply-adds add at most 8 roundings of values up to ``max |mask|``. (On AVX2/AVX-512 the
    samples are equal: test_bit_identical_to_mmdetection_on_this_cpu.) NaN cells count as 0:
    a sample that reads one is NaN, never selected, on both paths.
    """
    m = np.nan_to_num(np.asarray(masks, dtype=np.float64), nan=0.0)
    if m.shape[0] == 0:
        return np.zeros(0)
    padded = np.pad(m, ((0, 0), (1, 1), (1, 1)))
    step_y = np.abs(np.diff(padded, axis=1)).max(axis=(1, 2))
    step_x = np.abs(np.diff(padded, axis=2)).max(axis=(1, 2))
    mh, mw = m.shape[1:]
    largest = np.abs(m).max(axis=(1, 2))
    return U32 * (2 * (mh + 1) * step_y + 2 * (mw + 1) * step_x + 8 * largest)


def paste_reference(
    masks: np.ndarray, boxes: np.ndarray, height: int, width: int, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(``bool [N, H, W]`` masks, ``float32 [N, H, W]`` samples, NaN where nothing was sampled,
    and each mask's :func:`sample_noise`)."""
    m = torch.from_numpy(np.ascontiguousarray(masks)).float()
    b = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).reshape(-1, 4)
    n = m.shape[0]
    values = np.full((n, height, width), np.nan, dtype=np.float32)
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in b[i])
        if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 < x1 or y2 < y1:
            continue
        x0i, y0i = max(math.floor(x1) - 1, 0), max(math.floor(y1) - 1, 0)
        x1i, y1i = min(math.ceil(x2) + 1, width), min(math.ceil(y2) + 1, height)
        if x1i <= x0i or y1i <= y0i:
            continue
        box = b[i : i + 1]
        img_x = torch.arange(x0i, x1i).to(torch.float32) + 0.5
        img_y = torch.arange(y0i, y1i).to(torch.float32) + 0.5
        gx = (img_x - box[:, 0:1]) / (box[:, 2:3] - box[:, 0:1]) * 2 - 1
        gy = (img_y - box[:, 1:2]) / (box[:, 3:4] - box[:, 1:2]) * 2 - 1
        gx[torch.isinf(gx)] = 0
        gy[torch.isinf(gy)] = 0
        grid = torch.stack(
            [
                gx[:, None, :].expand(1, gy.shape[1], gx.shape[1]),
                gy[:, :, None].expand(1, gy.shape[1], gx.shape[1]),
            ],
            dim=3,
        )
        sample = F.grid_sample(m[i : i + 1, None], grid, align_corners=False)[0, 0]
        values[i, y0i:y1i, x0i:x1i] = sample.numpy()
    with np.errstate(invalid="ignore"):
        return values >= np.float32(threshold), values, sample_noise(m.numpy())


def assert_matches_reference(
    got: np.ndarray,
    ref: np.ndarray,
    values: np.ndarray,
    noise: np.ndarray,
    threshold: float = 0.5,
) -> int:
    """Asserts ``got == ref`` except where the sample is within its mask's ``noise`` (from
    :func:`paste_reference`) of the threshold; returns the number of such tolerated
    disagreements."""
    assert got.shape == ref.shape, (got.shape, ref.shape)
    diff = got != ref
    if not diff.any():
        return 0
    with np.errstate(invalid="ignore"):
        gap = np.abs(values.astype(np.float64) - np.float32(threshold))
        near = gap <= np.asarray(noise, dtype=np.float64)[:, None, None]
    bad = diff & ~near
    if bad.any():
        idx = tuple(int(v[0]) for v in np.nonzero(bad))
        raise AssertionError(
            f"{int(bad.sum())} pixels differ from the reference away from the threshold; first "
            f"at (instance, y, x) = {idx}: got {got[idx]}, sample {values[idx]!r}"
        )
    return int(diff.sum())


def fill_reference(image: np.ndarray, ref_masks: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """``image`` with instance i's pixels set to ``colors[i]``, instances painted in order."""
    out = image.copy()
    for i in range(ref_masks.shape[0]):
        out[ref_masks[i]] = colors[i]
    return out


def dilate_reference(mask: np.ndarray, k: int) -> np.ndarray:
    """Square-kernel dilation by k pixels: a pixel is set when any pixel within Chebyshev
    distance k is."""
    h, w = mask.shape
    padded = np.pad(mask, k)
    out = np.zeros_like(mask)
    for dy in range(2 * k + 1):
        for dx in range(2 * k + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


def block_mean_reference(image: np.ndarray, block: int) -> np.ndarray:
    """Each pixel replaced by the rounded mean of its block (grid anchored at the origin)."""
    h, w, c = image.shape
    out = np.empty_like(image)
    for y in range(0, h, block):
        for x in range(0, w, block):
            blk = image[y : y + block, x : x + block].reshape(-1, c).astype(np.int64)
            out[y : y + block, x : x + block] = (blk.sum(0) + blk.shape[0] // 2) // blk.shape[0]
    return out
