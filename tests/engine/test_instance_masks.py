"""Compact masks: full-resolution, COCO RLE (pycocotools) and polygon (OpenCV) conversions.

Boolean bitmaps and integer contours throughout: every comparison is exact.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cendetect.engine import InstanceMasks, paste_masks
from tests.engine.test_compositor_paste import random_boxes

H, W = 64, 80


@pytest.fixture
def masks() -> InstanceMasks:
    rng = np.random.default_rng(11)
    n = 10
    probs = rng.random((n, 28, 28), dtype=np.float32)
    probs[:, 8:20, 8:20] = 1.0
    return paste_masks(probs, random_boxes(rng, n, H, W), (H, W))


def test_crops_sit_in_their_windows(masks: InstanceMasks) -> None:
    full = masks.to_full()
    assert full.shape == (len(masks), H, W) and full.dtype == np.bool_
    for i, (x0, y0, x1, y1) in enumerate(masks.windows):
        inside = np.zeros((H, W), bool)
        inside[y0:y1, x0:x1] = True
        assert not full[i][~inside].any()
        assert np.array_equal(full[i, y0:y1, x0:x1], masks.crop(i))
    assert np.array_equal(masks.areas(), full.sum((1, 2)))
    assert np.array_equal(masks.union(), full.any(0))


def test_round_trip_from_full_and_select(masks: InstanceMasks) -> None:
    full = masks.to_full()
    again = InstanceMasks.from_full(full)
    assert np.array_equal(again.to_full(), full)
    assert again.data.size <= masks.data.size  # tight boxes
    assert np.array_equal(masks.select([3, 1]).to_full(), full[[3, 1]])
    assert np.array_equal(masks.select(np.arange(len(masks)) % 2 == 0).to_full(), full[::2])


def test_rle_decodes_to_the_masks(masks: InstanceMasks) -> None:
    rles = masks.to_rle()
    assert len(rles) == len(masks)
    for rle, m in zip(rles, masks.to_full()):
        assert rle["size"] == [H, W] and isinstance(rle["counts"], str)
        assert np.array_equal(mask_utils.decode(rle).astype(bool), m)
    assert np.array_equal(mask_utils.area(rles), masks.areas())


@pytest.mark.parametrize("holes", [False, True])
def test_polygons_equal_contours_of_the_full_mask(masks: InstanceMasks, holes: bool) -> None:
    mode = cv2.RETR_CCOMP if holes else cv2.RETR_EXTERNAL
    for polys, m in zip(masks.to_polygons(holes=holes), masks.to_full()):
        want, _ = cv2.findContours(
            np.pad(m.astype(np.uint8), 1), mode, cv2.CHAIN_APPROX_SIMPLE, offset=(-1, -1)
        )
        canon = sorted(tuple(map(tuple, c.reshape(-1, 2))) for c in want)
        assert sorted(tuple(map(tuple, p)) for p in polys) == canon
        if not holes and polys:  # outer contours filled back cover the mask
            filled = np.zeros((H, W), np.uint8)
            cv2.drawContours(filled, polys, -1, 1, cv2.FILLED)
            assert not (m & (filled == 0)).any()


def test_dilate_is_clamped_to_the_image(masks: InstanceMasks) -> None:
    grown = masks.dilate(5)
    assert (grown.windows[:, [0, 1]] >= 0).all()
    assert (grown.windows[:, 2] <= W).all() and (grown.windows[:, 3] <= H).all()
    assert masks.dilate(0) is masks
    with pytest.raises(ValueError, match="pixels >= 0"):
        masks.dilate(-2)


def test_empty_and_invalid_construction() -> None:
    empty = InstanceMasks.empty((5, 6))
    assert len(empty) == 0 and empty.to_full().shape == (0, 5, 6)
    assert empty.to_rle() == [] and empty.to_polygons() == []
    win = np.array([[0, 0, 2, 2]])
    with pytest.raises(ValueError, match="not inside"):
        InstanceMasks((5, 6), np.array([[0, 0, 7, 2]]), [0, 14], np.zeros(14, np.uint8))
    with pytest.raises(ValueError, match="offsets"):
        InstanceMasks((5, 6), win, [0, 5], np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match="holds 3 bytes"):
        InstanceMasks((5, 6), win, [0, 4], np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="uint8 or bool"):
        InstanceMasks((5, 6), win, [0, 4], np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="non-negative"):
        InstanceMasks((-1, 6), np.zeros((0, 4)), [0], np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="crop 0 has shape"):
        InstanceMasks.from_crops((5, 6), win, [np.zeros((3, 2))])


def test_nonzero_bytes_given_to_the_constructor_mean_set() -> None:
    m = InstanceMasks((3, 3), np.array([[0, 0, 2, 2]]), [0, 4], np.array([0, 255, 7, 1], np.uint8))
    assert m.data.tolist() == [0, 1, 1, 1]
    assert m.to_full()[0].tolist() == [[False, True, False], [True, True, False], [False] * 3]
