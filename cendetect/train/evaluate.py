"""COCO box and mask mAP of a model on a dataset split, with pycocotools' ``COCOeval``.

The detections go through the product's own path (:class:`cendetect.Detector`: test-time resize,
model, mask pasting at full resolution, RLE), so the numbers are those a user of the checkpoint
gets. Written here because no ``cendetect.evaluation`` existed when training needed one; it is a
thin wrapper over ``COCOeval`` and can be swapped for that module's function.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import cv2
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn

from cendetect.config import PreprocessConfig
from cendetect.detector import Detector
from cendetect.io.coco import detections_to_coco
from cendetect.train.data import CocoInstances


def _results(
    model: nn.Module,
    dataset: CocoInstances,
    image_ids: list[int],
    preprocess_cfg: PreprocessConfig,
    device: str | torch.device,
) -> list[dict[str, Any]]:
    detector = Detector(model, dataset.classes, preprocess_cfg, device=device)
    label_to_cat = {label: cat for cat, label in dataset.cat_to_label.items()}
    results: list[dict[str, Any]] = []
    for img_id in image_ids:
        info = dataset.coco.imgs[img_id]
        image = cv2.imread(str(dataset.image_dir / info["file_name"]), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{dataset.image_dir / info['file_name']}: cannot read")
        det = detector.predict([image])[0]
        for r in detections_to_coco(det, img_id):
            r["category_id"] = label_to_cat[r["category_id"] - 1]
            results.append(r)
    return results


def evaluate_coco(
    model: nn.Module,
    dataset: CocoInstances,
    preprocess_cfg: PreprocessConfig,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """``bbox_mAP``, ``bbox_mAP_50``, ``segm_mAP``, ``segm_mAP_50`` (COCO AP@[.5:.95] / AP@.5,
    0-1) over the first ``max_images`` images of ``dataset`` (all if None).

    The model is left in eval mode (which changes nothing for our models: frozen BatchNorm,
    no dropout).
    """
    ids = dataset.image_ids[:max_images] if max_images else list(dataset.image_ids)
    results = _results(model, dataset, ids, preprocess_cfg, device)
    out = {"images": float(len(ids)), "detections": float(len(results))}
    for iou_type in ("bbox", "segm"):
        if not results:
            out[f"{iou_type}_mAP"] = out[f"{iou_type}_mAP_50"] = 0.0
            continue
        with contextlib.redirect_stdout(io.StringIO()):
            dt: COCO = dataset.coco.loadRes(results)
            ev = COCOeval(dataset.coco, dt, iou_type)
            ev.params.imgIds = ids
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # COCOeval reports -1 where a category has no gt in the images: count it as 0
        out[f"{iou_type}_mAP"] = max(float(ev.stats[0]), 0.0)
        out[f"{iou_type}_mAP_50"] = max(float(ev.stats[1]), 0.0)
    return out
