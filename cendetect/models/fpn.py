"""Feature Pyramid Network with mmdetection's names (``neck.lateral_convs.0.conv.weight``).

mmdet 2.28 ``FPN`` defaults: nearest-neighbour top-down upsampling to the exact size of the
finer level, no norm/activation, and extra levels (``num_outs > len(in_channels)``) made by
``max_pool2d(kernel=1, stride=2)`` on the last output when ``add_extra_convs=False``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from cendetect.models.layers import ConvModule


class FPN(nn.Module):
    """Input: C2..C5 feature maps; output ``num_outs`` maps of ``out_channels`` (P2..P6)."""

    def __init__(self, in_channels: list[int], out_channels: int = 256, num_outs: int = 5) -> None:
        super().__init__()
        if num_outs < len(in_channels):
            raise ValueError(f"FPN num_outs={num_outs} < number of inputs {len(in_channels)}")
        self.num_outs = num_outs
        self.lateral_convs = nn.ModuleList(
            [ConvModule(c, out_channels, 1, relu=False) for c in in_channels]
        )
        self.fpn_convs = nn.ModuleList(
            [ConvModule(out_channels, out_channels, 3, padding=1, relu=False) for _ in in_channels]
        )

    def forward(self, inputs: list[Tensor]) -> list[Tensor]:
        laterals: list[Tensor] = []
        for i, conv in enumerate(self.lateral_convs):
            laterals.append(conv(inputs[i]))
        for i in range(len(laterals) - 1, 0, -1):
            size = laterals[i - 1].shape[-2:]
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=(size[0], size[1]), mode="nearest"
            )
        outs: list[Tensor] = []
        for i, conv in enumerate(self.fpn_convs):
            outs.append(conv(laterals[i]))
        for _ in range(self.num_outs - len(outs)):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return outs
