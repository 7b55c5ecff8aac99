"""``torch.ops.cendetect.roi_align`` and ``multi_level_roi_align`` (mmcv RoIAlign, average).

CPU: our C++ kernel (csrc/roi_align.cpp). Other devices: torchvision's ``roi_align`` when it
works, else the pure-torch version in roi_align_torch.py. See :func:`roi_align`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from cendetect.ops import _torchvision
from cendetect.ops._extension import _assert_has_ops
from cendetect.ops.roi_align_torch import roi_align_torch

__all__ = ["multi_level_roi_align", "roi_align"]

_PoolFn = Callable[[Tensor, Tensor, int, int, float, int, bool], Tensor]


def _check_feature(name: str, what: str, feat: Tensor) -> None:
    if feat.dim() != 4:
        raise ValueError(f"{name}: {what} must have shape [B, C, H, W], got {tuple(feat.shape)}")
    if not feat.is_floating_point():
        raise ValueError(
            f"{name}: {what} must be floating point, got {feat.dtype}; convert it with .float()"
        )


def _check_rois(name: str, rois: Tensor, device: torch.device) -> None:
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"{name}: rois must have shape [K, 5] (batch_index, x1, y1, x2, y2), "
            f"got {tuple(rois.shape)}"
        )
    if not rois.is_floating_point():
        raise ValueError(
            f"{name}: rois must be floating point, got {rois.dtype}; convert it with .float()"
        )
    if rois.device != device:
        raise ValueError(
            f"{name}: features are on {device} but rois on {rois.device}; move them to one device"
        )


def _check_roi_align(input: Tensor, rois: Tensor, output_size: Sequence[int]) -> tuple[int, int]:
    _check_feature("roi_align", "input", input)
    _check_rois("roi_align", rois, input.device)
    if len(output_size) != 2 or min(output_size) <= 0:
        raise ValueError(
            f"roi_align: output_size must be two positive ints (h, w), got {list(output_size)}"
        )
    return int(output_size[0]), int(output_size[1])


def _check_multi_level(
    feats: Sequence[Tensor],
    rois: Tensor,
    output_size: int,
    spatial_scales: Sequence[float],
    finest_scale: int,
) -> None:
    name = "multi_level_roi_align"
    if len(feats) == 0:
        raise ValueError(f"{name}: feats must hold at least one feature level, got none")
    first = feats[0]
    for level, feat in enumerate(feats):
        _check_feature(name, f"feats[{level}]", feat)
        if (feat.dtype, feat.device) != (first.dtype, first.device):
            raise ValueError(
                f"{name}: feats[{level}] is {feat.dtype} on {feat.device} but feats[0] is "
                f"{first.dtype} on {first.device}; all levels must match"
            )
        if feat.shape[:2] != first.shape[:2]:
            raise ValueError(
                f"{name}: feats[{level}] has batch and channels {tuple(feat.shape[:2])} but "
                f"feats[0] has {tuple(first.shape[:2])}; all levels must match"
            )
    _check_rois(name, rois, first.device)
    if len(spatial_scales) != len(feats):
        raise ValueError(
            f"{name}: got {len(feats)} feature levels but {len(spatial_scales)} spatial_scales; "
            "give one scale (1 / stride) per level"
        )
    if output_size <= 0:
        raise ValueError(f"{name}: output_size must be a positive int, got {output_size}")
    if finest_scale <= 0:
        raise ValueError(f"{name}: finest_scale must be a positive int, got {finest_scale}")


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half and bfloat16 are computed in float32: the kernels are float32/float64 only.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _raise_bad_batch_index(name: str, rois: Tensor, bad: int, batch: int) -> None:
    raise ValueError(
        f"{name}: rois[{bad}, 0] = {rois[bad, 0].item()} is not an image of the batch (size "
        f"{batch}); column 0 of rois must hold the batch index, in [0, {batch})"
    )


def _roi_align_cpu(
    input: Tensor, rois: Tensor, out_h: int, out_w: int, scale: float, ratio: int, aligned: bool
) -> Tensor:
    dtype = _compute_dtype(input.dtype)
    out = torch.empty((rois.shape[0], input.shape[1], out_h, out_w), dtype=dtype)
    if out.numel() > 0:
        ext = _assert_has_ops()
        x = input.detach().to(dtype).contiguous()
        r = rois.detach().to(dtype).contiguous()
        bad = ext.roi_align(x.numpy(), r.numpy(), out.numpy(), float(scale), int(ratio), aligned)
        if bad >= 0:
            _raise_bad_batch_index("roi_align", rois, bad, input.shape[0])
    return out.to(input.dtype)


def _roi_align_device(
    input: Tensor, rois: Tensor, out_h: int, out_w: int, scale: float, ratio: int, aligned: bool
) -> Tensor:
    if rois.shape[0] == 0:
        return input.new_zeros((0, input.shape[1], out_h, out_w))
    # Half precision is pooled in float32, as mmdetection's force_fp32 roi extractor does.
    dtype = _compute_dtype(input.dtype)
    x, r = input.to(dtype), rois.to(dtype)
    out = _torchvision.call(
        "roi_align",
        lambda tv: tv.ops.roi_align(x, r, [out_h, out_w], scale, ratio, aligned),
    )
    if out is None:
        out = roi_align_torch(x, r, (out_h, out_w), scale, ratio, aligned)
    return out.to(input.dtype)


def _multi_level_by_level(
    feats: Sequence[Tensor],
    rois: Tensor,
    size: int,
    scales: Sequence[float],
    ratio: int,
    aligned: bool,
    finest_scale: int,
    pool: _PoolFn,
) -> Tensor:
    """mmdetection's SingleRoIExtractor loop over levels, pooling each level with ``pool``."""
    out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], size, size))
    if rois.shape[0] == 0:
        return out
    if len(feats) == 1:  # mmdetection pools every roi on a lone level, unmapped
        return pool(feats[0], rois, size, size, scales[0], ratio, aligned)
    r = rois.to(_compute_dtype(feats[0].dtype))
    scale = torch.sqrt((r[:, 3] - r[:, 1]) * (r[:, 4] - r[:, 2]))
    # NaN levels (negative areas) match no level and keep zeros, as in mmdetection.
    level = torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, len(feats) - 1)
    for lvl, feat in enumerate(feats):
        inds = (level == lvl).nonzero().squeeze(1)
        if inds.numel() > 0:
            out[inds] = pool(feat, rois[inds], size, size, scales[lvl], ratio, aligned)
    return out


