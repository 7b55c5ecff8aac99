"""Outline and box options (mmdet_predict's --mask_nth, --view_margin, --fully_connected,
--output_minrect, --fit_bbox_to_polygon, --bbox_as_fallback) and the combined mask image."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cendetect.engine.masks import InstanceMasks
from cendetect.engine.postprocess import Detections
from cendetect.io.mask_image import label_image, mask_image_name, write_mask_image
from cendetect.io.shapes import ShapeOptions, instance_shapes, outline_polygons


def _det(
    masks: np.ndarray, boxes: list[list[float]], labels: list[int] | None = None
) -> Detections:
    n = len(masks)
    return Detections(
        boxes=np.array(boxes, np.float32).reshape(n, 4),
        scores=np.linspace(0.9, 0.5, n).astype(np.float32),
        labels=np.array(labels or [0] * n, np.int64),
        instance_masks=InstanceMasks.from_full(masks),
        class_names=("bar", "mosaic"),
        image_size=masks.shape[1:],
    )


def test_default_options_give_the_outlines_as_before() -> None:
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 50, 70), bool)
    boxes = []
    for i in range(6):
        blob = cv2.resize(rng.random((6, 8)).astype(np.float32), (40, 30)) > 0.55
        masks[i, 10:40, 15:55] = blob
        boxes.append([15, 10, 55, 40])
    det = _det(masks, boxes)
    for shape, poly in zip(instance_shapes(det), outline_polygons(det), strict=True):
        assert np.array_equal(shape.polygon, poly) and shape.minrect is None


def test_mask_nth_traces_a_coarser_grid() -> None:
    masks = np.zeros((1, 60, 60), bool)
    masks[0, 11:40, 7:52] = True
    det = _det(masks, [[7, 11, 52, 40]])
    poly = instance_shapes(det, ShapeOptions(mask_nth=4))[0].polygon
    assert (poly % 4 == 0).all()  # only rows and columns 0, 4, 8, ... of the image
    xs, ys = poly[:, 0], poly[:, 1]
    # the grid's first and last samples inside the rectangle
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (8, 48, 12, 36)


def test_view_margin_ignores_mask_far_from_the_box() -> None:
    masks = np.zeros((1, 60, 80), bool)
    masks[0, 10:20, 10:20] = True  # inside the box
    masks[0, 30:58, 40:78] = True  # a larger stray region far from it
    det = _det(masks, [[10, 10, 20, 20]])
    whole = instance_shapes(det)[0].polygon  # default: the whole mask, the larger region
    assert whole[:, 0].min() == 40
    viewed = instance_shapes(det, ShapeOptions(view_margin=2))[0].polygon
    assert (viewed[:, 0].min(), viewed[:, 0].max()) == (10, 19)


def test_fully_connected_low_splits_at_a_corner() -> None:
    masks = np.zeros((1, 40, 40), bool)
    masks[0, 5:15, 5:15] = True
    masks[0, 15:30, 15:30] = True  # touches the first square only at a corner
    det = _det(masks, [[5, 5, 30, 30]])
    high = instance_shapes(det, ShapeOptions(fully_connected="high"))[0].polygon
    low = instance_shapes(det, ShapeOptions(fully_connected="low"))[0].polygon
    assert high[:, 0].min() == 5 and high[:, 0].max() == 29  # one region over both
    assert (low[:, 0].min(), low[:, 0].max()) == (15, 29)  # the larger square alone


def test_minrect_fit_and_fallback() -> None:
    masks = np.zeros((2, 100, 100), bool)
    rect = cv2.boxPoints(((50.0, 50.0), (60.0, 10.0), 30.0)).astype(np.int32)
    cv2.fillPoly(masks[0].view(np.uint8), [rect], 1)
    masks[1, 20:22, 20:80] = True  # a two-pixel line in a tall box
    det = _det(masks, [[20, 20, 80, 80], [20, 10, 80, 90]])
    shapes = instance_shapes(det, ShapeOptions(output_minrect=True))
    w, h = sorted(shapes[0].minrect)
    assert abs(h - 60) <= 2 and abs(w - 10) <= 2
    fit = instance_shapes(det, ShapeOptions(fit_bbox_to_polygon=True))[0]
    xs, ys = fit.polygon[:, 0], fit.polygon[:, 1]
    assert fit.box == (xs.min(), ys.min(), xs.max(), ys.max())
    # the line's outline covers 60 x 2 of a 60 x 80 box: below 0.5 it falls back to the box
    fb = instance_shapes(det, ShapeOptions(bbox_as_fallback=0.5, output_minrect=True))
    assert fb[1].polygon.tolist() == [[20, 10], [79, 10], [79, 89], [20, 89]]
    assert fb[1].minrect == (60.0, 80.0)
    assert len(fb[0].polygon) >= 4 and fb[0].polygon.tolist() != fb[1].polygon.tolist()
    kept = instance_shapes(det, ShapeOptions(bbox_as_fallback=0.0))
    assert kept[1].polygon[:, 1].max() == 21  # ratio 0 never falls back
    with pytest.raises(ValueError, match="cannot be used together"):
        ShapeOptions(fit_bbox_to_polygon=True, bbox_as_fallback=0.5)
    with pytest.raises(ValueError, match="mask_nth"):
        ShapeOptions(mask_nth=0)


def test_mask_image_keeps_the_first_detection(tmp_path: Path) -> None:
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:12, 2:12] = True
    masks[1, 8:18, 8:28] = True  # overlaps the first
    det = _det(masks, [[2, 2, 12, 12], [8, 8, 28, 18]], labels=[1, 0])
    labels = label_image(det)
    assert labels[5, 5] == 2 and labels[10, 10] == 2  # class 1 + 1, first detection wins
    assert labels[15, 20] == 1 and labels[0, 0] == 0
    path = tmp_path / mask_image_name("photo.jpg")
    assert path.name == "photo-mask.png"
    write_mask_image(path, det)
    back = Image.open(io.BytesIO(path.read_bytes()))
    assert back.mode == "P" and np.array_equal(np.asarray(back), labels)
