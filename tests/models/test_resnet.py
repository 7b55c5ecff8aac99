"""ResNet styles and frozen stages, as mmdetection's ``ResNet(style=..., frozen_stages=...)``."""

from __future__ import annotations

import pytest
import torch

from cendetect.models.resnet import ResNet


@pytest.mark.parametrize(("style", "s1", "s2"), [("pytorch", 1, 2), ("caffe", 2, 1)])
def test_stride_sits_where_the_style_puts_it(style: str, s1: int, s2: int) -> None:
    net = ResNet(depth=50, style=style).eval()
    first = net.layer2[0]
    assert first.conv1.stride == (s1, s1)
    assert first.conv2.stride == (s2, s2)
    assert first.downsample[0].stride == (2, 2)
    with torch.no_grad():
        outs = net(torch.randn(1, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [
        (1, 256, 16, 24),
        (1, 512, 8, 12),
        (1, 1024, 4, 6),
        (1, 2048, 2, 3),
    ]


def test_frozen_stages_and_frozen_batchnorm_statistics() -> None:
    net = ResNet(depth=50, frozen_stages=1)
    assert not net.conv1.weight.requires_grad and not net.bn1.weight.requires_grad
    assert not any(p.requires_grad for p in net.layer1.parameters())
    assert all(p.requires_grad for p in net.layer2.parameters())
    before = net.layer2[0].bn1.running_mean.clone()
    net.train()
    net(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, net.layer2[0].bn1.running_mean)  # norm_eval: stats never move


def test_unsupported_depth_and_style_are_refused() -> None:
    with pytest.raises(ValueError, match="depth 34"):
        ResNet(depth=34)
    with pytest.raises(ValueError, match="style"):
        ResNet(style="tf")
