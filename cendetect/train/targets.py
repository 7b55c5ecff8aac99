"""Training targets of Mask R-CNN, as mmdetection 2.28 defines them.

* :func:`assign_max_iou` is ``MaxIoUAssigner`` (no ignore regions),
* :func:`sample_random` is ``RandomSampler`` (``neg_pos_ub=-1``),
* :func:`encode_deltas` is ``DeltaXYWHBBoxCoder.encode`` (``bbox2delta``),
* :func:`mask_targets` is ``mask_target`` with ``BitmapMasks.crop_and_resize`` (RoIAlign of the
  mask bitmap, ``aligned=True``, adaptive sampling, then ``>= 0.5``).

Boxes are ``x1, y1, x2, y2`` in network-input pixels; widths are ``x2 - x1`` (no +1).
"""

from __future__ import annotations

import torch
from torch import Tensor

import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.*)

#: assigned index meaning "ignored" (neither positive nor negative)
IGNORE = -1
#: assigned index meaning "negative" (background); positives are ``gt index + 1``
NEGATIVE = 0


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU matrix ``[N, M]`` of boxes ``a[N, 4]`` and ``b[M, 4]`` (mmdet ``bbox_overlaps``, eps
    1e-6 in the union)."""
    area_a = (a[:, 2] - a[:, 0]).clamp(min=0) * (a[:, 3] - a[:, 1]).clamp(min=0)
    area_b = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)
    return inter / union


def assign_max_iou(
    boxes: Tensor,
    gt_boxes: Tensor,
    pos_iou_thr: float,
    neg_iou_thr: float,
    min_pos_iou: float,
    match_low_quality: bool = True,
    valid: Tensor | None = None,
) -> Tensor:
    """mmdet ``MaxIoUAssigner``: for each box, 0 (negative), -1 (ignored) or ``gt index + 1``.

    A box whose best IoU is below ``neg_iou_thr`` is negative, at or above ``pos_iou_thr``
    positive (its best gt). With ``match_low_quality``, each gt whose best IoU is
    ``>= min_pos_iou`` also takes every box that reaches that best IoU (later gts win ties), as
    mmdet's ``gt_max_assign_all=True``. Boxes with ``valid == False`` are ignored.

    Args:
        boxes: ``Tensor[N, 4]`` anchors or proposals.
        gt_boxes: ``Tensor[G, 4]``; G may be 0 (then every valid box is negative).
        valid: optional ``bool[N]``.

    Returns:
        ``int64[N]``.
    """
    n = boxes.shape[0]
    assigned = torch.full((n,), IGNORE, dtype=torch.long, device=boxes.device)
    if gt_boxes.shape[0] == 0:
        assigned.fill_(NEGATIVE)
    else:
        iou = box_iou(boxes, gt_boxes)  # [N, G]
        if valid is not None:  # mmdet drops invalid anchors before assigning
            iou[~valid] = -1.0
        max_iou, argmax = iou.max(dim=1)
        assigned[(max_iou >= 0) & (max_iou < neg_iou_thr)] = NEGATIVE
        pos = max_iou >= pos_iou_thr
        assigned[pos] = argmax[pos] + 1
        if match_low_quality and n > 0:
            gt_max = iou.max(dim=0).values  # [G]
            for g in range(gt_boxes.shape[0]):
                if gt_max[g] >= min_pos_iou:
                    assigned[iou[:, g] == gt_max[g]] = g + 1
    if valid is not None:
        assigned[~valid] = IGNORE
    return assigned


def sample_random(
    assigned: Tensor, num: int, pos_fraction: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """mmdet ``RandomSampler``: at most ``int(num * pos_fraction)`` positives, then negatives
    to fill ``num``, each drawn uniformly without replacement.

    Returns ``(pos_index, neg_index)``, int64 indices into ``assigned``.
    """
    pos = (assigned > 0).nonzero().squeeze(1)
    neg = (assigned == NEGATIVE).nonzero().squeeze(1)
    num_pos = min(int(num * pos_fraction), pos.numel())
    pos = _choose(pos, num_pos, generator)
    neg = _choose(neg, min(num - num_pos, neg.numel()), generator)
    return pos, neg


def _choose(index: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    if index.numel() <= k:
        return index
    perm = torch.randperm(index.numel(), generator=generator)[:k].to(index.device)
    return index[perm]


def encode_deltas(
    boxes: Tensor, gt: Tensor, means: tuple[float, ...], stds: tuple[float, ...]
) -> Tensor:
    """mmdet ``bbox2delta``: ``(dx, dy, dw, dh)`` of ``gt[N, 4]`` relative to ``boxes[N, 4]``,
    normalised by ``means``/``stds``. Inverse of :func:`cendetect.models.box_coder.decode_deltas`
    (before clipping)."""
    boxes = boxes.float()
    gt = gt.float()
    pxy = (boxes[:, :2] + boxes[:, 2:]) * 0.5
    pwh = boxes[:, 2:] - boxes[:, :2]
    gxy = (gt[:, :2] + gt[:, 2:]) * 0.5
    gwh = gt[:, 2:] - gt[:, :2]
    dxy = (gxy - pxy) / pwh
    dwh = torch.log(gwh / pwh)
    deltas = torch.cat([dxy, dwh], dim=1)
    mean = deltas.new_tensor(means).view(1, 4)
    std = deltas.new_tensor(stds).view(1, 4)
    return (deltas - mean) / std


def mask_targets(gt_masks: Tensor, boxes: Tensor, gt_index: Tensor, size: int) -> Tensor:
    """Binary ``[P, size, size]`` float targets: gt mask ``gt_index[p]`` cropped to ``boxes[p]``
    and resized by RoIAlign (``aligned=True``, adaptive sampling), then thresholded at 0.5.

    Args:
        gt_masks: ``uint8/bool [G, H, W]`` instance bitmaps in network-input pixels.
        boxes: ``Tensor[P, 4]`` positive RoIs.
        gt_index: ``int64[P]`` index of each RoI's gt.
    """
    if boxes.shape[0] == 0:
        return boxes.new_zeros((0, size, size))
    masks = gt_masks[:, None].to(device=boxes.device, dtype=torch.float32)
    rois = torch.cat([gt_index.to(boxes.dtype)[:, None], boxes.float()], dim=1)
    out = torch.ops.cendetect.roi_align(masks, rois, [size, size], 1.0, 0, True)
    return (out[:, 0] >= 0.5).float()


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight boxes ``[G, 4]`` (``x1, y1, x2, y2``, pixel edges: a mask covering columns a..b
    has ``x1 = a``, ``x2 = b + 1``) of ``[G, H, W]`` masks; an empty mask gives zeros."""
    g, h, w = masks.shape
    cols = masks.any(dim=1)  # [G, W]
    rows = masks.any(dim=2)  # [G, H]
    xs = torch.arange(w, dtype=torch.float32)
    ys = torch.arange(h, dtype=torch.float32)
    big = float(max(h, w) + 1)
    x1 = torch.where(cols, xs, big).min(dim=1).values
    x2 = torch.where(cols, xs + 1, 0.0).max(dim=1).values
    y1 = torch.where(rows, ys, big).min(dim=1).values
    y2 = torch.where(rows, ys + 1, 0.0).max(dim=1).values
    out = torch.stack([x1, y1, x2, y2], dim=1) if g else torch.zeros((0, 4))
    empty = ~cols.any(dim=1)
    out[empty] = 0.0
    return out
