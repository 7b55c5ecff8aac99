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
from tests.tolerances import reorder_tol

# Folding rounds weight x scale once per weight and moves the BatchNorm arithmetic into the
# convolution's bias, so every convolution on the longest path rounds its sums differently, as
# two summation orders do: reorder_tol(depth of the deepest sum, max|output|, convolutions on
# the longest path). A wrong fold (eps, mean, std for variance) moves outputs by O(max|output|).


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
    # ResNet-50: 3 x 3 x 512 = 4608-term sums, stem + 16 x 3 = 49 convolutions: 1.6e-3 of
    # max|output| (measured <= 1.7e-6 of it over the ISA levels)
    for a, b in zip(want, got, strict=True):
        tol = reorder_tol(4608, scale=float(a.abs().max()), layers=49)
        torch.testing.assert_close(b, a, rtol=0, atol=tol)


def test_mobilenet_folds_and_deformable_convolutions_are_left_alone() -> None:
    net = MobileNetV2(out_indices=(1, 2, 4, 7)).eval()
    _randomize_bn(net, 2)
    folded = copy.deepcopy(net)
    assert fold_frozen_batchnorm(folded) == _count(net, FrozenBatchNorm2d) > 0
    x = torch.randn(1, 3, 64, 64)
    # MobileNetV2: 1 x 1 convolutions over 960 channels, conv1 + 2 + 16 x 3 + conv2 = 52
    # convolutions: 7.7e-4 of max|output| (measured <= 4.5e-7 of it over the ISA levels)
    with torch.inference_mode():
        for a, b in zip(net(x), folded(x), strict=True):
            tol = reorder_tol(960, scale=float(a.abs().max()), layers=52)
            torch.testing.assert_close(b, a, rtol=0, atol=tol)
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
