"""maskrcnn-benchmark's mask paste (engine/paste_legacy.py, csrc/paste_legacy.cpp): the C++
kernel against the plain reference (pixel for pixel) and against maskrcnn-benchmark's own code
written with torch (``Masker.paste_mask_in_image``, literally)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cendetect.engine.paste_legacy import paste_masks_legacy, paste_masks_legacy_reference


def _theirs(mask: torch.Tensor, box: torch.Tensor, im_h: int, im_w: int) -> np.ndarray:
    """maskrcnn_benchmark/modeling/roi_heads/mask_head/inference.py, paste_mask_in_image with
    thresh 0.5 and padding 1 (expand_masks, expand_boxes, F.interpolate, the inclusive paste)."""
    m = mask.shape[-1]
    scale = float(m + 2) / m
    padded = mask.new_zeros((1, 1, m + 2, m + 2))
    padded[:, :, 1:-1, 1:-1] = mask
    b = box[None]
    w_half = (b[:, 2] - b[:, 0]) * 0.5
    h_half = (b[:, 3] - b[:, 1]) * 0.5
    x_c = (b[:, 2] + b[:, 0]) * 0.5
    y_c = (b[:, 3] + b[:, 1]) * 0.5
    w_half *= scale
    h_half *= scale
    e = torch.zeros_like(b)
    e[:, 0], e[:, 2], e[:, 1], e[:, 3] = x_c - w_half, x_c + w_half, y_c - h_half, y_c + h_half
    bx = e[0].to(dtype=torch.int32)
    w = max(int(bx[2] - bx[0] + 1), 1)
    h = max(int(bx[3] - bx[1] + 1), 1)
    res = F.interpolate(padded, size=(h, w), mode="bilinear", align_corners=False)[0][0] > 0.5
    out = torch.zeros((im_h, im_w), dtype=torch.bool)
    x0, x1 = max(int(bx[0]), 0), min(int(bx[2]) + 1, im_w)
    y0, y1 = max(int(bx[1]), 0), min(int(bx[3]) + 1, im_h)
    bx0, by0 = int(bx[0]), int(bx[1])
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = res[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return out.numpy()


def _case(seed: int) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Random probabilities (many near 0.5) and boxes: inside, across the borders, outside,
    degenerate (x2 < x1 in the +1 convention), tiny and large."""
    rng = np.random.default_rng(seed)
    n = 24
    h, w = int(rng.integers(40, 300)), int(rng.integers(40, 300))
    probs = rng.random((n, 28, 28)).astype(np.float32)
    x1, y1 = rng.uniform(-40, w + 10, n), rng.uniform(-40, h + 10, n)
    boxes = np.stack(
        [x1, y1, x1 + rng.uniform(-1.5, 220, n), y1 + rng.uniform(-1.5, 220, n)], axis=1
    ).astype(np.float32)
    return probs, boxes, (h, w)


@pytest.mark.parametrize("seed", range(6))
def test_kernel_equals_reference_and_theirs(seed: int) -> None:
    """The same float32 expressions on all three sides: every pixel equal, also next to the
    threshold (measured: 0 of 33 million pixels differ from torch's F.interpolate here)."""
    probs, boxes, size = _case(seed)
    ours = paste_masks_legacy(probs, boxes, size)
    full = ours.to_full()
    assert np.array_equal(full, paste_masks_legacy_reference(probs, boxes, size))
    theirs = np.stack([
        _theirs(torch.from_numpy(probs[i])[None], torch.from_numpy(boxes[i]), *size)
        for i in range(len(boxes))
    ])  # fmt: skip
    assert np.array_equal(full, theirs)
    assert full.any() and (~full).any()
    # windows are clipped to the image and hold every pixel of the mask
    for i, (x0, y0, x1, y1) in enumerate(ours.windows):
        assert 0 <= x0 <= x1 <= size[1] and 0 <= y0 <= y1 <= size[0]
        assert full[i].sum() == full[i, y0:y1, x0:x1].sum()


def test_differs_from_the_mmdet_paste_as_documented() -> None:
    """The legacy paste reaches about a box pixel further out than mmdetection's pixel model."""
    from cendetect.engine.compositor import paste_masks

    probs = np.ones((1, 28, 28), np.float32)
    boxes = np.array([[10.0, 20.0, 69.0, 59.0]], np.float32)  # +1 convention: 60 x 40 pixels
    legacy = paste_masks_legacy(probs, boxes, (100, 100)).to_full()[0]
    mmdet = paste_masks(probs, boxes, (100, 100)).to_full()[0]
    assert legacy.sum() > mmdet.sum()
    ys, xs = np.nonzero(legacy)
    assert xs.min() <= 10 and xs.max() >= 69 and ys.min() <= 20 and ys.max() >= 59


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="square"):
        paste_masks_legacy(np.zeros((1, 28, 14), np.float32), np.zeros((1, 4), np.float32), (9, 9))
    empty = paste_masks_legacy(np.zeros((0, 28, 28), np.float32), np.zeros((0, 4)), (9, 9))
    assert len(empty) == 0
