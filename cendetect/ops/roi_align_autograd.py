"""Backward of ``cendetect::roi_align`` and ``multi_level_roi_align`` (gradient for features).

RoIAlign is linear in its features, so the gradient is the vector-Jacobian product of the
pure-torch implementation (roi_align_torch.py) evaluated at zero features, on any device. Rois
get no gradient, as in mmcv. It is slower and uses more memory than a dedicated kernel: meant for
fine-tuning, not for speed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from cendetect.ops.roi_align_op import (
    _compute_dtype,
    _multi_level_by_level,
    _multi_level_op,
    _roi_align_op,
)
from cendetect.ops.roi_align_torch import roi_align_torch


def _torch_pool(
    feat: Tensor, rois: Tensor, out_h: int, out_w: int, scale: float, ratio: int, aligned: bool
) -> Tensor:
    return roi_align_torch(feat, rois, (out_h, out_w), scale, ratio, aligned)


def _zeros_like_meta(meta: tuple[torch.Size, torch.dtype, torch.device]) -> Tensor:
    shape, dtype, device = meta
    return torch.zeros(shape, dtype=_compute_dtype(dtype), device=device, requires_grad=True)


def _setup_roi_align(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    feat, rois, output_size, spatial_scale, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.meta = (feat.shape, feat.dtype, feat.device)
    ctx.args = (tuple(output_size), spatial_scale, sampling_ratio, aligned)


def _backward_roi_align(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    (rois,) = ctx.saved_tensors
    grad_feat = None
    if ctx.needs_input_grad[0]:
        with torch.enable_grad():
            feat = _zeros_like_meta(ctx.meta)
            out = roi_align_torch(feat, rois.detach(), *ctx.args)
            (grad_feat,) = torch.autograd.grad(out, feat, grad.to(out.dtype))
        grad_feat = grad_feat.to(ctx.meta[1])
    return grad_feat, None, None, None, None, None


def _setup_multi_level(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    feats, rois, output_size, spatial_scales, sampling_ratio, aligned, finest_scale = inputs
    ctx.save_for_backward(rois)
    ctx.metas = [(f.shape, f.dtype, f.device) for f in feats]
    ctx.args = (output_size, list(spatial_scales), sampling_ratio, aligned, finest_scale)


def _backward_multi_level(ctx: Any, grad: Tensor) -> tuple[Any, ...]:
    (rois,) = ctx.saved_tensors
    grads = None
    if ctx.needs_input_grad[0]:
        with torch.enable_grad():
            feats = [_zeros_like_meta(meta) for meta in ctx.metas]
            out = _multi_level_by_level(feats, rois.detach(), *ctx.args, pool=_torch_pool)
            grads = torch.autograd.grad(out, feats, grad.to(out.dtype), allow_unused=True)
        grads = [
            torch.zeros(m[0], dtype=m[1], device=m[2]) if g is None else g.to(m[1])
            for g, m in zip(grads, ctx.metas, strict=True)
        ]
    return grads, None, None, None, None, None, None


_roi_align_op.register_autograd(_backward_roi_align, setup_context=_setup_roi_align)
_multi_level_op.register_autograd(_backward_multi_level, setup_context=_setup_multi_level)
