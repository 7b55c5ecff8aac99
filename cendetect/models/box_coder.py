"""Anchor generation and the (dx, dy, dw, dh) box coder, as mmdetection 2.28 defines them.

Coordinates are ``x1, y1, x2, y2`` in network-input pixels; widths are ``x2 - x1`` (no +1).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: mmdet's ``wh_ratio_clip=16/1000``: log-space width/height deltas are clamped to +-log(1000/16)
MAX_DWH = abs(math.log(16.0 / 1000.0))


def base_anchors(
    base_size: float, ratios: list[float], scales: list[float], center_offset: float = 0.0
) -> Tensor:
    """Anchors centred on the origin of one cell, ratio-major (mmdet ``scale_major=True``).

    Returns ``Tensor[len(ratios) * len(scales), 4]`` float32 ``x1, y1, x2, y2``.
    """
    w = h = float(base_size)
    xc, yc = center_offset * w, center_offset * h
    r = torch.tensor(ratios, dtype=torch.float32)
    s = torch.tensor(scales, dtype=torch.float32)
    h_ratios = torch.sqrt(r)
    w_ratios = 1.0 / h_ratios
    ws = (w * w_ratios[:, None] * s[None, :]).reshape(-1)
    hs = (h * h_ratios[:, None] * s[None, :]).reshape(-1)
    return torch.stack([xc - 0.5 * ws, yc - 0.5 * hs, xc + 0.5 * ws, yc + 0.5 * hs], dim=-1)


def grid_anchors(base: Tensor, feat_h: int, feat_w: int, stride: int) -> Tensor:
    """All anchors of one level: ``Tensor[feat_h * feat_w * A, 4]``, row-major cells, anchors inner.

    The order matches an RPN output permuted to ``(B, H, W, A)`` and flattened.
    """
    shift_x = torch.arange(feat_w, dtype=torch.float32, device=base.device) * stride
    shift_y = torch.arange(feat_h, dtype=torch.float32, device=base.device) * stride
    yy = shift_y.view(-1, 1).expand(feat_h, feat_w).reshape(-1)
    xx = shift_x.view(1, -1).expand(feat_h, feat_w).reshape(-1)
    shifts = torch.stack([xx, yy, xx, yy], dim=-1)
    return (base.view(1, -1, 4) + shifts.view(-1, 1, 4)).reshape(-1, 4)


def decode_deltas(
    rois: Tensor,
    deltas: Tensor,
    means: list[float],
    stds: list[float],
    max_h: Tensor,
    max_w: Tensor,
    max_dwh: float = MAX_DWH,
) -> Tensor:
    """mmdet ``DeltaXYWHBBoxCoder.decode`` (``delta2bbox``, clip to the image, no centre clamp).

    Args:
        rois: ``Tensor[N, 4]`` reference boxes.
        deltas: ``Tensor[N, 4 * C]`` deltas for C classes (C = 1 for the RPN).
        means, stds: the coder's ``target_means``/``target_stds``.
        max_h, max_w: 0-dim tensors, the image shape the boxes are clipped to (resized image,
            before padding). Tensors, not floats, so that exported graphs keep them as inputs.
        max_dwh: clamp of the log-space size deltas (an argument because TorchScript cannot
            read module-level floats).

    Returns ``Tensor[N, 4 * C]`` boxes, ``x1, y1, x2, y2``.
    """
    n = deltas.shape[0]
    num_classes = deltas.shape[1] // 4
    d = deltas.reshape(-1, 4)
    mean = torch.tensor(means, dtype=d.dtype, device=d.device).view(1, 4)
    std = torch.tensor(stds, dtype=d.dtype, device=d.device).view(1, 4)
    d = d * std + mean
    r = rois.repeat(1, num_classes).reshape(-1, 4)
    pxy = (r[:, :2] + r[:, 2:]) * 0.5
    pwh = r[:, 2:] - r[:, :2]
    gxy = pxy + pwh * d[:, :2]
    gwh = pwh * d[:, 2:].clamp(min=-max_dwh, max=max_dwh).exp()
    x1y1 = gxy - gwh * 0.5
    x2y2 = gxy + gwh * 0.5
    max_w = max_w.to(d.dtype)
    max_h = max_h.to(d.dtype)
    x1 = torch.minimum(x1y1[:, 0].clamp(min=0.0), max_w)
    y1 = torch.minimum(x1y1[:, 1].clamp(min=0.0), max_h)
    x2 = torch.minimum(x2y2[:, 0].clamp(min=0.0), max_w)
    y2 = torch.minimum(x2y2[:, 1].clamp(min=0.0), max_h)
    return torch.stack([x1, y1, x2, y2], dim=-1).reshape(n, 4 * num_classes)
