"""Converters (VIA JSON, mask PNG pairs) and the COCO validator, on small hand-made inputs,
broken ones included."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cendetect.cli import main
from cendetect.data.convert import ConvertError, masks_to_coco, via_to_coco
from cendetect.data.validate import validate_coco


def _image(path: Path, w: int = 64, h: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return path


def _via(tmp_path: Path, regions_a: object, regions_b: object) -> Path:
    _image(tmp_path / "img" / "a.jpg")
    _image(tmp_path / "img" / "b.png", 80, 60)
    via = {
        "a.jpg1234": {"filename": "a.jpg", "size": 1234, "regions": regions_a,
                      "file_attributes": {}},
        "b.png999": {"filename": "b.png", "size": 999, "regions": regions_b},
    }  # fmt: skip
    p = tmp_path / "via_region_data.json"
    p.write_text(json.dumps(via))
    return p


POLY = {"name": "polygon", "all_points_x": [10, 30, 30, 10], "all_points_y": [5, 5, 25, 25]}


def test_via_dict_and_list_regions_all_shapes(tmp_path: Path) -> None:
    regions_a = {  # detectron2 balloon style: a dict keyed "0", "1"...
        "0": {"shape_attributes": POLY, "region_attributes": {"class": "bar"}},
        "1": {
            "shape_attributes": {"name": "rect", "x": 40, "y": 10, "width": 20, "height": 8},
            "region_attributes": {"class": "balloon"},
        },
    }
    regions_b = [  # VIA 2 style: a list
        {"shape_attributes": {"name": "ellipse", "cx": 40, "cy": 30, "rx": 12, "ry": 6,
                              "theta": 0.5}, "region_attributes": {"class": {"mosaic": True}}},
        {"shape_attributes": {"name": "circle", "cx": 15, "cy": 15, "r": 5},
         "region_attributes": {}},
    ]  # fmt: skip
    src = _via(tmp_path, regions_a, regions_b)
    coco = via_to_coco(src, tmp_path / "img", "class", {"balloon": "mosaic"}, "bar")
    assert [(im["file_name"], im["width"], im["height"]) for im in coco["images"]] == [
        ("a.jpg", 64, 48),
        ("b.png", 80, 60),
    ]
    anns = coco["annotations"]
    assert [a["category_id"] for a in anns] == [1, 2, 2, 1]
    assert [a["image_id"] for a in anns] == [1, 1, 2, 2]
    # the 20 x 20 polygon and the 20 x 8 rect: exact areas and boxes
    assert anns[0]["bbox"] == [10.0, 5.0, 20.0, 20.0] and abs(anns[0]["area"] - 400) <= 40
    assert anns[1]["bbox"] == [40.0, 10.0, 20.0, 8.0] and abs(anns[1]["area"] - 160) <= 30
    assert abs(anns[2]["area"] - np.pi * 12 * 6) < 0.15 * np.pi * 72
    assert [i for i in validate_coco(coco, tmp_path / "img") if i.level == "error"] == []


@pytest.mark.parametrize(
    ("region", "message"),
    [
        ({"shape_attributes": POLY, "region_attributes": {"class": "cat"}}, "neither bar nor"),
        ({"shape_attributes": POLY, "region_attributes": {}}, "no class under"),
        (
            {
                "shape_attributes": {"name": "point", "cx": 1, "cy": 2},
                "region_attributes": {"class": "bar"},
            },
            "unsupported shape 'point'",
        ),  # fmt: skip
        (
            {
                "shape_attributes": {"name": "rect", "x": 1, "y": 2},
                "region_attributes": {"class": "bar"},
            },
            "without 'width'",
        ),  # fmt: skip
        (
            {
                "shape_attributes": {
                    "name": "polygon",
                    "all_points_x": [1, 2],
                    "all_points_y": [1],
                },
                "region_attributes": {"class": "bar"},
            },
            "2 x but 1 y",
        ),  # fmt: skip
    ],
)
def test_via_broken_regions_name_the_entry(tmp_path: Path, region: dict, message: str) -> None:
    src = _via(tmp_path, {"0": region}, [])
    with pytest.raises(ConvertError, match=message) as ei:
        via_to_coco(src, tmp_path / "img")
    assert "a.jpg region 0" in str(ei.value)


def test_via_missing_image(tmp_path: Path) -> None:
    src = _via(tmp_path, [], [])
    (tmp_path / "img" / "b.png").unlink()
    with pytest.raises(ConvertError, match=r"b\.png.* not found"):
        via_to_coco(src, tmp_path / "img")


def test_masks_to_coco_components_classes_min_area(tmp_path: Path) -> None:
    _image(tmp_path / "data" / "x.jpg", 60, 40)
    mask = np.zeros((40, 60, 3), np.uint8)  # BGR
    mask[2:10, 2:20] = (0, 255, 0)  # bar 1 (8 x 18)
    mask[30:38, 40:58] = (0, 255, 0)  # bar 2, another component
    mask[15:25, 25:35] = (255, 255, 0)  # mosaic: RGB [0, 255, 255] written as BGR
    mask[0:2, 50:52] = (0, 250, 5)  # a 4 px bar speck: below min_area
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), mask)
    coco = masks_to_coco(tmp_path / "masks", tmp_path / "data", min_area=8)
    got = sorted((a["category_id"], a["area"], tuple(a["bbox"])) for a in coco["annotations"])
    assert got == [
        (1, 144, (2.0, 2.0, 18.0, 8.0)),
        (1, 144, (40.0, 30.0, 18.0, 8.0)),
        (2, 100, (25.0, 15.0, 10.0, 10.0)),
    ]
    assert coco["images"] == [{"id": 1, "file_name": "x.jpg", "width": 60, "height": 40}]
    # bgr order reads the cyan mosaic as nothing and keeps the bars
    coco_bgr = masks_to_coco(tmp_path / "masks", tmp_path / "data", min_area=8, order="bgr")
    assert sorted(a["category_id"] for a in coco_bgr["annotations"]) == [1, 1]
    assert validate_coco(coco, tmp_path / "data") == []


def test_masks_size_mismatch_and_missing_image(tmp_path: Path) -> None:
    _image(tmp_path / "data" / "x.png", 60, 40)
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "x.png"), np.zeros((41, 60, 3), np.uint8))
    with pytest.raises(ConvertError, match="mask is 60x41 but"):
        masks_to_coco(tmp_path / "masks", tmp_path / "data")
    cv2.imwrite(str(tmp_path / "masks" / "y.png"), np.zeros((40, 60, 3), np.uint8))
    (tmp_path / "masks" / "x.png").unlink()
    with pytest.raises(ConvertError, match=r"y\.png: no image y"):
        masks_to_coco(tmp_path / "masks", tmp_path / "data")


def _good_coco() -> dict:
    m = np.zeros((40, 60), np.uint8)
    m[5:15, 10:30] = 1
    rle = mask_utils.encode(np.asfortranarray(m))
    rle["counts"] = rle["counts"].decode()
    return {
        "images": [{"id": 1, "file_name": "x.png", "width": 60, "height": 40}],
        "categories": [{"id": 1, "name": "bar"}, {"id": 2, "name": "mosaic"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "area": 200,
             "iscrowd": 0, "segmentation": rle},
            {"id": 8, "image_id": 1, "category_id": 2, "bbox": [40, 20, 10, 10], "area": 100,
             "iscrowd": 0, "segmentation": [[40, 20, 50, 20, 50, 30, 40, 30]]},
        ],
    }  # fmt: skip


def _break(fn: Callable[[dict], object]) -> dict:
    c = copy.deepcopy(_good_coco())
    fn(c)
    return c


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["annotations"][0].update(bbox=[50, 5, 20, 10]), "out of the 60x40 image"),
        (lambda c: c["annotations"][0].update(bbox=[10, 5, 0, 10]), "empty bbox"),
        (lambda c: c["annotations"][0].update(category_id=3), "unknown category_id 3"),
        (lambda c: c["annotations"][1].update(id=7), "duplicate annotation id"),
        (lambda c: c["annotations"][0].update(image_id=9), "image_id 9 is not in"),
        (lambda c: c["annotations"][0].update(area=20), "area mismatch"),
        (lambda c: c["annotations"][1].update(segmentation=[]), "empty segmentation"),
        (lambda c: c["annotations"][1].update(segmentation=[[1, 2, 3, 4]]), "2 points"),
        (lambda c: c["annotations"][1].update(segmentation=[[1, 2, 3]]), "odd number"),
        (lambda c: c["annotations"][1].update(segmentation=[[5, 5, 5, 5, 5, 5]]), "no pixel"),
        (lambda c: c["annotations"][0]["segmentation"].update(size=[41, 60]), "RLE size"),
        (lambda c: c["images"].append(dict(c["images"][0])), "duplicate image id"),
        (lambda c: c["images"][0].update(width=0), "positive integers"),
        (lambda c: c.pop("categories"), "'categories' is missing"),
    ],
)
def test_validate_finds_each_problem(mutate: Callable[[dict], object], message: str) -> None:
    assert validate_coco(_good_coco()) == []
    issues = [i for i in validate_coco(_break(mutate)) if i.level == "error"]
    assert any(message in i.message for i in issues), issues


def test_validate_names_annotation_and_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(_break(lambda c: c["annotations"][1].update(bbox=[40, 20, 30, 10]))))
    (issue,) = validate_coco(p)
    assert issue.where == "annotation 8 (image 1 'x.png')"
    assert issue.format(str(p)).startswith(f"{p}: error: annotation 8 (image 1 'x.png'): bbox")
    # images: missing file, then wrong size
    issues = validate_coco(_good_coco(), tmp_path)
    assert any("missing image file" in i.message for i in issues)
    _image(tmp_path / "x.png", 61, 40)
    issues = validate_coco(_good_coco(), tmp_path)
    assert any("recorded size 60x40 but" in i.message for i in issues)


def test_cli_convert_and_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _via(
        tmp_path, {"0": {"shape_attributes": POLY, "region_attributes": {"kind": "bar"}}}, []
    )
    out = tmp_path / "coco.json"
    args = ["convert", "--from", "via", "--input", str(src), "--images", str(tmp_path / "img")]
    assert main([*args, "--out", str(out), "--class-key", "kind"]) == 0
    assert len(json.loads(out.read_text())["annotations"]) == 1
    assert main(["convert", "--validate", str(out), "--images", str(tmp_path / "img")]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_break(lambda c: c["annotations"][0].update(category_id=5))))
    assert main(["convert", "--validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: error: annotation 7 (image 1 'x.png'): unknown category_id 5" in err
    assert main([*args, "--out", str(out)]) == 2  # no 'class' key, no --default-class
    assert "no class under region_attributes['class']" in capsys.readouterr().err


def test_via_project_file(tmp_path: Path) -> None:
    src = _via(tmp_path, [{"shape_attributes": POLY, "region_attributes": {"class": "bar"}}], [])
    project = {"_via_settings": {}, "_via_img_metadata": json.loads(src.read_text())}
    p = tmp_path / "project.json"
    p.write_text(json.dumps(project))
    coco = via_to_coco(p, tmp_path / "img")
    assert len(coco["images"]) == 2 and [a["category_id"] for a in coco["annotations"]] == [1]
