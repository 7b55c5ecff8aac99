"""The training RoIAlign equals ``cendetect::multi_level_roi_align`` in value and gradient."""

from __future__ import annotations

import pytest
import torch

from cendetect.models.roi_heads import RoIExtractor, RoIExtractorConfig
from cendetect.train.roi_pool import multi_level_roi_align_train


def _rois(n: int, g: torch.Generator, batch: int, extent: float) -> torch.Tensor:
    xy = torch.rand(n, 2, generator=g) * extent - 8  # some start outside the image
    wh = torch.rand(n, 2, generator=g) * extent * 0.8 + 0.3
    idx = torch.randint(0, batch, (n, 1), generator=g).float()
    rois = torch.cat([idx, xy, xy + wh], dim=1)
    rois[0, 1:] = torch.tensor([5.0, 5.0, 5.0, 9.0])  # zero width
    return rois


@pytest.mark.parametrize(
    ("output_size", "ratio", "aligned"), [(7, 0, True), (14, 0, True), (7, 2, False)]
)
def test_values_and_gradients_match_the_op(output_size: int, ratio: int, aligned: bool) -> None:
    g = torch.Generator().manual_seed(output_size + ratio)
    ex = RoIExtractor(RoIExtractorConfig(output_size, sampling_ratio=ratio, aligned=aligned))
    feats = [
        torch.randn(2, 3, 64 // s, 80 // s, generator=g, requires_grad=True) for s in (4, 8, 16, 32)
    ]
    rois = _rois(24, g, 2, 90.0)
    ref = ex(feats, rois)
    ours = multi_level_roi_align_train(ex, feats, rois)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
    grad = torch.randn(ref.shape, generator=g)
    ref_g = torch.autograd.grad(ref, feats, grad, allow_unused=True)
    our_g = torch.autograd.grad(ours, feats, grad, allow_unused=True)
    for a, b, f in zip(our_g, ref_g, feats, strict=True):
        a = torch.zeros_like(f) if a is None else a
        b = torch.zeros_like(f) if b is None else b
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_no_rois() -> None:
    ex = RoIExtractor(RoIExtractorConfig(7))
    feats = [torch.randn(1, 3, 16 // s, 16 // s) for s in (1, 2, 4, 8)]
    assert multi_level_roi_align_train(ex, feats, torch.zeros(0, 5)).shape == (0, 3, 7, 7)
