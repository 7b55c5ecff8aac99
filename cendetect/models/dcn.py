"""Deformable convolution layer with mmcv's ``DeformConv2dPack`` parameter names (``DCN``).

State-dict names as mmcv: ``weight`` ([C_out, C_in / groups, kh, kw], no bias) and the offset
predictor ``conv_offset.weight`` / ``conv_offset.bias``. The op is
``torch.ops.cendetect.deform_conv2d`` (cendetect/ops/deform_conv_op.py), so the layer scripts,
exports and runs in an AOTInductor package like the rest of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.deform_conv2d)


@dataclass(frozen=True)
class DCNConfig:
    """mmdetection's ``backbone.dcn=dict(type='DCN', ...)``, for the ResNet backbone.

    Args:
        deform_groups: offset groups of each deformable 3x3 convolution.
        fallback_on_stride: mmdetection reads (and pops) this key from the one ``dcn`` dict all
            blocks share, so ``True`` makes only the FIRST block built with DCN (the first block
            of the first stage in ``stage_with_dcn``) a plain convolution; every later block is
            deformable. We reproduce that, so checkpoints load with ``strict=True``.
    """

    deform_groups: int = 1
    fallback_on_stride: bool = False


def _pair(value: int | tuple[int, int]) -> list[int]:
    if isinstance(value, int):
        return [value, value]
    return [int(value[0]), int(value[1])]


class DeformConv2dPack(nn.Module):
    """DCNv1 whose offsets come from a plain convolution of the same input (mmcv ``DCN``).

    ``offset = conv_offset(x)`` (same kernel, stride, padding and dilation as the deformable
    convolution, ``deform_groups * 2 * kh * kw`` channels of (dy, dx) pairs, with bias), then
    ``deform_conv2d(x, offset, weight, ...)``. The offset predictor starts at zero, as mmcv's, so
    a fresh layer computes a plain convolution.

    Input ``Tensor[B, C_in, H, W]``; output ``Tensor[B, C_out, Ho, Wo]`` with the usual
    convolution output size.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        deform_groups: int = 1,
    ) -> None:
        super().__init__()
        if in_channels % groups != 0 or out_channels % groups != 0:
            raise ValueError(
                f"DeformConv2dPack: groups={groups} must divide in_channels ({in_channels}) and "
                f"out_channels ({out_channels})"
            )
        if in_channels % deform_groups != 0:
            raise ValueError(
                f"DeformConv2dPack: deform_groups={deform_groups} must divide in_channels "
                f"({in_channels})"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.deform_groups = deform_groups
        kh, kw = self.kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels // groups, kh, kw))
        self.conv_offset = nn.Conv2d(
            in_channels,
            deform_groups * 2 * kh * kw,
            kernel_size=(kh, kw),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=True,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Kaiming-uniform weights and a zero offset predictor, as mmcv's initialisation."""
        nn.init.kaiming_uniform_(self.weight, nonlinearity="relu")
        nn.init.zeros_(self.conv_offset.weight)
        nn.init.zeros_(self.conv_offset.bias)

    def forward(self, x: Tensor) -> Tensor:
        offset = self.conv_offset(x)
        return torch.ops.cendetect.deform_conv2d(
            x,
            offset,
            self.weight,
            self.stride,
            self.padding,
            self.dilation,
            self.groups,
            self.deform_groups,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
            f"groups={self.groups}, deform_groups={self.deform_groups}, bias=False"
        )
