"""COCO box and mask mAP of a model being trained, on (the first images of) a dataset split.

A thin adapter from the training loop's objects to :mod:`cendetect.evaluation` (the code behind
``cendetect eval``): the detections go through the product's own path (:class:`Detector`:
test-time resize, model, mask pasting at full resolution, RLE) and are scored by pycocotools'
``COCOeval``, so the numbers are those a user of the checkpoint gets.
"""

from __future__ import annotations

import torch
from torch import nn

from cendetect.config import PreprocessConfig
from cendetect.detector import Detector
from cendetect.evaluation import coco_evaluate, predict_dataset
from cendetect.train.data import CocoInstances


def evaluate_coco(
    model: nn.Module,
    dataset: CocoInstances,
    preprocess_cfg: PreprocessConfig,
    max_images: int | None = None,
    device: str | torch.device = "cpu",
) -> dict[str, float]:
    """``images``, ``detections``, ``bbox_mAP``, ``bbox_mAP_50``, ``segm_mAP``, ``segm_mAP_50``
    (COCO AP@[.5:.95] / AP@.5, 0-1; undefined counts as 0) over the first ``max_images`` images
    of ``dataset`` in id order (all if None).

    The model is left in eval mode (which changes nothing for our models: frozen BatchNorm,
    no dropout).
    """
    detector = Detector(model, dataset.classes, preprocess_cfg, device=device)
    results, ids = predict_dataset(
        detector, dataset.coco, dataset.image_dir, max_images=max_images or None
    )
    metrics = coco_evaluate(dataset.coco, results, image_ids=ids)
    out = {"images": float(len(ids)), "detections": float(len(results))}
    for iou_type in ("bbox", "segm"):
        # COCOeval reports -1 where a category has no gt in the images: count it as 0
        out[f"{iou_type}_mAP"] = max(metrics[iou_type]["AP"], 0.0)
        out[f"{iou_type}_mAP_50"] = max(metrics[iou_type]["AP50"], 0.0)
    return out
