"""IoU matching of two detection results of the same image (engine vs eager)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cendetect import Detector
from cendetect.engine.postprocess import Detections
from tests.matching import box_iou, mask_iou
from tests.tolerances import SCORE_TOL, masks_agree


@dataclass
class PairReport:
    """Detections of ``ref`` matched in ``out``: same label, box IoU >= the threshold.

    Attributes:
        matched: number of reference detections matched.
        total: number of reference detections.
        mask_ious: mask IoU of every matched pair.
        max_score_diff: largest score difference over the matched pairs.
        mask_diffs: ``(differing pixels, union pixels, agree)`` of every matched pair, agree
            as :func:`tests.tolerances.masks_agree` judges it.
    """

    matched: int
    total: int
    mask_ious: list[float]
    max_score_diff: float
    mask_diffs: list[tuple[int, int, bool]]
    #: indices of the reference detections left unmatched
    unmatched: list[int]

    @property
    def mean_mask_iou(self) -> float:
        return float(np.mean(self.mask_ious)) if self.mask_ious else 1.0


def match_detections(ref: Detections, out: Detections, box_iou_thr: float) -> PairReport:
    """Greedy in reference-score order: each reference takes the unused same-label detection
    of ``out`` with the highest box IoU, if that IoU reaches ``box_iou_thr``."""
    used = np.zeros(len(out), dtype=bool)
    ious = box_iou(ref.boxes, out.boxes) if len(ref) and len(out) else np.zeros((len(ref), 0))
    mask_ious: list[float] = []
    mask_diffs: list[tuple[int, int, bool]] = []
    matched_ref: set[int] = set()
    score_diff = 0.0
    for i in range(len(ref)):
        cand = np.flatnonzero(~used & (out.labels == ref.labels[i]))
        if cand.size == 0:
            continue
        j = int(cand[np.argmax(ious[i, cand])])
        if ious[i, j] < box_iou_thr:
            continue
        used[j] = True
        matched_ref.add(i)
        mask_ious.append(mask_iou(ref.masks[i], out.masks[j]))
        ok, diff, union = masks_agree(ref.masks[i], out.masks[j])
        mask_diffs.append((diff, union, ok))
        score_diff = max(score_diff, abs(float(ref.scores[i]) - float(out.scores[j])))
    unmatched = [i for i in range(len(ref)) if i not in matched_ref]
    return PairReport(len(mask_ious), len(ref), mask_ious, score_diff, mask_diffs, unmatched)


#: detections per image of the parity fixtures' configs (mmdetection's ``max_per_img``)
CUT = 100


def _at_cut(score: float, scores: np.ndarray) -> bool:
    """Whether a detection scoring ``score`` sits at the detection cut of ``scores``: the list
    is full and the score is within SCORE_TOL of its last one."""
    return len(scores) >= CUT and score <= float(np.min(scores)) + SCORE_TOL


#: input noise (normalised units, std 1e-4) under which the eager model is re-run to tell a tie
#: from a divergence: ~170x below one step of an 8-bit pixel after normalisation (1/255/std)
TIE_NOISE = 1e-4


def _eager_reaches(eager: Detector, batch, out: Detections, seeds: int = 8) -> bool:  # noqa: ANN001
    """Whether the eager model itself gives the engine's whole answer ``out`` (every detection
    matched at box IoU 0.99, scores within SCORE_TOL) for the same input moved by noise far
    below its quantisation: then a detection the engine placed otherwise fell on the other
    side of a tie upstream (an RPN top-k or NMS near-tie; reason 3 of tests/tolerances.py),
    which another kernel library's summation order tips as the noise does."""
    import torch

    from cendetect.engine import to_detections

    g = torch.Generator().manual_seed(0)
    for _ in range(seeds):
        noisy = batch.images + torch.randn(batch.images.shape, generator=g) * TIE_NOISE
        with torch.inference_mode():
            raw = eager.model(noisy, batch.image_sizes, batch.scale_factors)
        (alt,) = to_detections(raw, batch, eager.class_names, eager.mask_threshold)
        back = match_detections(out, alt, box_iou_thr=0.99)
        if back.matched == len(out) and back.max_score_diff <= SCORE_TOL:
            return True
    return False


def low_precision_agreement(
    det: Detector, low: Callable[..., tuple], paths: Sequence[str | Path], confidence: float = 0.3
) -> list[float]:
    """Mask IoU of every reference detection of ``det`` (fp32, score > ``confidence``) with
    its match among the detections of ``low`` (the same model in bf16/fp16; box IoU >= 0.5);
    0 for a reference left unmatched. Images are read from ``paths`` (BGR, full resolution)."""
    import cv2
    import torch

    from cendetect.engine import preprocess, to_detections
    from cendetect.flow.stream import select

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
    detections, ``min_fraction`` of the eager ones matched at box IoU 0.99 (an eager detection
    may stay unmatched at the detection cut, or where the eager model under noise far below the
    input's quantisation gives the engine's whole answer: a tie), scores within 1e-3,
    every matched mask within the pixels :func:`tests.tolerances.masks_agree` allows (a few
    pixels at the threshold, or 2 % of the union) or at IoU >= ``min_mask_iou``, and their mean
    IoU >= 0.99 per image. The images must give at least min(3, len(images)) network input
    sizes (the engines take dynamic H/W). Returns one line per image (matches, mask IoU min and
    mean, the most differing pixels of a mask) for the test's output."""
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
        # an eager detection may go unmatched only at the detection cut (max_per_img: a
        # near-tie in score there falls either way, reason 3 of tests/tolerances.py), and
        # ``min_fraction`` < 1 allows as many more re-ranked elsewhere
        at_cut = [i for i in rep.unmatched if _at_cut(float(ref.scores[i]), ref.scores)]
        # elsewhere, only where the eager model itself reaches the engine's answer under noise
        # far below the input's quantisation (a tie upstream that fell otherwise)
        away = [i for i in rep.unmatched if i not in at_cut]
        tied = away if away and _eager_reaches(eager, batch, out) else []
        assert rep.matched + len(at_cut) + len(tied) >= min_fraction * rep.total, (
            f"{path.name}: {rep.matched}/{rep.total} matched; unmatched eager detections "
            + ", ".join(
                f"#{i} score {float(ref.scores[i]):.5f}{' (at the cut)' if i in at_cut else ''}"
                for i in rep.unmatched
            )
        )
        assert rep.max_score_diff <= SCORE_TOL, path.name
        low = min(rep.mask_ious)
        off = [
            f"{d} of {u} px (IoU {iou:.4f})"
            for (d, u, ok), iou in zip(rep.mask_diffs, rep.mask_ious, strict=True)
            if not ok and iou < min_mask_iou
        ]
        assert not off, f"{path.name}: masks differ: {', '.join(off)}"
        assert rep.mean_mask_iou >= 0.99, f"{path.name}: mean mask IoU {rep.mean_mask_iou:.4f}"
        worst = max(rep.mask_diffs, key=lambda t: (not t[2], t[0]))
        tie = f", {len(tied)} tied (eager reaches the engine's under noise)" if tied else ""
        notes.append(f"{path.name}: {rep.matched}/{rep.total}{tie}, mask IoU min {low:.4f} "
                     f"mean {rep.mean_mask_iou:.4f}, most differing {worst[0]} of {worst[1]} px"
                     f"{'' if worst[2] else ' (beyond the pixel rule)'}")  # fmt: skip
    assert len(sizes) >= min(3, len(images)), f"the images should give several sizes: {sizes}"
    return notes
