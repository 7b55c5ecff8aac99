"""Pure-torch RoIAlign (average, mmcv semantics) for devices without a native kernel.

Used on non-CPU tensors when torchvision is unusable. Vectorised per group of rois that share a
sampling grid; slower and hungrier than a kernel, but runs on any device torch supports. The
semantics are those of csrc/roi_align.h, which the tests check both implementations against.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Rois pooled per vectorised step: bounds the [rois, C, samples] temporaries.
_ROI_CHUNK = 64


def _taps(start: Tensor, bin_size: Tensor, pooled: int, grid: int, size: int) -> tuple[Tensor, ...]:
    """Sample positions along one axis: [k, pooled * grid] low/high index, weights, validity."""
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    i = torch.arange(grid, device=start.device, dtype=start.dtype) + 0.5
    v = start[:, None, None] + p[None, :, None] * bin_size[:, None, None]
    v = (v + i[None, None, :] * bin_size[:, None, None] / grid).flatten(1)
    valid = (v >= -1) & (v <= size)  # NaN is invalid too
    v = torch.where(valid, v, torch.zeros_like(v)).clamp(min=0)
    lo = v.floor().long()
    last = lo >= size - 1
    lo = torch.where(last, torch.full_like(lo, size - 1), lo)
    hi = torch.where(last, lo, lo + 1)
    v = torch.where(last, lo.to(v.dtype), v)
    frac = v - lo.to(v.dtype)
    return lo, hi, frac, 1 - frac, valid


def _pool_group(
    feat: Tensor,
    rois: Tensor,
    geometry: tuple[Tensor, ...],
    out_h: int,
    out_w: int,
    gh: int,
    gw: int,
) -> Tensor:
    start_h, start_w, bin_h, bin_w = geometry
    _, channels, height, width = feat.shape
    ylo, yhi, yfrac, yrest, yvalid = _taps(start_h, bin_h, out_h, gh, height)
    xlo, xhi, xfrac, xrest, xvalid = _taps(start_w, bin_w, out_w, gw, width)
    k = rois.shape[0]
    flat = feat.flatten(2)[rois[:, 0].long()]  # [k, C, H * W]

    def corner(y: Tensor, x: Tensor) -> Tensor:
        index = (y[:, :, None] * width + x[:, None, :]).flatten(1)  # [k, S]
        return flat.gather(2, index[:, None, :].expand(k, channels, -1))

    def weight(wy: Tensor, wx: Tensor) -> Tensor:
        return (wy[:, :, None] * wx[:, None, :]).flatten(1)[:, None, :]

    val = (
        weight(yrest, xrest) * corner(ylo, xlo)
        + weight(yrest, xfrac) * corner(ylo, xhi)
        + weight(yfrac, xrest) * corner(yhi, xlo)
        + weight(yfrac, xfrac) * corner(yhi, xhi)
    )
    valid = (yvalid[:, :, None] & xvalid[:, None, :]).flatten(1)[:, None, :]
    val = torch.where(valid, val, torch.zeros((), dtype=val.dtype, device=val.device))
    val = val.view(k, channels, out_h, gh, out_w, gw).sum(dim=(3, 5))
    return val / max(gh * gw, 1)


def roi_align_torch(
    feat: Tensor,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign of ``feat [B, C, H, W]`` over ``rois [K, 5]``; returns ``[K, C, h, w]``.

    Inputs are assumed checked (see cendetect.ops.roi_align). Half precision is computed in
    float32 and cast back.
    """
    out_h, out_w = output_size
    k, channels = rois.shape[0], feat.shape[1]
    out = feat.new_zeros((k, channels, out_h, out_w))
    if k == 0 or channels == 0 or feat.shape[2] == 0 or feat.shape[3] == 0:
        return out
    dtype = feat.dtype if feat.dtype in (torch.float32, torch.float64) else torch.float32
    x = feat.to(dtype)
    r = rois.to(dtype)
    offset = 0.5 if aligned else 0.0
    start_w = r[:, 1] * spatial_scale - offset
    start_h = r[:, 2] * spatial_scale - offset
    roi_w = (r[:, 3] * spatial_scale - offset) - start_w
    roi_h = (r[:, 4] * spatial_scale - offset) - start_h
    if not aligned:  # legacy behaviour: rois are at least one cell
        roi_w = roi_w.clamp(min=1)
        roi_h = roi_h.clamp(min=1)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    if sampling_ratio > 0:
        grid_h = torch.full((k,), sampling_ratio, dtype=torch.long, device=r.device)
        grid_w = grid_h
    else:  # ceil(roi / pooled); empty, negative and NaN rois get no samples
        grid_h = torch.nan_to_num(torch.ceil(bin_h), nan=0.0).clamp(0, 1 << 20).long()
        grid_w = torch.nan_to_num(torch.ceil(bin_w), nan=0.0).clamp(0, 1 << 20).long()
    geometry = (start_h, start_w, bin_h, bin_w)
    pairs = torch.stack([grid_h, grid_w], dim=1)
    for gh, gw in torch.unique(pairs, dim=0).tolist():
        if gh == 0 or gw == 0:
            continue  # no samples: the output stays 0, as the kernel's 0 / max(count, 1)
        members = ((grid_h == gh) & (grid_w == gw)).nonzero().squeeze(1)
        for chunk in members.split(_ROI_CHUNK):
            geo = tuple(g[chunk] for g in geometry)
            pooled = _pool_group(x, r[chunk], geo, out_h, out_w, gh, gw)
            out[chunk] = pooled.to(out.dtype)
    return out