def _multi_level_cpu(
    feats: Sequence[Tensor],
    rois: Tensor,
    size: int,
    scales: Sequence[float],
    ratio: int,
    aligned: bool,
    finest_scale: int,
) -> Tensor:
    """CPU pooling through the channels-last kernel; returns a channels-last [K, C, S, S].

    Features that are already channels-last (the layout compiled bf16 engines run in) are read
    in place; NCHW ones are transposed once per level, which costs less than the NCHW kernel's
    strided reads. bfloat16 features are read as they are (the kernel widens them to float32),
    so no float32 copy of the feature maps is made. The result equals the NCHW kernel's bit for
    bit (csrc/roi_align.h).
    """
    first = feats[0]
    dtype = _compute_dtype(first.dtype)
    channels = first.shape[1]
    out = torch.empty((rois.shape[0], size, size, channels), dtype=dtype)
    if out.numel() > 0:
        ext = _assert_has_ops()
        # [B, C, H, W] -> [B, H, W, C]: a view for channels-last features, else one copy.
        nhwc = [f.detach().permute(0, 2, 3, 1) for f in feats]
        if first.dtype == torch.bfloat16:
            xs = [f.contiguous().view(torch.int16).numpy().view("uint16") for f in nhwc]
            r = rois.detach().to(torch.float32).contiguous()
            kernel = ext.multi_level_roi_align_nhwc_bf16
        else:
            xs = [f.to(dtype).contiguous().numpy() for f in nhwc]
            r = rois.detach().to(dtype).contiguous()
            kernel = ext.multi_level_roi_align_nhwc
        bad = kernel(
            xs, r.numpy(), out.numpy(), [float(s) for s in scales], ratio, aligned, finest_scale
        )
        if bad >= 0:
            _raise_bad_batch_index("multi_level_roi_align", rois, bad, first.shape[0])
    return out.permute(0, 3, 1, 2).to(first.dtype)


def _multi_level_cpu_nchw(
    feats: Sequence[Tensor],
    rois: Tensor,
    size: int,
    scales: Sequence[float],
    ratio: int,
    aligned: bool,
    finest_scale: int,
) -> Tensor:
    """The NCHW kernel (contiguous [K, C, S, S]); kept as the reference the NHWC one must equal."""
    dtype = _compute_dtype(feats[0].dtype)
    out = torch.empty((rois.shape[0], feats[0].shape[1], size, size), dtype=dtype)
    if out.numel() > 0:
        ext = _assert_has_ops()
        xs = [f.detach().to(dtype).contiguous().numpy() for f in feats]
        r = rois.detach().to(dtype).contiguous()
        bad = ext.multi_level_roi_align(
            xs, r.numpy(), out.numpy(), [float(s) for s in scales], ratio, aligned, finest_scale
        )
        if bad >= 0:
            _raise_bad_batch_index("multi_level_roi_align", rois, bad, feats[0].shape[0])
    return out.to(feats[0].dtype)


