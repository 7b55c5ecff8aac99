"""``cendetect eval``: COCOeval wiring checked with ground truth fed back as detections
(mAP 1.0), perturbed detections (less), and a CLI smoke test with the tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from cendetect.cli import main
from cendetect.data.coco import CocoBuilder
from cendetect.engine.masks import InstanceMasks
from cendetect.engine.postprocess import Detections
from cendetect.evaluation import (
    coco_evaluate,
    load_ground_truth,
    predict_dataset,
    read_results,
    resolve_dataset,
)


def _dataset(root: Path, n: int = 4) -> Path:
    """A tiny synth-style folder: ``root/val/*.png`` + ``root/annotations/instances_val.json``
    with two to three rectangles per image, bars and mosaics."""
    rng = np.random.default_rng(0)
    b = CocoBuilder()
    (root / "val").mkdir(parents=True)
    for i in range(n):
        h, w = 48 + 8 * i, 64
        small = rng.integers(0, 256, (h // 8, w // 8, 3), np.uint8)  # smooth noise: the
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)  # fixture finds things
        cv2.imwrite(str(root / "val" / f"{i}.png"), img)
        image_id = b.add_image(f"{i}.png", w, h)
        for k in range(2 + i % 2):
            m = np.zeros((h, w), bool)
            x0, y0 = 4 + 18 * k, 3 + 5 * k
            m[y0 : y0 + 12 + 2 * i, x0 : x0 + 14] = True
            b.add_mask(image_id, 1 + (k + i) % 2, m)
    b.write(root / "annotations" / "instances_val.json")
    return root


def _gt_as_results(ann_path: Path) -> list[dict]:
    coco = json.loads(ann_path.read_text())
    return [
        {k: a[k] for k in ("image_id", "category_id", "bbox", "segmentation")} | {"score": 0.9}
        for a in coco["annotations"]
    ]


def test_ground_truth_as_detections_scores_one(tmp_path: Path) -> None:
    ann, _ = resolve_dataset(_dataset(tmp_path / "d"), None)
    gt = load_ground_truth(ann)
    m = coco_evaluate(gt, _gt_as_results(ann))
    for t in ("bbox", "segm"):
        assert m[t]["AP"] == pytest.approx(1.0)
        assert m[t]["AP50"] == m[t]["AP75"] == pytest.approx(1.0)
        assert m[t]["AR100"] == pytest.approx(1.0)
        assert m[t]["per_class"] == {"bar": pytest.approx(1.0), "mosaic": pytest.approx(1.0)}


def test_perturbed_detections_score_less(tmp_path: Path) -> None:
    ann, _ = resolve_dataset(_dataset(tmp_path / "d"), None)
    gt = load_ground_truth(ann)
    shifted = []
    for r in _gt_as_results(ann):
        x, y, w, h = r["bbox"]
        m = mask_utils.decode(r["segmentation"])
        m = np.roll(m, 4, axis=1)  # 4 px right: IoU ~ 10/18 on 14 px wide boxes
        rle = mask_utils.encode(np.asfortranarray(m))
        shifted.append(r | {"bbox": [x + 4, y, w, h], "segmentation": rle})
    m = coco_evaluate(gt, shifted)
    for t in ("bbox", "segm"):
        assert m[t]["AP50"] == pytest.approx(1.0)  # IoU 0.56 >= 0.5
        assert m[t]["AP75"] == pytest.approx(0.0)
        assert 0.0 < m[t]["AP"] < 0.5
    # wrong classes: nothing matches
    swapped = [r | {"category_id": 3 - r["category_id"]} for r in _gt_as_results(ann)]
    assert coco_evaluate(gt, swapped)["bbox"]["AP"] == pytest.approx(0.0)
    # no detections at all
    assert coco_evaluate(gt, [])["segm"]["AP"] == 0.0


class _GtDetector:
    """Detector stand-in that 'detects' the ground truth, with class names in another order
    than the dataset's category ids (mosaic = label 0)."""

    class_names = ("mosaic", "bar", "other")

    def __init__(self, ann: Path) -> None:
        self.coco = json.loads(ann.read_text())

    def stream(self, paths: list[Path], batch_size: int = 1) -> Iterator[Detections]:
        by_name = {im["file_name"]: im for im in self.coco["images"]}
        for p in paths:
            im = by_name[Path(p).name]
            anns = [a for a in self.coco["annotations"] if a["image_id"] == im["id"]]
            masks = np.stack([mask_utils.decode(a["segmentation"]).astype(bool) for a in anns])
            boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
            labels = np.array([0 if a["category_id"] == 2 else 1 for a in anns], np.int64)
            yield Detections(
                boxes.astype(np.float32),
                np.linspace(0.9, 0.5, len(anns)).astype(np.float32),
                labels,
                InstanceMasks.from_full(masks),
                self.class_names,
                (im["height"], im["width"]),
            )


def test_predict_dataset_maps_classes_by_name(tmp_path: Path) -> None:
    ann, images = resolve_dataset(_dataset(tmp_path / "d"), None)
    gt = load_ground_truth(ann)
    results, ids = predict_dataset(_GtDetector(ann), gt, images)  # type: ignore[arg-type]
    assert ids == [1, 2, 3, 4] and len(results) == len(gt.anns)
    m = coco_evaluate(gt, results)
    assert m["segm"]["AP"] == pytest.approx(1.0) and m["bbox"]["AP"] == pytest.approx(1.0)


def test_resolve_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_dataset(tmp_path / "nope", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="instances_val.json"):
        resolve_dataset(tmp_path / "empty", None)


@pytest.mark.slow
def test_cli_eval_tiny_model_and_predictions_roundtrip(
    tmp_path: Path, tiny_ckpt: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dataset(tmp_path / "d", n=3)
    out, preds = tmp_path / "m.json", tmp_path / "p.json"
    args = ["eval", "--dataset", str(root), "--checkpoint", str(tiny_ckpt), "--device", "cpu"]
    assert main([*args, "--out", str(out), "--save-predictions", str(preds), "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[1].startswith("bbox") and "segm" in table
    rec = json.loads(out.read_text())
    assert rec["num_images"] == 3 and rec["num_detections"] == len(json.loads(preds.read_text()))
    assert rec["num_detections"] > 0
    assert set(rec["metrics"]) == {"bbox", "segm"}
    assert {"AP", "AP50", "AP75", "AR100", "per_class"} <= set(rec["metrics"]["segm"])
    # the saved predictions evaluated without a model give the same numbers
    out2 = tmp_path / "m2.json"
    assert (
        main(["eval", "--dataset", str(root), "--predictions", str(preds), "--out", str(out2)]) == 0
    )
    assert json.loads(out2.read_text())["metrics"] == rec["metrics"]


def test_cli_eval_ground_truth_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _dataset(tmp_path / "d")
    ann = root / "annotations" / "instances_val.json"
    preds = tmp_path / "gt_preds.json"
    preds.write_text(json.dumps(read_results(ann)))  # dataset-style file -> results, score 1
    out = tmp_path / "m.json"
    cmd = ["eval", "--dataset", str(ann), "--images", str(root / "val")]
    assert main([*cmd, "--predictions", str(preds), "--out", str(out)]) == 0
    assert json.loads(out.read_text())["metrics"]["segm"]["AP"] == pytest.approx(1.0)
    assert main(["eval", "--dataset", str(tmp_path / "missing.json")]) == 2
    assert "--dataset" in capsys.readouterr().err
