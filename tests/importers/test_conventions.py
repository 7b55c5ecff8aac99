"""detectron2 / maskrcnn-benchmark test-time arithmetic against hand-computed values and the
numbers published in their sources."""

from __future__ import annotations

import math

import pytest
import torch

from cendetect.errors import ConfigError
from cendetect.models.box_coder import base_anchors, decode_deltas
from cendetect.models.conventions import BoxConvention, split_convention
from cendetect.models.detectron import (
    SCALE_CLAMP,
    decode_detectron,
    detectron2_cell_anchors,
    legacy_cell_anchors,
    legacy_roi_levels,
    nms_boxes,
)
from tests.importers.layouts import LEGACY_P2_ANCHORS, _legacy_anchors
from tests.tolerances import U32


def _decode_tol(expected: torch.Tensor) -> float:
    """A decoded coordinate is a few float32 operations on values below max |coordinate| (one
    rounding each, at most U32 of the value) and exp of a rounded logarithm (argument and
    result within a few U32 relative): 8 roundings at that magnitude bound the error."""
    return 8 * U32 * float(expected.abs().max())


# The table in the comment above Detectron's generate_anchors (maskrcnn_benchmark/modeling/rpn/
# anchor_generator.py): stride 16, scales (8, 16, 32), ratios (0.5, 1, 2), ratio-major. It is
# the output of Shaoqing Ren's MATLAB code, whose windows are 1-based; the Python function uses
# the 0-based window (0, 0, 15, 15), so each of its coordinates is the table's minus one.
DETECTRON_TABLE = [
    [-83, -39, 100, 56],
    [-175, -87, 192, 104],
    [-359, -183, 376, 200],
    [-55, -55, 72, 72],
    [-119, -119, 136, 136],
    [-247, -247, 264, 264],
    [-35, -79, 52, 96],
    [-79, -167, 96, 184],
    [-167, -343, 184, 360],
]


def test_legacy_anchors_match_the_published_stride_16_table() -> None:
    rows = [
        legacy_cell_anchors(16, 16 * scale, [ratio])[0]
        for ratio in (0.5, 1.0, 2.0)
        for scale in (8, 16, 32)
    ]
    ours = torch.stack(rows)
    # whole numbers (numpy's rounding, then exact scaling and re-centring): exact
    assert torch.equal(ours, torch.tensor(DETECTRON_TABLE, dtype=torch.float32) - 1)


def test_legacy_fpn_anchors_match_an_independent_transcription() -> None:
    # half-integers from rounded sizes scaled by powers of two: exact in float32
    assert torch.equal(legacy_cell_anchors(4, 32, [0.5, 1.0, 2.0]), torch.tensor(LEGACY_P2_ANCHORS))
    for i, expected in enumerate(_legacy_anchors()):
        assert torch.equal(legacy_cell_anchors(4 * 2**i, 32 * 2**i, [0.5, 1.0, 2.0]), expected)


def test_detectron2_anchors_equal_mmdet_anchors_up_to_rounding() -> None:
    for stride in (4, 8, 16, 32, 64):
        d2 = detectron2_cell_anchors(8 * stride, [0.5, 1.0, 2.0])
        mm = base_anchors(stride, [0.5, 1.0, 2.0], [8.0])
        # detectron2 rounds each float64 coordinate once to float32; mmdet takes a sqrt, a
        # reciprocal and two products in float32: <= 5 roundings of values below the size
        torch.testing.assert_close(d2, mm, rtol=0, atol=5 * U32 * 8 * stride)
    # sqrt(32**2 / 0.5) / 2 = 22.627..., h = 0.5 * w (Python floats rounded once: exact)
    w = math.sqrt(1024 / 0.5)
    expected = torch.tensor([-w / 2, -w / 4, w / 2, w / 4], dtype=torch.float32)
    assert torch.equal(detectron2_cell_anchors(32, [0.5])[0], expected)


def _decode(rois, deltas, weights, offset, hw=(100, 100)):
    return decode_detectron(
        torch.tensor(rois, dtype=torch.float32),
        torch.tensor(deltas, dtype=torch.float32),
        list(weights),
        offset,
        SCALE_CLAMP,
        torch.tensor(hw[0]),
        torch.tensor(hw[1]),
    )


def test_maskrcnn_benchmark_decode_hand_computed() -> None:
    # roi (0, 0, 9, 19): w = 10, h = 20 with +1, centre (5, 10); weights (10, 10, 5, 5)
    # dx = 1, dy = -0.5, dw = ln 2, dh = 0 -> centre (15, 0), size (20, 20)
    # x1 = 15 - 10 = 5, y1 = -10 -> 0, x2 = 15 + 10 - 1 = 24, y2 = 0 + 10 - 1 = 9
    out = _decode([[0, 0, 9, 19]], [[10, -5, 5 * math.log(2), 0]], (10, 10, 5, 5), 1.0)
    want = torch.tensor([[5.0, 0.0, 24.0, 9.0]])
    torch.testing.assert_close(out, want, rtol=0, atol=_decode_tol(want))
    # clipped to W - 1 = 99 (TO_REMOVE), not to W; exact: exp(0) = 1, the rest half-integers
    out = _decode([[0, 0, 9, 19]], [[100, 0, 0, 0]], (10, 10, 5, 5), 1.0)
    torch.testing.assert_close(out, torch.tensor([[99.0, 0.0, 99.0, 19.0]]), rtol=0, atol=0)
    # zero deltas give the roi back (the "- 1" of x2 undoes the "+ 1" of the width), exactly
    out = _decode([[3, 4, 17, 30]], [[0, 0, 0, 0]], (10, 10, 5, 5), 1.0)
    torch.testing.assert_close(out, torch.tensor([[3.0, 4.0, 17.0, 30.0]]), rtol=0, atol=0)


