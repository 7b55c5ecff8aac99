"""Backward of ``cendetect::roi_align`` and ``multi_level_roi_align`` (gradient for features).

CPU (float32 / float64 compute; half-precision features are computed in float32): the C++
kernel ``multi_level_roi_align_nhwc_backward`` (csrc/roi_align.cpp), the exact transpose of the
forward's bilinear sampling. It writes channels-last gradients: a thread owns a block of channels
for every roi, so the scatter needs no atomics and the sums do not depend on the thread count.
A single-level ``roi_align`` with a square output is the one-level case of the same kernel
(mmdetection pools every roi on a lone level, unmapped).

Other devices, and non-square single-level outputs: the vector-Jacobian product of the
pure-torch implementation (roi_align_torch.py) evaluated at zero features (RoIAlign is linear
in its features). Rois get no gradient, as in mmcv.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cendetect.ops._extension import _assert_has_ops
from cendetect.ops.roi_align_op import (
    _compute_dtype,
    _multi_level_by_level,
    _multi_level_op,
    _raise_bad_batch_index,
    _roi_align_op,
)
from cendetect.ops.roi_align_torch import roi_align_torch

_Meta = tuple[torch.Size, torch.dtype, torch.device]


def _torch_pool(
    feat: Tensor, rois: Tensor, out_h: int, out_w: int, scale: float, ratio: int, aligned: bool
) -> Tensor:
    return roi_align_torch(feat, rois, (out_h, out_w), scale, ratio, aligned)


def _zeros_like_meta(meta: _Meta) -> Tensor:
    shape, dtype, device = meta
    return torch.zeros(shape, dtype=_compute_dtype(dtype), device=device, requires_grad=True)


def multi_level_backward_cpu(
    metas: Sequence[_Meta],
    rois: Tensor,
    grad: Tensor,
    spatial_scales: Sequence[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int,
) -> list[Tensor]:
    """Feature gradients of ``multi_level_roi_align`` on the CPU, by the C++ kernel.

    ``metas``: ``(shape [B, C, H, W], dtype, device)`` per level; ``rois [K, 5]``
    (batch_index, x1, y1, x2, y2 in input pixels); ``grad [K, C, S, S]``, the gradient of the
    output. Returns one ``[B, C, H, W]`` gradient per level, in the level's dtype, with
    channels-last strides (the layout the kernel writes).
    """
    dtype = _compute_dtype(metas[0][1])
    g = grad.detach().to(dtype).permute(0, 2, 3, 1).contiguous()  # [K, S, S, C]
    r = rois.detach().to(dtype).contiguous()
    nhwc = [torch.empty((s[0], s[2], s[3], s[1]), dtype=dtype) for s, _, _ in metas]
    ext = _assert_has_ops()
    bad = ext.multi_level_roi_align_nhwc_backward(
        g.numpy(),
        r.numpy(),
        [x.numpy() for x in nhwc],
        [float(s) for s in spatial_scales],
        int(sampling_ratio),
        bool(aligned),
        int(finest_scale),
    )
    if bad >= 0:
        _raise_bad_batch_index("multi_level_roi_align (backward)", rois, bad, metas[0][0][0])
    return [x.permute(0, 3, 1, 2).to(m[1]) for x, m in zip(nhwc, metas, strict=True)]


def _cpu_kernel_applies(metas: Sequence[_Meta]) -> bool:
    return all(m[2].type == "cpu" for m in metas)


def _setup_roi_align(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    feat, rois, output_size, spatial_scale, sampling_ratio, aligned = inputs
    ctx.save_for_backward(rois)
    ctx.meta = (feat.shape, feat.dtype, feat.device)
    ctx.args = (tuple(output_size), spatial_scale, sampling_ratio, aligned)


def _backward_roi_align(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    (rois,) = ctx.saved_tensors
    grad_feat = None
    if ctx.needs_input_grad[0]:
        (out_h, out_w), scale, ratio, aligned = ctx.args
        if _cpu_kernel_applies([ctx.meta]) and out_h == out_w:
            # one level: every roi is pooled there (finest_scale is then unused)
            (grad_feat,) = multi_level_backward_cpu(
                [ctx.meta], rois, grad, [scale], ratio, aligned, finest_scale=1
            )
        else:
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
        _, scales, ratio, aligned, finest_scale = ctx.args
        if _cpu_kernel_applies(ctx.metas):
            grads = multi_level_backward_cpu(
                ctx.metas, rois, grad, scales, ratio, aligned, finest_scale
            )
        else:
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
