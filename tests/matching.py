"""Matching our detections to a reference (mmdetection's) for parity tests.

The rule (issue 2): every reference detection is matched by one of ours with the same label,
box IoU >= 0.99 and |score difference| <= 1e-3, and mask IoU >= 0.98 for each match; nothing is
left unmatched on either side, except detections at the 100-detection cut whose reference scores
are within 1e-4 of the cut (those can swap places on float noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pycocotools import mask as mask_utils


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of ``[N, 4]`` and ``[M, 4]`` x1y1x2y2 boxes (continuous coordinates)."""
    a = a.astype(np.float64)[:, None]
    b = b.astype(np.float64)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-12)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(inter) / float(union)


@dataclass
class MatchReport:
    matched: int = 0
    problems: list[str] = field(default_factory=list)
    min_box_iou: float = 1.0
    min_mask_iou: float = 1.0
    max_score_diff: float = 0.0


def match_to_reference(
    ours_boxes: np.ndarray,
    ours_scores: np.ndarray,
    ours_labels: np.ndarray,
    ours_masks: np.ndarray | None,
    reference: list[dict],
    box_iou_thr: float = 0.99,
    score_tol: float = 1e-3,
    mask_iou_thr: float = 0.98,
    cut: int = 100,
    cut_tol: float = 1e-4,
) -> MatchReport:
    """Greedy matching in reference-score order; returns what matched and what did not."""
    rep = MatchReport()
    n_ours = len(ours_scores)
    used = np.zeros(n_ours, dtype=bool)
    ref_boxes = np.array([d["box"] for d in reference], dtype=np.float64).reshape(-1, 4)
    ious = box_iou(ref_boxes, ours_boxes) if len(reference) and n_ours else None
    unmatched_ref: list[int] = []
    for r, det in enumerate(reference):
        best, best_iou = -1, -1.0
        for j in range(n_ours):
            if used[j] or int(ours_labels[j]) != det["label"]:
                continue
            if abs(float(ours_scores[j]) - det["score"]) > score_tol:
                continue
            if ious[r, j] > best_iou:
                best, best_iou = j, float(ious[r, j])
        if best < 0 or best_iou < box_iou_thr:
            unmatched_ref.append(r)
            continue
        used[best] = True
        rep.matched += 1
        rep.min_box_iou = min(rep.min_box_iou, best_iou)
        rep.max_score_diff = max(rep.max_score_diff, abs(float(ours_scores[best]) - det["score"]))
        if ours_masks is not None:
            ref_mask = mask_utils.decode(det["mask_rle"]).astype(bool)
            miou = mask_iou(ours_masks[best], ref_mask)
            rep.min_mask_iou = min(rep.min_mask_iou, miou)
            if miou < mask_iou_thr:
                rep.problems.append(
                    f"reference #{r} (score {det['score']:.5f}): mask IoU {miou:.4f}"
                )
    cut_score = reference[-1]["score"] if len(reference) >= cut else -1.0
    for r in unmatched_ref:
        at_cut = len(reference) >= cut and reference[r]["score"] <= cut_score + cut_tol
        if not at_cut:
            rep.problems.append(f"reference #{r} {reference[r]} has no match")
    for j in np.flatnonzero(~used):
        at_cut = n_ours >= cut and float(ours_scores[j]) <= cut_score + cut_tol
        if not at_cut:
            rep.problems.append(
                f"ours #{j} label {int(ours_labels[j])} score {float(ours_scores[j]):.5f} "
                f"box {ours_boxes[j].tolist()} has no reference match"
            )
    return rep
