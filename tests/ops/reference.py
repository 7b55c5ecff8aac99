"""Slow, obviously-right references for cendetect.ops, written from the mmcv/mmdetection rules.

Plain Python loops over numpy scalars of the inputs' dtype, so float32 rounding matches the
kernels step by step. Only for tests.

Tolerances: the C++ kernels evaluate the same expressions in the same order without fused
multiply-adds (``-ffp-contract=off``; their AVX2/AVX-512 clones only vectorize across channels,
numpy's loops only across array elements), so the kernels equal these references bit for bit on
every x86-64 code path and the tests compare them exactly. Where two implementations sum in
different orders, :func:`reorder_bound` gives the tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from tests.tolerances import U32, reorder_tol


def reorder_bound(dtype: torch.dtype, depth: int, scale: float, layers: int = 1) -> float:
    """:func:`tests.tolerances.reorder_tol` for sums computed in ``dtype``: the float32 bound
    scaled by the ratio of the unit roundoffs (float64: 2**-53 / 2**-24 = 2**-29)."""
    return reorder_tol(depth, scale, layers) * (torch.finfo(dtype).eps / 2) / U32


def _score_order(scores: np.ndarray) -> list[int]:
    # Decreasing score, NaN first (as torch.sort(descending=True)), ties by lower index.
    def key(i: int) -> tuple[int, float]:
        s = float(scores[i])
        return (0, 0.0) if math.isnan(s) else (1, -s)

    return sorted(range(len(scores)), key=key)


def _iou(a: np.ndarray, b: np.ndarray) -> np.generic:
    # mmcv nms_cpu with offset 0, evaluated in the boxes' dtype.
    zero = a.dtype.type(0)
    w = max(zero, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(zero, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a + area_b - inter)


def nms_reference(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    b = boxes.numpy()
    s = scores.numpy()
    thr = b.dtype.type(iou_threshold)
    order = _score_order(s)
    suppressed = [False] * len(order)
    keep = []
    for pos, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        for j in order[pos + 1 :]:
            if not suppressed[j] and _iou(b[i], b[j]) > thr:
                suppressed[j] = True
    return torch.tensor(keep, dtype=torch.long)


def batched_nms_reference(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    """Group by group, then all kept boxes by decreasing score (ties: lower index)."""
    kept: list[int] = []
    for group in torch.unique(idxs).tolist():
        members = (idxs == group).nonzero().squeeze(1)
        kept += members[nms_reference(boxes[members], scores[members], iou_threshold)].tolist()
    s = scores.numpy()
    rank = {i: r for r, i in enumerate(_score_order(s))}
    return torch.tensor(sorted(kept, key=rank.__getitem__), dtype=torch.long)


def mmcv_offset_batched_nms(
    boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float
) -> Tensor:
    """mmcv's batched_nms below split_thr: shift each class by idx * (max + 1), one nms."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms_reference(boxes + offsets[:, None], scores, iou_threshold)


