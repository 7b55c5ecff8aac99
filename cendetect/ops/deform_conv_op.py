"""``torch.ops.cendetect.deform_conv2d``: deformable convolution v1 (mmcv ``DeformConv2d``).

CPU: our C++ deformable im2col (csrc/deform_conv.cpp) fills a columns buffer and the dense
product is a torch matmul (MKL). Other devices: torchvision's ``deform_conv2d`` when it works,
else :func:`deform_conv2d_torch`, the pure-torch version, which also gives the gradients
(``register_autograd``) on every device. See :func:`deform_conv2d` for the semantics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cendetect.ops import _torchvision
from cendetect.ops._extension import _assert_has_ops

__all__ = ["deform_conv2d", "deform_conv2d_torch"]

# Elements of the CPU columns buffer ([images, C * kh * kw, rows, Wo]) computed at once: 2**25
# float32 values are 128 MiB. An R50 c3 DCN layer on an 800 x 1333 image needs ~19M per image,
# so whole images are batched up to this and bigger inputs are cut into bands of output rows.
_MAX_COLUMN_ELEMENTS = 1 << 25


def _pair(name: str, what: str, value: Sequence[int], minimum: int) -> tuple[int, int]:
    if len(value) != 2 or min(value) < minimum:
        raise ValueError(
            f"deform_conv2d: {what} must be two ints >= {minimum} (h, w), got {list(value)}"
        )
    return int(value[0]), int(value[1])


def _check(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    deform_groups: int,
) -> tuple[Any, Any]:
    """Validates the arguments; returns the output size (Ho, Wo)."""
    name = "deform_conv2d"
    for what, t in (("input", input), ("offset", offset), ("weight", weight)):
        if t.dim() != 4:
            raise ValueError(f"{name}: {what} must be 4-D, got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(
                f"{name}: {what} must be floating point, got {t.dtype}; convert it with .float()"
            )
        if t.device != input.device:
            raise ValueError(
                f"{name}: input is on {input.device} but {what} on {t.device}; "
                "move them to one device"
            )
    sh, sw = _pair(name, "stride", stride, 1)
    ph, pw = _pair(name, "padding", padding, 0)
    dh, dw = _pair(name, "dilation", dilation, 1)
    channels = input.shape[1]
    out_channels, _, kh, kw = weight.shape
    if groups < 1 or channels % groups != 0 or out_channels % groups != 0:
        raise ValueError(
            f"{name}: groups={groups} must be >= 1 and divide the input channels ({channels}) "
            f"and the output channels ({out_channels})"
        )
    if weight.shape[1] * groups != channels:
        raise ValueError(
            f"{name}: weight has shape {tuple(weight.shape)}, so with groups={groups} it expects "
            f"{weight.shape[1] * groups} input channels, but input has {channels}"
        )
    if deform_groups < 1 or channels % deform_groups != 0:
        raise ValueError(
            f"{name}: deform_groups={deform_groups} must be >= 1 and divide the input channels "
            f"({channels})"
        )
    out_h = (input.shape[2] + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    out_w = (input.shape[3] + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    if out_h <= 0 or out_w <= 0:
        raise ValueError(
            f"{name}: input of size {tuple(input.shape[2:])} is too small for a {kh}x{kw} kernel "
            f"(padding {[ph, pw]}, dilation {[dh, dw]}): the output would be {out_h}x{out_w}"
        )
    expected = (input.shape[0], deform_groups * 2 * kh * kw, out_h, out_w)
    if tuple(offset.shape) != expected:
        raise ValueError(
            f"{name}: offset must have shape [B, deform_groups * 2 * kh * kw, Ho, Wo] = "
            f"{list(expected)}, got {list(offset.shape)}"
        )
    return out_h, out_w


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    # Half and bfloat16 are computed in float32: the kernels are float32/float64 only.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def deform_conv2d_torch(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    """Pure-torch :func:`deform_conv2d` (vectorised bilinear gather), differentiable.

    Same arguments and result as :func:`deform_conv2d` (no checks, no dtype conversion). The
    columns are rounded exactly as mmcv's and the C++ kernel's (same expressions, same order);
    only the matmul may round differently. Memory: about 5x the columns tensor
    ``[B, C * kh * kw, Ho * Wo]``, so it is the slow path, for other devices and gradients.
    """
    batch, channels, height, width = input.shape
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = offset.shape[2], offset.shape[3]
    taps = kh * kw
    dev, dt = input.device, input.dtype
    tap_i = torch.arange(kh, device=dev).repeat_interleave(kw)
    tap_j = torch.arange(kw, device=dev).repeat(kh)
    rows = torch.arange(out_h, device=dev) * stride[0] - padding[0]
    cols = torch.arange(out_w, device=dev) * stride[1] - padding[1]
    # Integer grid positions [taps, Ho, 1] / [taps, 1, Wo], converted to dt, then + offset.
    base_y = (rows[None, :, None] + (tap_i * dilation[0])[:, None, None]).to(dt)
    base_x = (cols[None, None, :] + (tap_j * dilation[1])[:, None, None]).to(dt)
    off = offset.reshape(batch, deform_groups, taps, 2, out_h, out_w)
    y = base_y + off[:, :, :, 0]  # [B, dg, taps, Ho, Wo]
    x = base_x + off[:, :, :, 1]
    inside = (y > -1) & (x > -1) & (y < height) & (x < width)
    y = torch.where(inside, y, torch.zeros_like(y))
    x = torch.where(inside, x, torch.zeros_like(x))
    y0 = torch.floor(y).detach()
    x0 = torch.floor(x).detach()
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    yl, xl = y0.long(), x0.long()
    top, left = inside & (yl >= 0), inside & (xl >= 0)
    bottom, right = inside & (yl + 1 <= height - 1), inside & (xl + 1 <= width - 1)
    group_channels = channels // deform_groups
    n = taps * out_h * out_w
    flat = input.reshape(batch, deform_groups, group_channels, height * width)
    last = max(height * width - 1, 0)

    def corner(dy: int, dx: int, valid: Tensor) -> Tensor:
        idx = ((yl + dy) * width + (xl + dx)).clamp(0, last).reshape(batch, deform_groups, 1, n)
        v = flat.gather(3, idx.expand(batch, deform_groups, group_channels, n))
        return torch.where(valid.reshape(batch, deform_groups, 1, n), v, torch.zeros_like(v))

    def w(t: Tensor) -> Tensor:
        return t.reshape(batch, deform_groups, 1, n)

    if height * width == 0:
        columns = flat.new_zeros((batch, deform_groups, group_channels, n))  # all outside
    else:
        # mmcv's order: w1 * v1 + w2 * v2 + w3 * v3 + w4 * v4, corners outside reading 0.
        columns = (
            w(hy * hx) * corner(0, 0, top & left)
            + w(hy * lx) * corner(0, 1, top & right)
            + w(ly * hx) * corner(1, 0, bottom & left)
            + w(ly * lx) * corner(1, 1, bottom & right)
        )
    columns = columns.reshape(batch, groups, channels // groups * taps, out_h * out_w)
    out = torch.matmul(weight.reshape(groups, out_channels // groups, -1), columns)
    return out.reshape(batch, out_channels, out_h, out_w)


def _deform_conv2d_cpu(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    deform_groups: int,
    out_hw: tuple[int, int],
) -> Tensor:
    dtype = _compute_dtype(input.dtype)
    batch, channels = input.shape[:2]
    out_channels, _, kh, kw = weight.shape
    out_h, out_w = out_hw
    if batch * out_channels == 0 or channels == 0:
        return input.new_zeros((batch, out_channels, out_h, out_w))
    ext = _assert_has_ops()
    x = input.detach().to(dtype).contiguous()
    off = offset.detach().to(dtype).contiguous()
    w = weight.detach().to(dtype).reshape(groups, out_channels // groups, -1)
    depth = channels * kh * kw
    row_elements = depth * out_w
    if row_elements * out_h <= _MAX_COLUMN_ELEMENTS:
        step_b, step_r = max(1, _MAX_COLUMN_ELEMENTS // (row_elements * out_h)), out_h
    else:
        step_b, step_r = 1, max(1, _MAX_COLUMN_ELEMENTS // row_elements)

    def chunk(b0: int, b1: int, r0: int, r1: int) -> Tensor:
        cols = torch.empty((b1 - b0, depth, r1 - r0, out_w), dtype=dtype)
        ext.deform_im2col(
            x[b0:b1].numpy(), off[b0:b1].numpy(), cols.numpy(), kh, kw, padding[0], padding[1],
            stride[0], stride[1], dilation[0], dilation[1], deform_groups, r0,
        )  # fmt: skip
        cols = cols.reshape(b1 - b0, groups, depth // groups, (r1 - r0) * out_w)
        return torch.matmul(w, cols).reshape(b1 - b0, out_channels, r1 - r0, out_w)

    if step_b >= batch and step_r >= out_h:  # one chunk: no copy into an output buffer
        return chunk(0, batch, 0, out_h).to(input.dtype)
    out = torch.empty((batch, out_channels, out_h, out_w), dtype=dtype)
    for b0 in range(0, batch, step_b):
        for r0 in range(0, out_h, step_r):
            b1, r1 = min(batch, b0 + step_b), min(out_h, r0 + step_r)
            out[b0:b1, :, r0:r1] = chunk(b0, b1, r0, r1)
    return out.to(input.dtype)


def _deform_conv2d_device(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    dtype = _compute_dtype(input.dtype)
    x, off, w = input.to(dtype), offset.to(dtype), weight.to(dtype)
    if input.shape[0] == 0:
        out_h, out_w = offset.shape[2], offset.shape[3]
        return input.new_zeros((0, weight.shape[0], out_h, out_w))
    # torchvision infers groups from weight.shape[1] and deform groups from offset.shape[1],
    # both checked against the arguments by _check.
    out = _torchvision.call(
        "deform_conv2d",
        lambda tv: tv.ops.deform_conv2d(
            x, off, w, stride=stride, padding=padding, dilation=dilation
        ),
    )
    if out is None:
        out = deform_conv2d_torch(x, off, w, stride, padding, dilation, groups, deform_groups)
    return out.to(input.dtype)


@torch.library.custom_op(
    "cendetect::deform_conv2d",
    mutates_args=(),
    schema=(
        "(Tensor input, Tensor offset, Tensor weight, int[2] stride, int[2] padding, "
        "int[2] dilation, int groups, int deform_groups) -> Tensor"
    ),
)
def _deform_conv2d_op(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    out_hw = _check(input, offset, weight, stride, padding, dilation, groups, deform_groups)
    args = (tuple(stride), tuple(padding), tuple(dilation), groups, deform_groups)
    if input.device.type == "cpu":
        return _deform_conv2d_cpu(input, offset, weight, *args, out_hw=out_hw)
    return _deform_conv2d_device(input, offset, weight, *args)


@_deform_conv2d_op.register_fake
def _(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: Sequence[int],
    padding: Sequence[int],
    dilation: Sequence[int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    out_h, out_w = _check(input, offset, weight, stride, padding, dilation, groups, deform_groups)
    return input.new_empty((input.shape[0], weight.shape[0], out_h, out_w))


def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
    input, offset, weight, stride, padding, dilation, groups, deform_groups = inputs
    ctx.save_for_backward(input, offset, weight)
    ctx.args = (list(stride), list(padding), list(dilation), groups, deform_groups)


def _backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
    """Vector-Jacobian product of :func:`deform_conv2d_torch`, recomputed (memory-hungry)."""
    saved = ctx.saved_tensors
    dtype = _compute_dtype(saved[0].dtype)
    needs = ctx.needs_input_grad[:3]
    with torch.enable_grad():
        leaves = [t.detach().to(dtype).requires_grad_(n) for t, n in zip(saved, needs, strict=True)]
        out = deform_conv2d_torch(*leaves, *ctx.args)
        wanted = [t for t in leaves if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad.to(dtype), allow_unused=True))
    result: list[Tensor | None] = []
    for t, n, leaf in zip(saved, needs, leaves, strict=True):
        g = next(grads) if n else None
        if n and g is None:
            g = torch.zeros_like(leaf)
        result.append(None if g is None else g.to(t.dtype))
    return (*result, None, None, None, None, None)


_deform_conv2d_op.register_autograd(_backward, setup_context=_setup_context)


def deform_conv2d(
    input: Tensor,
    offset: Tensor,
    weight: Tensor,
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    deform_groups: int,
) -> Tensor:
    """Deformable convolution v1, as ``mmcv.ops.deform_conv2d`` (no bias, no modulation).

    Output pixel ``(ho, wo)`` and kernel tap ``(i, j)`` of deformable group ``d`` sample the
    input at ``y = ho * stride[0] - padding[0] + i * dilation[0] + dy`` and
    ``x = wo * stride[1] - padding[1] + j * dilation[1] + dx``, where ``input[b, c, y, x]`` sits
    at integer ``(x, y)`` and ``(dy, dx) = offset[b, k, ho, wo]`` for
    ``k = d * 2 * kh * kw + 2 * (i * kw + j)`` and ``k + 1``. A sample is bilinear; one with
    ``y <= -1``, ``y >= H``, ``x <= -1`` or ``x >= W`` is 0, and neighbours outside the image
    read 0 (csrc/deform_conv.h). Input channel ``c`` uses deformable group
    ``c // (C // deform_groups)``; the samples are then convolved with ``weight`` as
    ``torch.nn.functional.conv2d(groups=groups)`` would, so zero offsets give exactly a plain
    convolution. Half precision is computed in float32.

    Args:
        input (Tensor[B, C, H, W]): features; float16/bfloat16/32/64.
        offset (Tensor[B, deform_groups * 2 * kh * kw, Ho, Wo]): (dy, dx) pairs per tap, in
            input pixels.
        weight (Tensor[C_out, C / groups, kh, kw]): convolution weights.
        stride, padding, dilation (list[int]): (h, w) each.
        groups (int): convolution groups; divides C and C_out.
        deform_groups (int): offset groups; divides C.

    Returns:
        Tensor[B, C_out, Ho, Wo] of ``input``'s dtype and device, with
        ``Ho = (H + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1`` (same for W).
    """
    return torch.ops.cendetect.deform_conv2d(
        input, offset, weight, stride, padding, dilation, groups, deform_groups
    )