@torch.library.custom_op(
    "cendetect::roi_align",
    mutates_args=(),
    schema=(
        "(Tensor input, Tensor rois, int[] output_size, float spatial_scale, "
        "int sampling_ratio, bool aligned) -> Tensor"
    ),
)
def _roi_align_op(
    input: Tensor,
    rois: Tensor,
    output_size: Sequence[int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    out_h, out_w = _check_roi_align(input, rois, output_size)
    run = _roi_align_cpu if input.device.type == "cpu" else _roi_align_device
    return run(input, rois, out_h, out_w, spatial_scale, sampling_ratio, aligned)


@_roi_align_op.register_fake
def _(
    input: Tensor,
    rois: Tensor,
    output_size: Sequence[int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    out_h, out_w = _check_roi_align(input, rois, output_size)
    return input.new_empty((rois.shape[0], input.shape[1], out_h, out_w))


@torch.library.custom_op(
    "cendetect::multi_level_roi_align",
    mutates_args=(),
    schema=(
        "(Tensor[] feats, Tensor rois, int output_size, float[] spatial_scales, "
        "int sampling_ratio, bool aligned, int finest_scale) -> Tensor"
    ),
)
def _multi_level_op(
    feats: Sequence[Tensor],
    rois: Tensor,
    output_size: int,
    spatial_scales: Sequence[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int,
) -> Tensor:
    _check_multi_level(feats, rois, output_size, spatial_scales, finest_scale)
    args = (feats, rois, output_size, spatial_scales, sampling_ratio, aligned, finest_scale)
    if feats[0].device.type == "cpu":
        return _multi_level_cpu(*args)
    return _multi_level_by_level(*args, pool=_roi_align_device)


@_multi_level_op.register_fake
def _(
    feats: Sequence[Tensor],
    rois: Tensor,
    output_size: int,
    spatial_scales: Sequence[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int,
) -> Tensor:
    _check_multi_level(feats, rois, output_size, spatial_scales, finest_scale)
    k, c, s = rois.shape[0], feats[0].shape[1], output_size
    if feats[0].device.type == "cpu":  # the CPU kernel writes channels-last
        return feats[0].new_empty((k, s, s, c)).permute(0, 3, 1, 2)
    return feats[0].new_empty((k, c, s, s))


def roi_align(
    input: Tensor,
    rois: Tensor,
    output_size: list[int],
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> Tensor:
    """RoIAlign with average pooling, as ``mmcv.ops.RoIAlign(pool_mode='avg')``.

    Pixel model (csrc/roi_align.h): feature ``input[b, c, y, x]`` sits at continuous point
    ``(x, y)``. A roi spans ``x1 * spatial_scale - o`` to ``x2 * spatial_scale - o`` with
    ``o = 0.5`` when ``aligned`` (no minimum size) and ``o = 0`` otherwise (then width and height
    are clamped to >= 1). Each of the ``h x w`` bins averages ``gh x gw`` bilinear samples at
    sub-bin centres, ``g = sampling_ratio`` if > 0 else ``ceil(roi_size / bins)`` per axis.
    A sample at y < -1, y > H, x < -1 or x > W counts as 0; samples in [-1, 0] clamp to the
    first pixel and past the last pixel to the last one. Rois of zero or negative size with the
    adaptive grid get no samples and pool to 0. Absurdly large rois make the adaptive grid (and
    the time) huge, as in mmcv.

    Args:
        input (Tensor[B, C, H, W]): features; float16/32/64 (half computed in float32).
        rois (Tensor[K, 5]): batch_index, x1, y1, x2, y2 in image pixels; floating point.
            The batch index must be in [0, B) (ValueError on CPU otherwise).
        output_size (list[int]): (h, w) bins.
        spatial_scale (float): feature cells per image pixel (1 / stride).
        sampling_ratio (int): samples per bin and axis; <= 0 for the adaptive grid.
        aligned (bool): the 0.5-pixel shift of detectron2 / mmcv ``aligned=True``.

    Returns:
        Tensor[K, C, h, w] of ``input``'s dtype and device.
    """
    return torch.ops.cendetect.roi_align(
        input, rois, output_size, spatial_scale, sampling_ratio, aligned
    )


def multi_level_roi_align(
    feats: list[Tensor],
    rois: Tensor,
    output_size: int,
    spatial_scales: list[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int,
) -> Tensor:
    """Per-roi FPN level choice plus :func:`roi_align`, as mmdetection's SingleRoIExtractor.

    A roi goes to level ``floor(log2(sqrt((x2 - x1) * (y2 - y1)) / finest_scale + 1e-6))``
    clamped to ``[0, L - 1]`` (computed in the features' precision) and is pooled there with
    ``spatial_scales[level]``. With ``L > 1``, a roi of negative area has a NaN level and gets
    zeros, as in mmdetection; with ``L == 1`` every roi is pooled on the one level.

    Args:
        feats (list[Tensor[B, C, H_l, W_l]]): L levels, finest first; same dtype, device, B, C.
        rois (Tensor[K, 5]): batch_index, x1, y1, x2, y2 in image pixels.
        output_size (int): square output side S.
        spatial_scales (list[float]): one per level, 1 / stride.
        sampling_ratio (int): as in :func:`roi_align` (mmdetection uses 0).
        aligned (bool): as in :func:`roi_align` (mmdetection uses True).
        finest_scale (int): mmdetection's ``finest_scale`` (56).

    Returns:
        Tensor[K, C, S, S] of the features' dtype and device; on the CPU its memory is
        channels-last (``[K, S, S, C]`` underneath), as the CPU kernel writes it.
    """
    return torch.ops.cendetect.multi_level_roi_align(
        feats, rois, output_size, spatial_scales, sampling_ratio, aligned, finest_scale
    )
