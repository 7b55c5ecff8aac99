"""IoU matching of two detection results of the same image (engine vs eager)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cendetect import Detector
from cendetect.engine.postprocess import Detections
from tests.matching import box_iou, mask_iou


@dataclass
class PairReport:
    """Detections of ``ref`` matched in ``out``: same label, box IoU >= the threshold.

    Attributes:
        matched: number of reference detections matched.
        total: number of reference detections.
        mask_ious: mask IoU of every matched pair.
        max_score_diff: largest score difference over the matched pairs.
    """

    matched: int
    total: int
    mask_ious: list[float]
    max_score_diff: float

    @property
    def mean_mask_iou(self) -> float:
        return float(np.mean(self.mask_ious)) if self.mask_ious else 1.0


def match_detections(ref: Detections, out: Detections, box_iou_thr: float) -> PairReport:
    """Greedy in reference-score order: each reference takes the unused same-label detection
    of ``out`` with the highest box IoU, if that IoU reaches ``box_iou_thr``."""
    used = np.zeros(len(out), dtype=bool)
    ious = box_iou(ref.boxes, out.boxes) if len(ref) and len(out) else np.zeros((len(ref), 0))
    mask_ious: list[float] = []
    score_diff = 0.0
    for i in range(len(ref)):
        cand = np.flatnonzero(~used & (out.labels == ref.labels[i]))
        if cand.size == 0:
            continue
        j = int(cand[np.argmax(ious[i, cand])])
        if ious[i, j] < box_iou_thr:
            continue
        used[j] = True
        mask_ious.append(mask_iou(ref.masks[i], out.masks[j]))
        score_diff = max(score_diff, abs(float(ref.scores[i]) - float(out.scores[j])))
    return PairReport(len(mask_ious), len(ref), mask_ious, score_diff)


def low_precision_agreement(
    det: Detector, low: Callable[..., tuple], paths: Sequence[str | Path], confidence: float = 0.3
) -> list[float]:
    """Mask IoU of every reference detection of ``det`` (fp32, score > ``confidence``) with
    its match among the detections of ``low`` (the same model in bf16/fp16; box IoU >= 0.5);
    0 for a reference left unmatched. Images are read from ``paths`` (BGR, full resolution)."""
    import cv2
    import torch

    from cendetect.engine import preprocess, to_detections
    from cendetect.pipeline import select

    ious: list[float] = []
    for path in paths:
        batch = preprocess([cv2.imread(str(path))], det.preprocess_cfg)
        inputs = (batch.images, batch.image_sizes, batch.scale_factors)
        names, threshold = det.class_names, det.mask_threshold
        with torch.inference_mode():
            (ref,) = to_detections(det.model(*inputs), batch, names, threshold)
            (out,) = to_detections(low(*inputs), batch, names, threshold)
        rep = match_detections(select(ref, confidence=confidence), out, box_iou_thr=0.5)
        ious += rep.mask_ious + [0.0] * (rep.total - rep.matched)
    return ious
