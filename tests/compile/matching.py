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


def engine_parity(
    eager: Detector,
    runner: Callable[..., tuple],
    images: Sequence[Path],
    img_scale: tuple[int, int],
    min_fraction: float = 1.0,
    min_mask_iou: float = 0.98,
) -> list[str]:
    """Run ``eager``'s model and a compiled engine's ``runner`` (called with the pre-processed
    batch) on ``images`` at ``img_scale`` and match their detections: the same number of
    detections, ``min_fraction`` of the eager ones matched at box IoU 0.99, scores within 1e-3,
    every matched mask at IoU >= ``min_mask_iou`` and their mean >= 0.99 per image. The images
    must give at least min(3, len(images)) network input sizes (the engines take dynamic H/W).
    Returns one line per image (matches, mask IoU min and mean) for the test's output."""
    import dataclasses

    import cv2
    import torch

    from cendetect.engine import preprocess, to_detections

    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=img_scale)
    sizes, notes = set(), []
    for path in images:
        batch = preprocess([cv2.imread(str(path))], cfg)
        sizes.add(tuple(batch.images.shape[-2:]))
        with torch.inference_mode():
            ref_raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
            out_raw = runner(batch)
        assert ref_raw[0].shape[0] > 0, f"{path.name}: the test needs detections"
        names = eager.class_names
        (ref,) = to_detections(ref_raw, batch, names, eager.mask_threshold)
        (out,) = to_detections(tuple(out_raw), batch, names, eager.mask_threshold)
        rep = match_detections(ref, out, box_iou_thr=0.99)
        assert len(out) == len(ref), f"{path.name}: {len(out)} detections, eager {len(ref)}"
        assert rep.matched >= min_fraction * rep.total, f"{path.name}: {rep.matched}/{rep.total}"
        assert rep.max_score_diff <= 1e-3, path.name
        low = min(rep.mask_ious)
        assert low >= min_mask_iou, f"{path.name}: min mask IoU {low:.4f}"
        assert rep.mean_mask_iou >= 0.99, f"{path.name}: mean mask IoU {rep.mean_mask_iou:.4f}"
        notes.append(f"{path.name}: {rep.matched}/{rep.total}, mask IoU min {low:.4f} "
                     f"mean {rep.mean_mask_iou:.4f}")  # fmt: skip
    assert len(sizes) >= min(3, len(images)), f"the images should give several sizes: {sizes}"
    return notes
