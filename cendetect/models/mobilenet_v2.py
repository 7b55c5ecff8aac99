"""MobileNetV2 backbone with mmdetection 2.28's module names and semantics.

``backbone.conv1`` (3x3 stride-2 stem), ``backbone.layer1`` .. ``layer7`` (stacks of inverted
residual blocks: ``expand_conv`` 1x1 + ReLU6 (absent when the expansion ratio is 1),
``depthwise_conv`` 3x3 + ReLU6, ``linear_conv`` 1x1 without activation, identity shortcut when the
stride is 1 and the channels match) and ``backbone.conv2`` (1x1 to 1280 channels). Each of those is
an mmcv ``ConvModule`` with a BatchNorm: ``.conv.weight`` (no bias) and ``.bn.*``. BatchNorm is
frozen (mmdet ``norm_eval=True``).

``out_indices`` count the eight stages ``layer1..layer7, conv2`` from 0, as mmdet does: with the
stem at stride 2, stages 1, 2, 3-4 and 5-7 are at strides 4, 8, 16 and 32, and their channels are
24, 32, 64/96 and 160/320/1280 times ``widen_factor`` (rounded by :func:`make_divisible`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from cendetect.errors import ConfigError
from cendetect.models.layers import FrozenBatchNorm2d

#: (expand_ratio, channels, num_blocks, stride) per stage, mmdet ``MobileNetV2.arch_settings``
ARCH_SETTINGS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def make_divisible(value: float, divisor: int, min_ratio: float = 0.9) -> int:
    """Nearest multiple of ``divisor`` to ``value``, never below ``min_ratio * value``
    (mmdet ``make_divisible`` with ``min_value=divisor``)."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < min_ratio * value:
        new_value += divisor
    return new_value


