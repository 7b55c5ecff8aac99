"""ResNet backbone with mmdetection's parameter names (``backbone.layer1.0.conv1.weight``...).

Two styles, as mmdet's ``ResNet(style=...)``: ``'pytorch'`` puts the stride of a bottleneck on
its 3x3 convolution, ``'caffe'`` on its first 1x1. BatchNorm layers are frozen (mmdet
``norm_eval=True``), which is how every CenDetect config runs the backbone. With ``dcn``, the 3x3
convolution of the bottlenecks in the stages of ``stage_with_dcn`` is deformable (mmdet
``dcn=dict(type='DCN')``, cendetect/models/dcn.py).
"""

from __future__ import annotations

from torch import Tensor, nn

from cendetect.models.dcn import DCNConfig, DeformConv2dPack
from cendetect.models.layers import FrozenBatchNorm2d

#: blocks per stage for each supported depth (Bottleneck ResNets)
RESNET_STAGE_BLOCKS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int,
        style: str,
        downsample: nn.Module | None,
        dcn: DCNConfig | None = None,
    ) -> None:
        super().__init__()
        s1, s2 = (1, stride) if style == "pytorch" else (stride, 1)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, stride=s1, bias=False)
        self.bn1 = FrozenBatchNorm2d(planes)
        self.conv2: nn.Module
        if dcn is None:
            self.conv2 = nn.Conv2d(planes, planes, 3, stride=s2, padding=1, bias=False)
        else:
            self.conv2 = DeformConv2dPack(
                planes, planes, 3, stride=s2, padding=1, deform_groups=dcn.deform_groups
            )
        self.bn2 = FrozenBatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = FrozenBatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet-50/101/152 returning the outputs of stages ``out_indices`` (C2..C5).

    Args:
        depth: 50, 101 or 152.
        style: ``'pytorch'`` or ``'caffe'`` (where the stride of a bottleneck sits).
        out_indices: stages to return, 0-based (0 = C2, stride 4).
        frozen_stages: stem and the first ``frozen_stages`` stages get ``requires_grad=False``.
        dcn: deformable 3x3 convolutions in the stages of ``stage_with_dcn`` (None: none).
        stage_with_dcn: per stage, whether its bottlenecks use ``dcn``.

    Input ``Tensor[B, 3, H, W]``; output a list of ``Tensor[B, 256 * 2**i, H / 2**(i+2), W / ...]``.
    """

    def __init__(
        self,
        depth: int = 50,
        style: str = "pytorch",
        out_indices: tuple[int, ...] = (0, 1, 2, 3),
        frozen_stages: int = 1,
        dcn: DCNConfig | None = None,
        stage_with_dcn: tuple[bool, bool, bool, bool] = (False, False, False, False),
    ) -> None:
        super().__init__()
        if depth not in RESNET_STAGE_BLOCKS:
            raise ValueError(f"ResNet depth {depth} is not supported; use one of 50, 101, 152")
        if style not in ("pytorch", "caffe"):
            raise ValueError(f"ResNet style must be 'pytorch' or 'caffe', got {style!r}")
        if len(stage_with_dcn) != 4:
            raise ValueError(f"ResNet stage_with_dcn needs 4 entries, got {stage_with_dcn!r}")
        self.out_indices = list(out_indices)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = FrozenBatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        layers = []
        # mmdet pops fallback_on_stride from the dcn dict all blocks share: only the first
        # block built with DCN falls back to a plain convolution (DCNConfig).
        fallback = dcn is not None and dcn.fallback_on_stride
        for i, num_blocks in enumerate(RESNET_STAGE_BLOCKS[depth]):
            planes = 64 * 2**i
            stride = 1 if i == 0 else 2
            downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes * 4, 1, stride=stride, bias=False),
                FrozenBatchNorm2d(planes * 4),
            )
            stage_dcn = dcn if stage_with_dcn[i] else None
            blocks = []
            for b in range(num_blocks):
                block_dcn = None if fallback else stage_dcn
                fallback = fallback and stage_dcn is None
                blocks.append(
                    Bottleneck(
                        inplanes if b == 0 else planes * 4,
                        planes,
                        stride if b == 0 else 1,
                        style,
                        downsample if b == 0 else None,
                        block_dcn,
                    )
                )
            inplanes = planes * 4
            layers.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_channels = [256 * 2**i for i in self.out_indices]
        self._freeze(frozen_stages)

    def _freeze(self, frozen_stages: int) -> None:
        if frozen_stages >= 0:
            for p in [*self.conv1.parameters(), *self.bn1.parameters()]:
                p.requires_grad_(False)
        for i in range(1, frozen_stages + 1):
            for p in getattr(self, f"layer{i}").parameters():
                p.requires_grad_(False)

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        outs: list[Tensor] = []
        x = self.layer1(x)
        if 0 in self.out_indices:
            outs.append(x)
        x = self.layer2(x)
        if 1 in self.out_indices:
            outs.append(x)
        x = self.layer3(x)
        if 2 in self.out_indices:
            outs.append(x)
        x = self.layer4(x)
        if 3 in self.out_indices:
            outs.append(x)
        return outs
