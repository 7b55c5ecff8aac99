"""Matching our detections to a reference (mmdetection's) for parity tests.

The rule: every reference detection is matched by one of ours with the same label, box IoU
>= 0.99 and |score difference| <= 1e-3, and each match's full-resolution masks differ by at most
``tests.tolerances.mask_pixels_allowed`` pixels (2 % of their union, but never fewer than 4
pixels: a pixel at the 0.5 threshold may flip on float noise, and on a 30-pixel mask one pixel
is 3 % of the IoU); nothing is left unmatched on either side, except detections at the
100-detection cut whose reference scores are within 1e-4 of the cut (a tie, reason 3 of
``tests/tolerances.py``: those can swap places on float noise).
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from tests.tolerances import BOX_IOU_MIN, SCORE_TOL, masks_agree

#: how far real mmdetection 2.28.2 itself lands from its own fixtures on other CPUs' code paths
#: (``tests/data/mmdet/rerun_mmdet.py --spread``; docs/testing.md)
OWN_SPREAD = Path(__file__).parent / "data" / "mmdet" / "own_spread.json"


@dataclass(frozen=True)
class Allowance:
    """What the parity rule lets pass beyond its own tolerances for one (fixture, image):
    as much as real mmdetection itself differs from that fixture on this code path.

    Attributes:
        unmatched: reference detections that may stay unmatched away from the 100-detection
            cut (a saturated score or NMS tie that fell otherwise).
        unmatched_ours: the same for our detections (the ones that took their places).
        mask_pixels: pixels by which a matched mask may differ, if more than the usual rule.
    """

    unmatched: int = 0
    unmatched_ours: int = 0
    mask_pixels: int = 0


def code_path_level() -> str:
    """The ISA level (``tests/isa.py``) whose float32 kernels this process runs, as far as the
    fixtures can tell them apart: ``'default'`` (ATen's scalar path, or oneDNN/oneMKL held to
    SSE), ``'avx2'`` (AVX2: AMD EPYC to Zen 3, Intel before AVX-512) or ``'native'``
    (AVX-512, where oneDNN's and oneMKL's float32 kernels are the same with or without BF16
    and AMX: avx512, avx512_bf16 and an AMX Xeon's own path all land here)."""
    import torch

    cap = torch.backends.cpu.get_cpu_capability()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    mkl = os.environ.get("MKL_ENABLE_INSTRUCTIONS", "").upper()
    if cap == "DEFAULT" or onednn.startswith("SSE") or mkl.startswith("SSE"):
        return "default"
    if cap == "AVX2" or onednn in ("AVX", "AVX2") or mkl in ("AVX", "AVX2"):
        return "avx2"
    return "native"


@functools.cache
def _spread_levels() -> dict:
    return json.loads(OWN_SPREAD.read_text())["levels"] if OWN_SPREAD.exists() else {}


def own_spread(fixture: str, image: str) -> Allowance:
    """mmdetection's own spread on this process's code path for ``fixture`` (e.g.
    ``'mmdet/cascade_mask_rcnn_r50_fpn_dconv'``) and ``image``; nothing allowed where it was
    not measured (mmdetection 3.3's fixtures, a level not in the file)."""
    flavour, arch = fixture.split("/", 1)
    if flavour != "mmdet":
        return Allowance()
    row = _spread_levels().get(code_path_level(), {}).get(f"{arch}/{image}")
    if row is None:
        return Allowance()
    return Allowance(
        unmatched=int(row["unmatched"]),
        unmatched_ours=int(row["unmatched_ours"]),
        mask_pixels=int(row["max_mask_diff"]),
    )


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
    #: differences let pass by an :class:`Allowance` (mmdetection's own spread)
    forgiven: list[str] = field(default_factory=list)
    min_box_iou: float = 1.0
    min_mask_iou: float = 1.0
    max_score_diff: float = 0.0
    #: most pixels by which a matched pair of masks differed
    max_mask_diff: int = 0

    def __str__(self) -> str:
        forgiven = f", {len(self.forgiven)} forgiven (mmdetection's own spread)"
        return (
            f"{self.matched} matched, box IoU >= {self.min_box_iou:.5f}, score diff <= "
            f"{self.max_score_diff:.2g}, mask IoU >= {self.min_mask_iou:.4f}, masks differ by "
            f"<= {self.max_mask_diff} px, {len(self.problems)} problems"
            + (forgiven if self.forgiven else "")
        )


def match_to_reference(
    ours_boxes: np.ndarray,
    ours_scores: np.ndarray,
    ours_labels: np.ndarray,
    ours_masks: np.ndarray | None,
    reference: list[dict],
    box_iou_thr: float = BOX_IOU_MIN,
    score_tol: float = SCORE_TOL,
    cut: int = 100,
    cut_tol: float = 1e-4,
    allowance: Allowance = Allowance(),
    box_abs_tol: float = 0.0,
    mask_exempt: Callable[[int, int], str | None] | None = None,
) -> MatchReport:
    """Greedy matching in reference-score order; returns what matched and what did not.

    ``allowance`` (:func:`own_spread`) forgives as many unmatched detections on each side, and
    masks differing by as many pixels, as real mmdetection itself shows against the fixture on
    this code path; what it forgave is listed in ``forgiven``. ``box_abs_tol`` (px) also
    accepts a pair whose coordinates all agree within it, whatever their IoU: for boxes under a
    pixel wide, where a 1e-3 px difference is a box IoU of 0.98. ``mask_exempt(r, j)`` may
    return a reason why reference ``r`` and ours ``j`` cannot have the same mask; a mask
    difference is then listed in ``forgiven`` with that reason instead of ``problems``."""
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
            iou = float(ious[r, j])
            if box_abs_tol > 0 and np.abs(ref_boxes[r] - ours_boxes[j]).max() <= box_abs_tol:
                iou = max(iou, box_iou_thr)  # as close as the rule asks, in pixels
            if iou > best_iou:
                best, best_iou = j, iou
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
            ok, diff, union = masks_agree(ours_masks[best], ref_mask)
            rep.min_mask_iou = min(rep.min_mask_iou, miou)
            rep.max_mask_diff = max(rep.max_mask_diff, diff)
            why = mask_exempt(r, best) if (not ok and mask_exempt is not None) else None
            if not ok and diff <= allowance.mask_pixels:
                rep.forgiven.append(f"reference #{r}: masks differ in {diff} of {union} pixels")
            elif why:
                rep.forgiven.append(f"reference #{r}: masks differ in {diff} px: {why}")
            elif not ok:
                rep.problems.append(
                    f"reference #{r} (score {det['score']:.5f}): masks differ in {diff} of "
                    f"{union} pixels (IoU {miou:.4f})"
                )
    cut_score = reference[-1]["score"] if len(reference) >= cut else -1.0
    budget = {"ref": allowance.unmatched, "ours": allowance.unmatched_ours}

    def forgive(side: str, what: str) -> bool:
        if budget[side] > 0:
            budget[side] -= 1
            rep.forgiven.append(what)
            return True
        return False

    for r in unmatched_ref:
        at_cut = len(reference) >= cut and reference[r]["score"] <= cut_score + cut_tol
        if not at_cut and not forgive("ref", f"reference #{r} unmatched"):
            rep.problems.append(f"reference #{r} {reference[r]} has no match")
    for j in np.flatnonzero(~used):
        at_cut = n_ours >= cut and float(ours_scores[j]) <= cut_score + cut_tol
        if not at_cut and not forgive("ours", f"ours #{j} unmatched"):
            rep.problems.append(
                f"ours #{j} label {int(ours_labels[j])} score {float(ours_scores[j]):.5f} "
                f"box {ours_boxes[j].tolist()} has no reference match"
            )
    return rep
