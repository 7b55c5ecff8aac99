"""Differentiable multi-level RoIAlign for training, as small dense matrix products.

Average RoIAlign is separable: the bilinear weight of a sample on pixel ``(y, x)`` is a tent
``max(0, 1 - |v_y - y|) * max(0, 1 - |v_x - x|)`` of its (clamped) coordinates, so a roi's
``S x S`` output is ``Wy @ F[:, window] @ Wx^T`` with ``Wy[p, y]`` the mean over bin ``p``'s
samples of the row tents (``S x window`` matrices). Pooling a cropped window per roi with two
batched matmuls lets autograd produce the feature gradient at about the forward's cost; the
generic ``cendetect::multi_level_roi_align`` backward (a vector-Jacobian product of the
pure-torch pooling) took ~12 s per call for 1024 RoIs on this 2-core CPU
(tests/train/test_roi_pool.py checks values and gradients against the op).

Pixel model and level mapping: those of :func:`cendetect.ops.roi_align` (mmcv ``RoIAlign``,
average mode; samples outside ``[-1, size]`` count 0, samples in ``[-1, 0)`` clamp to the first
pixel and past the last pixel to the last) and mmdet's ``SingleRoIExtractor`` (level
``floor(log2(sqrt(w h) / finest_scale))`` clamped to the levels); rois ``[K, 5]`` are
``batch_index, x1, y1, x2, y2`` in input pixels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cendetect.models.roi_heads import RoIExtractor

#: rois pooled per batched matmul: bounds the ``[chunk, window, window, C]`` crops
_CHUNK = 128


def _axis_weights(
    start: Tensor, bin_size: Tensor, grid: Tensor, pooled: int, size: int
) -> tuple[Tensor, Tensor]:
    """Per roi along one axis: first window pixel ``[k]`` and weights ``[k, pooled, window]``.

    ``grid[k]`` samples per bin (adaptive grid, or the fixed ratio); 0 gives zero weights.
    """
    g_max = int(grid.max().item()) if grid.numel() else 0
    g_max = max(g_max, 1)
    g = grid.clamp(min=1).to(start.dtype)
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    i = torch.arange(g_max, device=start.device, dtype=start.dtype)
    v = (
        start[:, None, None]
        + p[None, :, None] * bin_size[:, None, None]
        + (i[None, None, :] + 0.5) * bin_size[:, None, None] / g[:, None, None]
    )  # [k, pooled, g_max]
    used = (i[None, None, :] < grid[:, None, None]) & (v >= -1) & (v <= size)
    vc = v.clamp(0, size - 1)
    vc = torch.where(used, vc, torch.zeros_like(vc))
    lo = torch.where(used, vc, torch.full_like(vc, float(size))).amin(dim=(1, 2)).floor()
    lo = torch.where(torch.isfinite(lo), lo, torch.zeros_like(lo)).clamp(0, size - 1)
    hi = torch.where(used, vc, torch.full_like(vc, -1.0)).amax(dim=(1, 2)).floor() + 1
    window = int((hi - lo).max().clamp(min=1).item()) + 1
    rows = lo[:, None] + torch.arange(window, device=start.device, dtype=start.dtype)
    tent = (1 - (vc[..., None] - rows[:, None, None, :]).abs()).clamp(min=0)
    tent = tent * used[..., None]
    weights = tent.sum(dim=2) / g[:, None, None]  # [k, pooled, window]
    return lo.long(), weights


def _pool_level(
    f: Tensor, rois: Tensor, size: int, scale: float, ratio: int, aligned: bool
) -> Tensor:
    """``[k, C, size, size]`` RoIAlign of ``rois`` on one level ``f [B, H, W, C]`` (contiguous:
    the gathers then copy whole channel vectors)."""
    _, height, width, channels = f.shape
    r = rois.float()
    off = 0.5 if aligned else 0.0
    sw, sh = r[:, 1] * scale - off, r[:, 2] * scale - off
    rw, rh = r[:, 3] * scale - off - sw, r[:, 4] * scale - off - sh
    if not aligned:
        rw, rh = rw.clamp(min=1), rh.clamp(min=1)
    bh, bw = rh / size, rw / size
    if ratio > 0:
        gh = torch.full((r.shape[0],), ratio, dtype=torch.long, device=r.device)
        gw = gh
    else:
        gh = torch.nan_to_num(torch.ceil(bh), nan=0.0).clamp(0, 1 << 20).long()
        gw = torch.nan_to_num(torch.ceil(bw), nan=0.0).clamp(0, 1 << 20).long()
    y0, wy = _axis_weights(sh, bh, gh, size, height)
    x0, wx = _axis_weights(sw, bw, gw, size, width)
    iy = (y0[:, None] + torch.arange(wy.shape[2], device=r.device)).clamp(max=height - 1)
    ix = (x0[:, None] + torch.arange(wx.shape[2], device=r.device)).clamp(max=width - 1)
    b = r[:, 0].long()
    crops = f[b[:, None, None], iy[:, :, None], ix[:, None, :]]  # [k, Wy, Wx, C]
    k, ny, nx = crops.shape[:3]
    t = torch.bmm(wy.to(f.dtype), crops.reshape(k, ny, nx * channels))  # [k, S, nx*C]
    t = t.view(k, size, nx, channels).permute(0, 2, 1, 3).reshape(k, nx, size * channels)
    out = torch.bmm(wx.to(f.dtype), t).view(k, size, size, channels)  # [k, q(x), p(y), C]
    return out.permute(0, 3, 2, 1)


def multi_level_roi_align_train(
    extractor: RoIExtractor, feats: list[Tensor], rois: Tensor
) -> Tensor:
    """``extractor(feats, rois)`` with a fast backward: ``[K, C, S, S]`` pooled features.

    Uses the extractor's own settings (output size, strides, sampling ratio, alignment, finest
    scale), so the training features are those the test-time module computes.
    """
    size = extractor.output_size
    levels = feats[: extractor.num_levels]
    k, channels = rois.shape[0], levels[0].shape[1]
    if k == 0:
        return levels[0].new_zeros((0, channels, size, size))
    r = rois.detach().float()
    if len(levels) == 1:
        level = torch.zeros(k, device=r.device)
    else:
        scale = torch.sqrt((r[:, 3] - r[:, 1]) * (r[:, 4] - r[:, 2]))
        level = torch.floor(torch.log2(scale / extractor.finest_scale + 1e-6))
        level = level.clamp(0, len(levels) - 1)
    out = levels[0].new_zeros((k, channels, size, size))
    for lvl, feat in enumerate(levels):
        m = (level == lvl).nonzero().squeeze(1)
        if m.numel() == 0:
            continue
        # chunks of similar window sizes: a chunk's crops are as large as its largest roi's
        span = torch.maximum(r[m, 3] - r[m, 1], r[m, 4] - r[m, 2])
        m = m[torch.argsort(torch.nan_to_num(span, nan=0.0))]
        f = feat.permute(0, 2, 3, 1).contiguous()
        for chunk in m.split(_CHUNK):
            out[chunk] = _pool_level(
                f,
                r[chunk],
                size,
                extractor.scales[lvl],
                extractor.sampling_ratio,
                extractor.aligned,
            ).to(out.dtype)
    return out