class ConvBNAct(nn.Module):
    """mmcv ``ConvModule(conv, BN, ReLU6 | None)``: ``.conv`` (no bias) and ``.bn``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        act: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            kernel_size // 2,
            groups=groups,
            bias=False,
        )
        self.bn = FrozenBatchNorm2d(out_channels)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.bn(self.conv(x))
        if self.act:
            x = torch.clamp(x, 0.0, 6.0)  # ReLU6
        return x


class InvertedResidual(nn.Module):
    """mmdet ``InvertedResidual`` without SE: ``[expand_conv] -> depthwise_conv -> linear_conv``
    (+ ``x`` when ``stride == 1`` and ``in_channels == out_channels``)."""

    def __init__(
        self, in_channels: int, out_channels: int, mid_channels: int, stride: int, expand: bool
    ) -> None:
        super().__init__()
        self.with_res_shortcut = stride == 1 and in_channels == out_channels
        self.with_expand_conv = expand
        # mmdet creates expand_conv only when it is used; an Identity keeps TorchScript happy
        # and adds no state-dict key
        self.expand_conv: nn.Module = (
            ConvBNAct(in_channels, mid_channels, 1) if expand else nn.Identity()
        )
        self.depthwise_conv = ConvBNAct(mid_channels, mid_channels, 3, stride, groups=mid_channels)
        self.linear_conv = ConvBNAct(mid_channels, out_channels, 1, act=False)

    def forward(self, x: Tensor) -> Tensor:
        out = self.linear_conv(self.depthwise_conv(self.expand_conv(x)))
        if self.with_res_shortcut:
            return x + out
        return out


class MobileNetV2(nn.Module):
    """MobileNetV2 returning the outputs of stages ``out_indices`` (0..7, see the module doc).

    Args:
        widen_factor: channel multiplier.
        out_indices: stages to return, ascending.
        frozen_stages: stem and stages ``layer1..layer{frozen_stages}`` get
            ``requires_grad=False`` (-1: nothing frozen).

    Input ``Tensor[B, 3, H, W]``; output a list of ``Tensor[B, C_i, H / s_i, W / s_i]``.
    """

    def __init__(
        self,
        widen_factor: float = 1.0,
        out_indices: tuple[int, ...] = (1, 2, 4, 7),
        frozen_stages: int = -1,
    ) -> None:
        super().__init__()
        if not set(out_indices) <= set(range(8)) or list(out_indices) != sorted(out_indices):
            raise ValueError(
                f"MobileNetV2 out_indices must be ascending in 0..7, got {out_indices}"
            )
        if frozen_stages not in range(-1, 8):
            raise ValueError(f"MobileNetV2 frozen_stages must be in -1..7, got {frozen_stages}")
        self.out_indices = list(out_indices)
        in_ch = make_divisible(32 * widen_factor, 8)
        self.conv1 = ConvBNAct(3, in_ch, 3, stride=2)
        stage_channels: list[int] = []
        stages: list[nn.Sequential] = []
        for expand_ratio, channels, num_blocks, stride in ARCH_SETTINGS:
            out_ch = make_divisible(channels * widen_factor, 8)
            blocks = []
            for i in range(num_blocks):
                mid = int(round(in_ch * expand_ratio))
                blocks.append(
                    InvertedResidual(in_ch, out_ch, mid, stride if i == 0 else 1, expand_ratio != 1)
                )
                in_ch = out_ch
            stages.append(nn.Sequential(*blocks))
            stage_channels.append(out_ch)
        (
            self.layer1,
            self.layer2,
            self.layer3,
            self.layer4,
            self.layer5,
            self.layer6,
            self.layer7,
        ) = stages
        last = int(1280 * widen_factor) if widen_factor > 1.0 else 1280
        self.conv2 = ConvBNAct(in_ch, last, 1)
        stage_channels.append(last)
        self.out_channels = [stage_channels[i] for i in self.out_indices]
        # stages after the last requested output change nothing in the outputs: skip them
        self.num_stages_run = max(self.out_indices) + 1
        self._freeze(frozen_stages)

    def _freeze(self, frozen_stages: int) -> None:
        if frozen_stages >= 0:
            for p in self.conv1.parameters():
                p.requires_grad_(False)
        for i in range(1, frozen_stages + 1):
            for p in getattr(self, f"layer{i}").parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.conv1(x)
        outs: list[Tensor] = []
        # unrolled: TorchScript cannot call modules of different types out of one list
        n = self.num_stages_run
        if n > 0:
            x = self.layer1(x)
            if 0 in self.out_indices:
                outs.append(x)
        if n > 1:
            x = self.layer2(x)
            if 1 in self.out_indices:
                outs.append(x)
        if n > 2:
            x = self.layer3(x)
            if 2 in self.out_indices:
                outs.append(x)
        if n > 3:
            x = self.layer4(x)
            if 3 in self.out_indices:
                outs.append(x)
        if n > 4:
            x = self.layer5(x)
            if 4 in self.out_indices:
                outs.append(x)
        if n > 5:
            x = self.layer6(x)
            if 5 in self.out_indices:
                outs.append(x)
        if n > 6:
            x = self.layer7(x)
            if 6 in self.out_indices:
                outs.append(x)
        if n > 7:
            outs.append(self.conv2(x))
        return outs


def build_mobilenet_v2(cfg: dict[str, Any]) -> MobileNetV2:
    """:class:`MobileNetV2` from mmdet's ``backbone`` dict; refuses what we compute differently."""
    norm = cfg.get("norm_cfg", {"type": "BN"})
    if norm.get("type") not in ("BN", "SyncBN"):
        raise ConfigError(
            f"model config: backbone.norm_cfg type {norm.get('type')!r} is not supported"
        )
    # mmdet's MobileNetV2 defaults to norm_eval=False; ours always freezes BatchNorm, so the
    # config must say so explicitly
    if not cfg.get("norm_eval", False):
        raise ConfigError(
            "model config: MobileNetV2 needs backbone.norm_eval=True (BatchNorm in train mode "
            "is not supported)"
        )
    act = cfg.get("act_cfg", {"type": "ReLU6"})
    if act.get("type") != "ReLU6":
        raise ConfigError(f"model config: backbone.act_cfg={act!r} is not supported (ReLU6 only)")
    if cfg.get("conv_cfg") is not None:
        raise ConfigError("model config: backbone.conv_cfg is not supported")
    return MobileNetV2(
        widen_factor=float(cfg.get("widen_factor", 1.0)),
        out_indices=tuple(cfg.get("out_indices", (1, 2, 4, 7))),
        frozen_stages=int(cfg.get("frozen_stages", -1)),
    )