def test_detectron2_decode_hand_computed() -> None:
    # roi (10, 10, 30, 50): w = 20, h = 40, centre (20, 30); weights 1
    # dx = .5, dy = .25, dw = ln .5, dh = ln 2 -> centre (30, 40), size (10, 80)
    out = _decode([[10, 10, 30, 50]], [[0.5, 0.25, math.log(0.5), math.log(2)]], (1, 1, 1, 1), 0.0)
    want = torch.tensor([[25.0, 0.0, 35.0, 80.0]])
    torch.testing.assert_close(out, want, rtol=0, atol=_decode_tol(want))
    # x clipped to W = 100 (not W - 1); exact: exp(0) = 1, the rest whole numbers
    out = _decode([[90, 0, 100, 10]], [[5, 0, 0, 0]], (1, 1, 1, 1), 0.0)
    torch.testing.assert_close(out, torch.tensor([[100.0, 0.0, 100.0, 10.0]]), rtol=0, atol=0)


def test_decode_and_detections_without_rois() -> None:
    from cendetect.models.detectron import detectron_detections

    empty = torch.zeros((0, 8))
    out = decode_detectron(
        torch.zeros((0, 4)), empty, [10.0] * 4, 1.0, SCALE_CLAMP, torch.tensor(9), torch.tensor(9)
    )
    assert out.shape == (0, 8)
    boxes, scores, labels, ids = detectron_detections(
        torch.zeros((0, 5)),
        torch.zeros((0, 3)),
        empty,
        [0],
        torch.tensor([[9, 9]]),
        2,
        [10.0, 10.0, 5.0, 5.0],
        1.0,
        SCALE_CLAMP,
        0.05,
        0.5,
        100,
    )
    assert boxes.shape == (0, 4) and scores.shape == labels.shape == ids.shape == (0,)


def test_detectron_clamps_dw_from_above_only_unlike_mmdet() -> None:
    rois, deltas = [[0, 0, 2, 2]], [[0, 0, 10, -10]]
    ours = _decode(rois, deltas, (1, 1, 1, 1), 0.0, hw=(1000, 1000))[0]
    # dw = 10 is clamped to log(1000/16): width 2 * 62.5 = 125 around x = 1, clipped at 0
    want = torch.tensor([0.0, 63.5])
    torch.testing.assert_close(ours[[0, 2]], want, rtol=0, atol=_decode_tol(want))
    # dh = -10 is not clamped: height 2 * exp(-10). y1 and y2 lie next to 1, each rounded once
    # (half an ulp: U32 / 2 below 1, U32 above), and their difference is exact: 2 U32 covers
    # that and the few-U32 relative error of the height itself.
    torch.testing.assert_close(
        ours[3] - ours[1], torch.tensor(2 * math.exp(-10)), rtol=0, atol=2 * U32
    )
    mm = decode_deltas(
        torch.tensor(rois, dtype=torch.float32),
        torch.tensor(deltas, dtype=torch.float32),
        [0.0] * 4,
        [1.0] * 4,
        torch.tensor(1000),
        torch.tensor(1000),
    )[0]
    # as above: y1, y2 next to 1, each rounded once
    torch.testing.assert_close(mm[3] - mm[1], torch.tensor(2 / 62.5), rtol=0, atol=2 * U32)


def test_nms_offset_gives_the_legacy_iou() -> None:
    # (0,0,9,9) and (5,0,14,9): legacy IoU = 50 / 150 = 1/3; without +1: 36 / 126 = 0.286
    boxes = torch.tensor([[0.0, 0.0, 9.0, 9.0], [5.0, 0.0, 14.0, 9.0]])
    scores = torch.tensor([0.9, 0.8])
    assert torch.ops.cendetect.nms(boxes, scores, 0.3).tolist() == [0, 1]
    assert torch.ops.cendetect.nms(nms_boxes(boxes, 1.0), scores, 0.3).tolist() == [0]
    assert torch.ops.cendetect.nms(nms_boxes(boxes, 1.0), scores, 0.34).tolist() == [0, 1]
    assert nms_boxes(boxes, 0.0) is boxes


def test_legacy_level_mapping_uses_plus_one_areas() -> None:
    # x2 - x1 = 111: mmdet sqrt area 111 < 112 -> level 0; legacy 112 -> level 1
    rois = torch.tensor(
        [[0, 0, 0, 111, 111], [0, 0, 0, 110, 110], [0, 0, 0, 447, 447], [0, 0, 0, 10, 10]],
        dtype=torch.float32,
    )
    assert legacy_roi_levels(rois, 4, 56, 1.0, 1e-6).tolist() == [1, 0, 3, 0]
    assert legacy_roi_levels(rois, 4, 56, 0.0, 1e-6).tolist() == [0, 0, 2, 0]


def test_box_convention_config_is_checked() -> None:
    conv = BoxConvention(family="maskrcnn_benchmark", anchors="legacy", offset=1.0)
    rest, parsed = split_convention({"type": "MaskRCNN", "box_convention": conv.to_config()})
    assert parsed == conv and rest == {"type": "MaskRCNN"}
    assert split_convention({"type": "MaskRCNN"}) == ({"type": "MaskRCNN"}, None)
    bad = {**conv.to_config(), "offset": 0.5}
    with pytest.raises(ConfigError, match="offset"):
        split_convention({"box_convention": bad})
    with pytest.raises(ConfigError, match="unknown keys"):
        split_convention({"box_convention": {**conv.to_config(), "nms": 1}})
    with pytest.raises(ConfigError, match="family"):
        split_convention({"box_convention": {**conv.to_config(), "family": "yolo"}})
