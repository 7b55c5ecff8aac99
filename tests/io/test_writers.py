"""COCO JSON, OPEX JSON and ROI CSV writers, on hand-made detections."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from opex import ObjectPredictions
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from cendetect.engine.masks import InstanceMasks
from cendetect.engine.postprocess import Detections
from cendetect.flow.stream import select
from cendetect.io.coco import CocoWriter, detections_to_coco
from cendetect.io.opex import to_opex, write_opex
from cendetect.io.roi_csv import ROI_COLUMNS, roi_csv_name, to_roi_csv
from cendetect.io.shapes import outline_polygons, pixel_box


def _detections() -> Detections:
    h, w = 40, 60
    masks = np.zeros((3, h, w), dtype=bool)
    masks[0, 5:15, 10:30] = True  # a rectangle
    masks[1, 20:35, 40:55] = True
    masks[1, 25:30, 45:50] = False  # with a hole
    masks[2, 0, 0] = True  # a single pixel: outline falls back to the box
    return Detections(
        boxes=np.array([[10, 5, 30, 15], [40, 20, 55, 35], [0, 0, 0.6, 0.7]], np.float32),
        scores=np.array([0.9, 0.3, 0.31], np.float32),
        labels=np.array([0, 1, 1], np.int64),
        instance_masks=InstanceMasks.from_full(masks),
        class_names=("bar", "mosaic"),
        image_size=(h, w),
    )


def test_select_is_strict_and_filters_classes() -> None:
    det = _detections()
    assert len(select(det, 0.3)) == 2  # 0.3 itself is not > 0.3
    only = select(det, 0.0, ["mosaic"])
    assert only.labels.tolist() == [1, 1] and len(only.instance_masks) == 2
    np.testing.assert_array_equal(only.masks, det.masks[1:])
    assert len(select(det, 0.95)) == 0
    with pytest.raises(ValueError, match="unknown class 'car'"):
        select(det, 0.0, ["car"])


def test_shapes_use_pixel_indices() -> None:
    det = _detections()
    assert pixel_box(det.boxes[0], det.image_size) == (10, 5, 29, 14)
    assert pixel_box(det.boxes[2], det.image_size) == (0, 0, 0, 0)
    polys = outline_polygons(det)
    assert sorted(map(tuple, polys[0].tolist())) == [(10, 5), (10, 14), (29, 5), (29, 14)]
    assert len(polys[2]) == 4  # box fallback


def test_opex_validates_with_the_opex_package(tmp_path: Path) -> None:
    det = _detections()
    write_opex(tmp_path / "a.json", det, "a.png")
    doc = ObjectPredictions.from_json_string((tmp_path / "a.json").read_text())
    assert doc.id == "a.png" and [o.label for o in doc.objects] == ["bar", "mosaic", "mosaic"]
    o = doc.objects[0]
    assert (o.bbox.left, o.bbox.top, o.bbox.right, o.bbox.bottom) == (10, 5, 29, 14)
    # exact: the float32 score 0.9 is written as the float64 it widens to, and read back
    assert o.score == float(np.float32(0.9)) and len(o.polygon.points) >= 3
    empty = select(det, 0.99)
    assert (
        len(ObjectPredictions.from_json_string(to_opex(empty, "e").to_json_string()).objects) == 0
    )


def test_roi_csv_layout() -> None:
    det = _detections()
    assert roi_csv_name("dir/photo.jpg") == "photo-rois.csv"
    rows = list(csv.reader(io.StringIO(to_roi_csv(det, "photo.jpg"))))
    assert tuple(rows[0]) == ROI_COLUMNS and len(rows) == 4
    r = dict(zip(ROI_COLUMNS, rows[1], strict=True))
    assert (r["file"], r["x0"], r["y0"], r["x1"], r["y1"]) == ("photo.jpg", "10", "5", "29", "14")
    assert float(r["x0n"]) == 10 / 60 and float(r["y1n"]) == 14 / 40
    assert (r["label"], r["label_str"]) == ("0", "bar")
    xs, ys = r["poly_x"].split(","), r["poly_y"].split(",")
    assert len(xs) == len(ys) == 4 and set(xs) == {"10", "29"}


def test_coco_file_loads_with_pycocotools_and_round_trips_masks(tmp_path: Path) -> None:
    det = _detections()
    anns = detections_to_coco(det, image_id=7)
    assert anns[0]["bbox"] == [10.0, 5.0, 20.0, 10.0] and anns[0]["category_id"] == 1
    writer = CocoWriter(det.class_names)
    writer.add("sub/a.png", det)
    writer.add("b.png", select(det, 0.5))
    writer.write(tmp_path / "coco.json")
    coco = COCO(str(tmp_path / "coco.json"))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["bar", "mosaic"]
    a = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    np.testing.assert_array_equal(
        np.stack([mask_utils.decode(x["segmentation"]) for x in a]), det.masks
    )
    assert len(coco.getAnnIds(imgIds=[2])) == 1
    assert coco.loadRes(coco.dataset["annotations"])  # a valid results list too
    kept = CocoWriter(det.class_names, previous=tmp_path / "coco.json", keep={"b.png"})
    assert [im["file_name"] for im in kept.images] == ["b.png"]
    assert len(kept.annotations) == 1 and json.dumps(kept.to_dict())
