"""IoU matching of two detection results of the same image (engine vs eager)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
