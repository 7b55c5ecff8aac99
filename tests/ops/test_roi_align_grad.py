"""Gradients of roi_align / multi_level_roi_align w.r.t. the features (gradcheck, float64).

RoIAlign is linear in the features, so gradcheck's central differences are exact but for
float64 rounding (~1e-16 |out| / eps = 1e-10), far inside its default atol 1e-5 / rtol 1e-3.
"""

from __future__ import annotations

import pytest
import torch

from cendetect.ops import multi_level_roi_align, roi_align

ROIS = torch.tensor(
    [
        [0, 1, 1, 30, 20],
        [1, -5, 3, 12, 40],  # hangs over the border
        [1, 2, 2, 2, 9],  # zero width
        [0, 50, 50, 70, 90],  # outside the map
    ],
    dtype=torch.float64,
)


@pytest.mark.parametrize(("ratio", "aligned"), [(0, True), (2, False)])
def test_roi_align_gradcheck(ratio: int, aligned: bool) -> None:
    g = torch.Generator().manual_seed(0)
    feat = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)

    def pool(x: torch.Tensor) -> torch.Tensor:
        return roi_align(x, ROIS, [3, 2], 0.25, ratio, aligned)

    assert torch.autograd.gradcheck(pool, (feat,))


def test_multi_level_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    feats = [
        torch.randn(2, 2, 16 // 2**i, 16 // 2**i, generator=g, dtype=torch.float64)
        for i in range(3)
    ]
    feats = [f.requires_grad_() for f in feats]
    # Levels 0, 1 and 0 (zero width).
    rois = torch.tensor([[0, 1, 1, 30, 20], [1, 0, 0, 200, 150], [1, 2, 2, 1, 9]]).double()

    def pool(*xs: torch.Tensor) -> torch.Tensor:
        return multi_level_roi_align(list(xs), rois, 3, [1 / 4, 1 / 8, 1 / 16], 0, True, 56)

    assert torch.autograd.gradcheck(pool, tuple(feats))
    # No roi maps to the last level: its gradient is zero, not missing.
    pool(*feats).sum().backward()
    # nothing is accumulated into it: exact zeros
    assert feats[2].grad is not None and feats[2].grad.abs().max() == 0


def test_float32_gradient_dtype() -> None:
    feat = torch.randn(2, 3, 9, 11, requires_grad=True)
    roi_align(feat, ROIS.float(), [2, 2], 0.25, 0, True).sum().backward()
    assert feat.grad is not None and feat.grad.dtype == torch.float32