def _bilinear(feat: np.ndarray, y: np.generic, x: np.generic) -> np.ndarray:
    # mmcv bilinear_interpolate: feat [C, H, W], one sample for every channel.
    t = feat.dtype.type
    _, height, width = feat.shape
    if y < -1.0 or y > height or x < -1.0 or x > width or math.isnan(y) or math.isnan(x):
        return np.zeros(feat.shape[0], feat.dtype)
    y = max(y, t(0))
    x = max(x, t(0))
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = t(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = t(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - t(y_low), x - t(x_low)
    hy, hx = t(1) - ly, t(1) - lx
    return (
        (hy * hx) * feat[:, y_low, x_low]
        + (hy * lx) * feat[:, y_low, x_high]
        + (ly * hx) * feat[:, y_high, x_low]
        + (ly * lx) * feat[:, y_high, x_high]
    )


def _grid(size: np.generic, bins: int, sampling_ratio: int) -> int:
    if sampling_ratio > 0:
        return sampling_ratio
    cells = math.ceil(size / size.dtype.type(bins)) if not math.isnan(size) else 0
    return max(cells, 0)


def _roi_grid(
    roi: np.ndarray,
    out_h: int,
    out_w: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> tuple[np.generic, np.generic, np.generic, np.generic, int, int]:
    """mmcv's (start_w, start_h, bin_w, bin_h, grid_h, grid_w) of one roi, in its dtype."""
    t = roi.dtype.type
    scale = t(spatial_scale)
    offset = t(0.5) if aligned else t(0)
    start_w, start_h = roi[1] * scale - offset, roi[2] * scale - offset
    roi_w = (roi[3] * scale - offset) - start_w
    roi_h = (roi[4] * scale - offset) - start_h
    if not aligned:
        roi_w, roi_h = max(roi_w, t(1)), max(roi_h, t(1))
    bin_h, bin_w = roi_h / t(out_h), roi_w / t(out_w)
    grid_h = _grid(roi_h, out_h, sampling_ratio)
    grid_w = _grid(roi_w, out_w, sampling_ratio)
    return start_w, start_h, bin_w, bin_h, grid_h, grid_w


def samples_per_bin(
    rois: Tensor,
    output_size: int | list[int],
    spatial_scales: list[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int = 56,
) -> int:
    """The most bilinear samples one output bin of these rois averages (at least 1): the
    accumulation depth of RoIAlign. Several ``spatial_scales``: each roi at its FPN level."""
    size = [output_size] * 2 if isinstance(output_size, int) else list(output_size)
    r = rois.to(torch.float64 if rois.dtype == torch.float64 else torch.float32)
    levels = map_roi_levels(r, len(spatial_scales), finest_scale)
    levels = levels if len(spatial_scales) > 1 else [0] * len(r)
    most = 1
    for roi, level in zip(r.numpy(), levels, strict=True):
        if level is not None:
            *_, gh, gw = _roi_grid(roi, *size, spatial_scales[level], sampling_ratio, aligned)
            most = max(most, gh * gw)
    return most


def roi_align_one(
    feat: np.ndarray,
    roi: np.ndarray,
    out_h: int,
    out_w: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> np.ndarray:
    """mmcv RoIAlign (avg) of one roi over feat [C, H, W]; returns [C, out_h, out_w]."""
    t = feat.dtype.type
    channels, height, width = feat.shape
    out = np.zeros((channels, out_h, out_w), feat.dtype)
    if height == 0 or width == 0:
        return out
    start_w, start_h, bin_w, bin_h, grid_h, grid_w = _roi_grid(
        roi.astype(feat.dtype), out_h, out_w, spatial_scale, sampling_ratio, aligned
    )
    count = t(max(grid_h * grid_w, 1))
    for ph in range(out_h):
        for pw in range(out_w):
            acc = np.zeros(channels, feat.dtype)
            for iy in range(grid_h):
                y = start_h + t(ph) * bin_h + t(iy + 0.5) * bin_h / t(grid_h)
                for ix in range(grid_w):
                    x = start_w + t(pw) * bin_w + t(ix + 0.5) * bin_w / t(grid_w)
                    acc += _bilinear(feat, y, x)
            out[:, ph, pw] = acc / count
    return out


def roi_align_reference(
    feat: Tensor,
    rois: Tensor,
    output_size: list[int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    f = feat.numpy()
    r = rois.to(feat.dtype).numpy()
    out = np.zeros((len(r), f.shape[1], *output_size), f.dtype)
    for k, roi in enumerate(r):
        out[k] = roi_align_one(
            f[int(roi[0])], roi, *output_size, spatial_scale, sampling_ratio, aligned
        )
    return torch.from_numpy(out)


def map_roi_levels(rois: Tensor, num_levels: int, finest_scale: int) -> list[int | None]:
    """mmdetection 2.28 SingleRoIExtractor.map_roi_levels; None where the level is NaN."""
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6))
    levels = levels.clamp(min=0, max=num_levels - 1)
    return [None if math.isnan(v) else int(v) for v in levels.tolist()]


def multi_level_reference(
    feats: list[Tensor],
    rois: Tensor,
    output_size: int,
    spatial_scales: list[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int,
) -> Tensor:
    r = rois.to(feats[0].dtype)
    out = torch.zeros((len(r), feats[0].shape[1], output_size, output_size), dtype=r.dtype)
    levels = map_roi_levels(r, len(feats), finest_scale) if len(feats) > 1 else [0] * len(r)
    for k, level in enumerate(levels):
        if level is None:
            continue  # mmdetection: a NaN level matches no level, the roi keeps zeros
        f = feats[level].numpy()[int(r[k, 0])]
        args = (output_size, output_size, spatial_scales[level], sampling_ratio, aligned)
        out[k] = torch.from_numpy(roi_align_one(f, r[k].numpy(), *args))
    return out
