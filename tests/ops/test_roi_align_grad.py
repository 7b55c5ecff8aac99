"""Gradients of roi_align / multi_level_roi_align w.r.t. the features (gradcheck, float64).

RoIAlign is linear in the features, so gradcheck's central differences are exact but for
float64 rounding (~1e-16 |out| / eps = 1e-10), far inside its default atol 1e-5 / rtol 1e-3.
"""

from __future__ import annotations

import pytest
import torch

from cendetect.ops import multi_level_roi_align, roi_align
from tests.tolerances import reorder_tol

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


def test_square_roi_align_gradcheck_uses_the_kernel() -> None:
    """A square single-level output goes through the C++ backward (one level of the kernel)."""
    g = torch.Generator().manual_seed(2)
    feat = torch.randn(2, 3, 9, 11, generator=g, dtype=torch.float64, requires_grad=True)

    def pool(x: torch.Tensor) -> torch.Tensor:
        return roi_align(x, ROIS, [3, 3], 0.25, 0, True)

    assert torch.autograd.gradcheck(pool, (feat,))


def _torch_vjp(feats: list[torch.Tensor], rois: torch.Tensor, grad: torch.Tensor, **kw):
    """The reference gradient: autograd through the pure-torch RoIAlign, level by level."""
    from cendetect.ops.roi_align_autograd import _torch_pool
    from cendetect.ops.roi_align_op import _multi_level_by_level

    leaves = [f.detach().clone().requires_grad_() for f in feats]
    out = _multi_level_by_level(
        leaves,
        rois,
        kw["size"],
        kw["scales"],
        kw["ratio"],
        kw["aligned"],
        kw["finest"],
        pool=_torch_pool,
    )
    return torch.autograd.grad(out, leaves, grad, allow_unused=True)


@pytest.mark.parametrize(("size", "ratio", "aligned"), [(7, 0, True), (14, 2, False)])
def test_kernel_gradient_matches_autograd_reference(size: int, ratio: int, aligned: bool) -> None:
    """float32, 40 channels (three thread blocks), rois on every level and over the borders."""
    g = torch.Generator().manual_seed(size + ratio)
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    feats = [
        torch.randn(2, 40, 96 // s, 120 // s, generator=g, requires_grad=True)
        for s in (4, 8, 16, 32)
    ]
    xy = torch.rand(60, 2, generator=g) * 110 - 10
    wh = torch.rand(60, 2, generator=g) * torch.tensor([4.0, 300.0])[torch.randint(0, 2, (60, 1))]
    rois = torch.cat([torch.randint(0, 2, (60, 1), generator=g).float(), xy, xy + wh], dim=1)
    out = multi_level_roi_align(feats, rois, size, scales, ratio, aligned, 56)
    grad = torch.randn(out.shape, generator=g)
    ours = torch.autograd.grad(out, feats, grad)
    ref = _torch_vjp(
        feats, rois, grad, size=size, scales=scales, ratio=ratio, aligned=aligned, finest=56
    )
    # Both sum the same products (grad / count x bilinear weight) into each feature pixel, in
    # another order: the kernel roi by roi, autograd's index_add per tap. A pixel collects at most
    # rois x bins x samples terms; 60 x 4 taps bounds the ones that overlap here, and the products
    # are at most max|grad| / count. A wrong tap or weight moves a gradient by >= 1e-2.
    scale = float(grad.abs().max())
    for a, b, f in zip(ours, ref, feats, strict=True):
        b = torch.zeros_like(f) if b is None else b
        torch.testing.assert_close(a, b, rtol=0, atol=reorder_tol(60 * 4 * 16, scale=scale))


def test_kernel_gradient_does_not_depend_on_threads() -> None:
    """Threads own channel blocks and every pixel sums in roi order: results are bit-identical."""
    g = torch.Generator().manual_seed(5)
    feats = [torch.randn(1, 64, 40 // s, 40 // s, generator=g, requires_grad=True) for s in (1, 2)]
    rois = torch.tensor([[0, 1.5, 2.0, 30.0, 33.0], [0, 0.0, 0.0, 120.0, 100.0]] * 20)
    grad = torch.randn(40, 64, 7, 7, generator=g)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out = multi_level_roi_align(feats, rois, 7, [1.0, 0.5], 0, True, 56)
            results.append(torch.autograd.grad(out, feats, grad))
    finally:
        torch.set_num_threads(before)
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_bfloat16_features_get_bfloat16_gradients() -> None:
    feat = torch.randn(1, 8, 12, 12).bfloat16().requires_grad_()
    rois = torch.tensor([[0, 1.0, 1.0, 30.0, 40.0]])
    multi_level_roi_align([feat], rois, 7, [0.25], 0, True, 56).sum().backward()
    assert feat.grad is not None and feat.grad.dtype == torch.bfloat16
    assert float(feat.grad.float().abs().sum()) > 0


def test_bad_batch_index_in_backward_names_the_roi() -> None:
    from cendetect.ops.roi_align_autograd import multi_level_backward_cpu

    meta = (torch.Size([1, 2, 8, 8]), torch.float32, torch.device("cpu"))
    rois = torch.tensor([[0, 1.0, 1.0, 5.0, 5.0], [3, 1.0, 1.0, 5.0, 5.0]])
    with pytest.raises(ValueError, match=r"rois\[1, 0\] = 3"):
        multi_level_backward_cpu([meta], rois, torch.ones(2, 2, 7, 7), [1.0], 0, True, 56)
