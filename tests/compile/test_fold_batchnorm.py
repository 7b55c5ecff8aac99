"""Folding Frozen BatchNorm into the preceding convolution (low-precision engines only)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from cendetect.compile.precision import LowPrecision, fold_frozen_batchnorm
from cendetect.models.dcn import DCNConfig
from cendetect.models.layers import FrozenBatchNorm2d
from cendetect.models.mobilenet_v2 import MobileNetV2
from cendetect.models.resnet import ResNet


def _randomize_bn(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, FrozenBatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=g) + 0.5
            m.bias.data = torch.randn(n, generator=g)
            m.running_mean.data = torch.randn(n, generator=g) * 0.5
            m.running_var.data = torch.rand(n, generator=g) + 0.2


def _count(model: nn.Module, kind: type) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def test_resnet_every_batchnorm_folds_and_outputs_agree() -> None:
    torch.manual_seed(0)
    net = ResNet(depth=50).eval()
    _randomize_bn(net, 1)
    n_bn = _count(net, FrozenBatchNorm2d)
    assert n_bn == 53  # stem + 16 blocks x 3 + 4 downsamples
    folded = copy.deepcopy(net)
    assert fold_frozen_batchnorm(folded) == n_bn
    assert _count(folded, FrozenBatchNorm2d) == 0
    x = torch.randn(1, 3, 96, 128)
    with torch.inference_mode():
        want, got = net(x), folded(x)
    for a, b in zip(want, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


def test_mobilenet_folds_and_deformable_convolutions_are_left_alone() -> None:
    net = MobileNetV2(out_indices=(1, 2, 4, 7)).eval()
    _randomize_bn(net, 2)
    folded = copy.deepcopy(net)
    assert fold_frozen_batchnorm(folded) == _count(net, FrozenBatchNorm2d) > 0
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        for a, b in zip(net(x), folded(x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))
    dcn = ResNet(depth=50, dcn=DCNConfig(), stage_with_dcn=(False, True, True, True))
    n_dcn_blocks = 4 + 6 + 3
    assert fold_frozen_batchnorm(dcn) == 53 - n_dcn_blocks
    assert _count(dcn, FrozenBatchNorm2d) == n_dcn_blocks


def test_low_precision_folds_a_copy_and_runs_channels_last() -> None:
    net = ResNet(depth=50).eval()
    low = LowPrecision(net, torch.bfloat16)
    assert _count(net, FrozenBatchNorm2d) == 53  # the original is untouched
    assert _count(low, FrozenBatchNorm2d) == 0
    conv = low.model.layer1[0].conv2
    assert conv.weight.dtype == torch.bfloat16 and conv.bias is not None
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
