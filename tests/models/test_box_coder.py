"""Anchors and the delta coder against values worked out by hand from mmdetection's formulas."""

from __future__ import annotations

import math

import torch

from cendetect.models.box_coder import MAX_DWH, base_anchors, decode_deltas, grid_anchors

# Tolerances: the expected values are exact in float32 (small integers and halves) or one
# rounding away (sqrt, exp); the coder rounds each of its few elementwise operations once, and
# ATen's per-ISA exp/log differ by at most an ulp, so assert_close's float32 default (rtol
# 1.3e-6, ~11 ulp) holds on every code path (measured: exact, or 1 ulp on the clamped width).


def test_base_anchors_stride4_match_mmdet_formula() -> None:
    a = base_anchors(4, [0.5, 1.0, 2.0], [8.0])
    # ratio 0.5: h = 32 * sqrt(0.5), w = 32 / sqrt(0.5); anchors centred on (0, 0)
    w, h = 32 / math.sqrt(0.5), 32 * math.sqrt(0.5)
    expected = torch.tensor(
        [[-w / 2, -h / 2, w / 2, h / 2], [-16, -16, 16, 16], [-h / 2, -w / 2, h / 2, w / 2]]
    )
    torch.testing.assert_close(a, expected.float())


def test_grid_anchors_order_is_row_major_cells_then_anchors() -> None:
    base = base_anchors(8, [0.5, 1.0, 2.0], [8.0])
    g = grid_anchors(base, feat_h=2, feat_w=3, stride=8)
    assert g.shape == (2 * 3 * 3, 4)
    # cell (y=1, x=2) is the 6th cell; its second anchor is the square one, shifted by (16, 8)
    torch.testing.assert_close(g[5 * 3 + 1], base[1] + torch.tensor([16.0, 8.0, 16.0, 8.0]))


def test_decode_identity_and_clipping() -> None:
    rois = torch.tensor([[10.0, 20.0, 50.0, 40.0], [-5.0, -5.0, 500.0, 500.0]])
    deltas = torch.zeros(2, 4)
    out = decode_deltas(
        rois, deltas, [0.0] * 4, [1.0] * 4, torch.tensor(100.0), torch.tensor(200.0)
    )
    torch.testing.assert_close(
        out, torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 200.0, 100.0]])
    )


def test_decode_shift_scale_and_wh_clamp() -> None:
    rois = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    # dx=0.1 (x std 0.1 -> 0.01 * w = 0.1 px), dw = log(2) / 0.2 (std 0.2 -> width doubles)
    deltas = torch.tensor([[0.1, 0.0, math.log(2.0) / 0.2, 0.0]])
    out = decode_deltas(
        rois, deltas, [0.0] * 4, [0.1, 0.1, 0.2, 0.2], torch.tensor(1e4), torch.tensor(1e4)
    )
    cx = 5.0 + 0.01 * 10.0
    torch.testing.assert_close(out, torch.tensor([[cx - 10.0, 0.0, cx + 10.0, 20.0]]).clamp(min=0))
    # dw = 100 is clamped to log(1000 / 16): the width grows 62.5x, not e^100
    huge = decode_deltas(
        rois,
        torch.tensor([[0.0, 0.0, 100.0, 0.0]]),
        [0.0] * 4,
        [1.0] * 4,
        torch.tensor(1e6),
        torch.tensor(1e6),
    )
    torch.testing.assert_close(huge, torch.tensor([[0.0, 0.0, 5.0 + 312.5, 20.0]]))
    assert math.isclose(math.exp(MAX_DWH), 62.5, rel_tol=1e-9)  # float64 libm: ~1e-16 off


def test_decode_multi_class_layout() -> None:
    rois = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    deltas = torch.zeros(1, 8)
    deltas[0, 4] = 1.0  # class 1 dx
    out = decode_deltas(rois, deltas, [0.0] * 4, [1.0] * 4, torch.tensor(1e4), torch.tensor(1e4))
    assert out.shape == (1, 8)
    torch.testing.assert_close(out[0, :4], torch.tensor([0.0, 0.0, 10.0, 10.0]))
    torch.testing.assert_close(out[0, 4:], torch.tensor([10.0, 0.0, 20.0, 10.0]))
