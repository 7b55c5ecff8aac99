"""The training RoIAlign equals ``cendetect::multi_level_roi_align`` in value and gradient."""

from __future__ import annotations

import pytest
import torch

from cendetect.models.roi_heads import RoIExtractor, RoIExtractorConfig
from cendetect.train.roi_pool import multi_level_roi_align_train
from tests.tolerances import reorder_tol


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
    # Same samples, summed in another order: the op adds each sample's 4 bilinear taps, the
    # training path sums tent weights per window pixel and then multiplies two matrices. The
    # deepest output sum here: 3 x 3 samples per bin x 4 taps = 36 terms of features up to
    # max|feat| (measured <= 3.6e-7 over the ISA levels; a wrong sample moves values by ~0.1).
    scale = max(float(f.abs().max()) for f in feats)
    torch.testing.assert_close(ours, ref, rtol=0, atol=reorder_tol(36, scale=scale))
    grad = torch.randn(ref.shape, generator=g)
    ref_g = torch.autograd.grad(ref, feats, grad, allow_unused=True)
    our_g = torch.autograd.grad(ours, feats, grad, allow_unused=True)
    # a feature pixel's gradient adds the taps of every sample of every roi that reads it:
    # at most 196 for these rois (counted: 69, 108 and 196 for the three settings), in another
    # order on each side (measured <= 9.8e-7 over the ISA levels, on gradients up to 9.4)
    scale = max(float(t.abs().max()) for t in ref_g if t is not None)
    for a, b, f in zip(our_g, ref_g, feats, strict=True):
        a = torch.zeros_like(f) if a is None else a
        b = torch.zeros_like(f) if b is None else b
        torch.testing.assert_close(a, b, rtol=0, atol=reorder_tol(196, scale=scale))


def test_no_rois() -> None:
    ex = RoIExtractor(RoIExtractorConfig(7))
    feats = [torch.randn(1, 3, 16 // s, 16 // s) for s in (1, 2, 4, 8)]
    assert multi_level_roi_align_train(ex, feats, torch.zeros(0, 5)).shape == (0, 3, 7, 7)
