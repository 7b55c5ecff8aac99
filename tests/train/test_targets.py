"""Assignment, sampling, box encoding and mask targets against hand-computed cases."""

from __future__ import annotations

import torch

from cendetect.models.box_coder import decode_deltas
from cendetect.train.targets import (
    IGNORE,
    NEGATIVE,
    assign_max_iou,
    box_iou,
    encode_deltas,
    mask_targets,
    masks_to_boxes,
    sample_random,
)
from tests.tolerances import U32

# Hand values compared at assert_close's float32 default (rtol 1.3e-6, ~11 ulp): each is a few
# elementwise roundings from an exact value (measured exact on every ISA level).


def test_box_iou_hand_values() -> None:
    a = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 15.0]])
    b = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 5.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
    expected = torch.tensor([[1.0, 0.5, 0.0], [25 / 175, 0.0, 0.0]])
    torch.testing.assert_close(box_iou(a, b), expected)


def test_assign_positive_negative_ignored_and_low_quality() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0], [100.0, 100.0, 110.0, 140.0]])
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0],  # IoU 1 with gt 0 -> positive (1)
            [0.0, 0.0, 10.0, 6.0],  # IoU 0.6 with gt 0: between thresholds -> ignored
            [50.0, 50.0, 60.0, 60.0],  # IoU 0 -> negative
            [100.0, 100.0, 110.0, 115.0],  # IoU 0.375 with gt 1: gt 1's best -> low quality
            [0.0, 0.0, 10.0, 2.0],  # IoU 0.2 -> negative
        ]
    )
    assigned = assign_max_iou(boxes, gt, 0.7, 0.3, 0.3)
    assert assigned.tolist() == [1, IGNORE, NEGATIVE, 2, NEGATIVE]
    no_lq = assign_max_iou(boxes, gt, 0.7, 0.3, 0.3, match_low_quality=False)
    assert no_lq.tolist() == [1, IGNORE, NEGATIVE, IGNORE, NEGATIVE]
    # a gt whose best IoU is under min_pos_iou takes nothing
    high_min = assign_max_iou(boxes, gt, 0.7, 0.3, 0.5)
    assert high_min.tolist() == [1, IGNORE, NEGATIVE, IGNORE, NEGATIVE]


def test_assign_invalid_boxes_are_ignored_and_not_low_quality_matched() -> None:
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0], [50.0, 50, 60, 60]])
    valid = torch.tensor([False, True, True])
    # with the perfect box invalid, the 0.5-IoU box becomes gt 0's best: low-quality positive
    assert assign_max_iou(boxes, gt, 0.7, 0.3, 0.3, valid=valid).tolist() == [IGNORE, 1, 0]


def test_assign_without_gt_is_all_negative() -> None:
    boxes = torch.rand(5, 2).repeat(1, 2) + torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert assign_max_iou(boxes, torch.zeros(0, 4), 0.7, 0.3, 0.3).tolist() == [0] * 5


def test_sample_random_respects_fraction_and_fills_with_negatives() -> None:
    assigned = torch.tensor([1] * 10 + [0] * 100 + [IGNORE] * 5)
    g = torch.Generator().manual_seed(0)
    pos, neg = sample_random(assigned, 32, 0.25, g)
    assert pos.numel() == 8 and neg.numel() == 24
    assert (assigned[pos] > 0).all() and (assigned[neg] == 0).all()
    assert pos.unique().numel() == 8 and neg.unique().numel() == 24
    few = torch.tensor([2, 0, 0, IGNORE])
    pos, neg = sample_random(few, 256, 0.5)
    assert pos.tolist() == [0] and sorted(neg.tolist()) == [1, 2]


def test_encode_hand_case_and_decode_inverse() -> None:
    box = torch.tensor([[0.0, 0.0, 10.0, 20.0]])
    gt = torch.tensor([[5.0, 0.0, 15.0, 40.0]])
    d = encode_deltas(box, gt, (0.0, 0.0, 0.0, 0.0), (1.0, 1.0, 1.0, 1.0))
    torch.testing.assert_close(
        d, torch.tensor([[0.5, 0.5, 0.0, float(torch.log(torch.tensor(2.0)))]])
    )
    g = torch.Generator().manual_seed(0)
    boxes = torch.rand(20, 2, generator=g) * 50
    boxes = torch.cat([boxes, boxes + torch.rand(20, 2, generator=g) * 30 + 1], dim=1)
    gts = boxes + torch.randn(20, 4, generator=g)
    stds = (0.1, 0.1, 0.2, 0.2)
    deltas = encode_deltas(boxes, gts, (0.0, 0.0, 0.0, 0.0), stds)
    back = decode_deltas(
        boxes, deltas, [0.0] * 4, list(stds), torch.tensor(1000.0), torch.tensor(1000.0)
    )
    # each decoded corner went through about ten float32 roundings (centres, sizes, the division
    # and log, exp and product) of values up to max|gts|, and ATen's exp/log differ by an ulp
    # between ISAs: 16 U32 x max|gts| (~7e-5 px) bounds it; measured 3.8e-6 px (0.9 U32 x max)
    # on every ISA level; a wrong std, mean or centre moves corners by a good part of the ~1 px
    # offsets between boxes and gts
    tol = 16 * U32 * float(gts.abs().max())
    torch.testing.assert_close(back, gts.clamp(min=0), rtol=0, atol=tol)


def test_mask_targets_crop_and_resize() -> None:
    masks = torch.zeros(2, 40, 40, dtype=torch.uint8)
    masks[0, 10:30, 10:20] = 1  # left half of the box 10..30 x 10..30
    masks[1] = 1
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [0.0, 0.0, 40.0, 40.0]])
    t = mask_targets(masks, boxes, torch.tensor([0, 1]), 28)
    assert t.shape == (2, 28, 28)
    assert t[0, :, :14].eq(1).all() and t[0, :, 14:].eq(0).all()
    assert t[1].eq(1).all()
    assert mask_targets(masks, torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), 28).shape == (
        0,
        28,
        28,
    )


def test_masks_to_boxes_pixel_edges() -> None:
    masks = torch.zeros(3, 10, 12, dtype=torch.bool)
    masks[0, 2:5, 3:7] = True
    masks[1, 9, 11] = True
    boxes = masks_to_boxes(masks)
    assert boxes.tolist() == [[3.0, 2.0, 7.0, 5.0], [11.0, 9.0, 12.0, 10.0], [0.0, 0.0, 0.0, 0.0]]
