"""Test-time box conventions of detectron2 and maskrcnn-benchmark (the "Detectron family").

mmdetection 2.x reproduces most of Mask R-CNN's test-time arithmetic the same way these
codebases do, but not all of it. This module holds the pieces that differ, so that checkpoints
imported by :mod:`cendetect.importers` run with their own conventions:

* anchors: detectron2 ``DefaultAnchorGenerator.generate_cell_anchors`` (Python floats, then
  float32) and Detectron's legacy ``generate_anchors`` (integer-rounded, ``+1`` sizes) that
  maskrcnn-benchmark uses (``modeling/rpn/anchor_generator.py``);
* box decoding: ``Box2BoxTransform.apply_deltas`` (detectron2 ``modeling/box_regression.py``)
  and maskrcnn-benchmark's ``BoxCoder.decode`` (``modeling/box_coder.py``, ``TO_REMOVE = 1``),
  which divide the deltas by weights and clamp ``dw``/``dh`` from above only;
* FPN level mapping with ``+1`` box areas (maskrcnn-benchmark ``poolers.LevelMapper``).

Coordinates are ``x1, y1, x2, y2`` in network-input pixels. With ``offset = 1`` (legacy) a box
covers the pixels ``x1..x2`` inclusive, so its width is ``x2 - x1 + 1``; with ``offset = 0`` the
width is ``x2 - x1``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

#: detectron2 ``_DEFAULT_SCALE_CLAMP`` / maskrcnn-benchmark ``bbox_xform_clip``
SCALE_CLAMP = math.log(1000.0 / 16)


def detectron2_cell_anchors(size: float, ratios: list[float]) -> Tensor:
    """detectron2 anchors of one level, one size: ``Tensor[len(ratios), 4]`` float32.

    For each ratio ``a`` (h / w): ``w = sqrt(size**2 / a)``, ``h = a * w``, the anchor is
    ``(-w/2, -h/2, w/2, h/2)``, computed in Python floats and rounded once to float32, as
    ``DefaultAnchorGenerator.generate_cell_anchors`` does. Equal to mmdet's ``AnchorGenerator``
    with ``center_offset=0`` up to float32 rounding.
    """
    rows = []
    area = float(size) ** 2.0
    for a in ratios:
        w = math.sqrt(area / a)
        h = a * w
        rows.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(rows, dtype=torch.float32)


def legacy_cell_anchors(stride: int, size: float, ratios: list[float]) -> Tensor:
    """Detectron / maskrcnn-benchmark ``generate_anchors(stride, (size,), ratios)``.

    The reference window is ``(0, 0, stride - 1, stride - 1)``; for each ratio its area is kept
    with ``ws = round(sqrt(area / ratio))``, ``hs = round(ws * ratio)`` (numpy's half-to-even
    rounding), then both are scaled by ``size / stride`` and the box is re-centred on
    ``(stride - 1) / 2`` with inclusive corners. Returns ``Tensor[len(ratios), 4]`` float32
    (computed in float64, as numpy does there).
    """
    base = float(stride)
    ctr = 0.5 * (base - 1.0)
    r = np.asarray(ratios, dtype=np.float64)
    ws = np.round(np.sqrt(base * base / r))
    hs = np.round(ws * r)
    scale = float(size) / base
    ws, hs = ws * scale, hs * scale
    anchors = np.stack(
        [ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1), ctr + 0.5 * (ws - 1), ctr + 0.5 * (hs - 1)],
        axis=1,
    )
    return torch.from_numpy(anchors).float()


def decode_detectron(
    rois: Tensor,
    deltas: Tensor,
    weights: list[float],
    offset: float,
    scale_clamp: float,
    max_h: Tensor,
    max_w: Tensor,
) -> Tensor:
    """Decode ``(dx, dy, dw, dh)`` deltas as detectron2 (``offset=0``) or maskrcnn-benchmark
    (``offset=1``) do, then clip to the image as their ``clip``/``clip_to_image`` do.

    Per box: ``w = x2 - x1 + offset``, ``cx = x1 + 0.5 * w``; deltas are divided by ``weights``
    and ``dw, dh`` clamped to at most ``scale_clamp`` (no lower clamp, unlike mmdet);
    ``px = dx * w + cx``, ``pw = exp(dw) * w``; output ``x1 = px - 0.5 * pw``,
    ``x2 = px + 0.5 * pw - offset``; clipped to ``[0, W - offset]`` and ``[0, H - offset]``.

    Args:
        rois: ``Tensor[N, 4]`` reference boxes (anchors or proposals).
        deltas: ``Tensor[N, 4 * C]`` deltas for C classes.
        weights: ``(wx, wy, ww, wh)``, e.g. ``(10, 10, 5, 5)`` for the box head.
        offset: 0.0 (detectron2) or 1.0 (maskrcnn-benchmark ``TO_REMOVE``).
        scale_clamp: upper clamp of ``dw``/``dh`` after division by the weights.
        max_h, max_w: 0-dim tensors, the resized image size (before padding).

    Returns ``Tensor[N, 4 * C]`` boxes ``x1, y1, x2, y2``.
    """
    n = deltas.shape[0]
    r = rois.to(deltas.dtype)
    widths = r[:, 2] - r[:, 0] + offset
    heights = r[:, 3] - r[:, 1] + offset
    ctr_x = r[:, 0] + 0.5 * widths
    ctr_y = r[:, 1] + 0.5 * heights
    dx = deltas[:, 0::4] / weights[0]
    dy = deltas[:, 1::4] / weights[1]
    dw = torch.clamp(deltas[:, 2::4] / weights[2], max=scale_clamp)
    dh = torch.clamp(deltas[:, 3::4] / weights[3], max=scale_clamp)
    px = dx * widths[:, None] + ctr_x[:, None]
    py = dy * heights[:, None] + ctr_y[:, None]
    pw = torch.exp(dw) * widths[:, None]
    ph = torch.exp(dh) * heights[:, None]
    hi_x = max_w.to(deltas.dtype) - offset
    hi_y = max_h.to(deltas.dtype) - offset
    x1 = torch.minimum((px - 0.5 * pw).clamp(min=0.0), hi_x)
    y1 = torch.minimum((py - 0.5 * ph).clamp(min=0.0), hi_y)
    x2 = torch.minimum((px + 0.5 * pw - offset).clamp(min=0.0), hi_x)
    y2 = torch.minimum((py + 0.5 * ph - offset).clamp(min=0.0), hi_y)
    # an explicit width: reshape(0, -1) is refused by torch when there are no rois
    return torch.stack([x1, y1, x2, y2], dim=-1).reshape(n, deltas.shape[1])


def nms_boxes(boxes: Tensor, offset: float) -> Tensor:
    """Boxes to hand to an offset-0 NMS so that it computes an offset-``offset`` IoU.

    Legacy NMS (maskrcnn-benchmark ``nms_cpu``, mmcv ``nms(offset=1)``) uses
    ``area = (x2 - x1 + 1) * (y2 - y1 + 1)`` and ``inter_w = max(0, min(x2) - max(x1) + 1)``:
    exactly the offset-0 formulas on boxes whose ``x2, y2`` are moved by ``+offset``.
    """
    if offset == 0.0:
        return boxes
    return torch.cat([boxes[:, :2], boxes[:, 2:] + offset], dim=1)


def legacy_roi_levels(
    rois: Tensor, num_levels: int, finest_scale: int, offset: float, eps: float
) -> Tensor:
    """FPN level of each roi as maskrcnn-benchmark's ``LevelMapper`` computes it.

    ``floor(4 + log2(sqrt((w + offset) * (h + offset)) / 224 + eps))`` clamped to levels 2..5,
    minus 2; written with mmdet's ``finest_scale`` (56 = 224 / 2**2) so that any number of
    levels works: ``floor(2 + log2(s / (4 * finest_scale) + eps))`` clamped to
    ``[0, num_levels - 1]``. Returns ``Tensor[K]`` int64 for ``rois[K, 5]``.
    """
    w = rois[:, 3] - rois[:, 1] + offset
    h = rois[:, 4] - rois[:, 2] + offset
    s = torch.sqrt(w * h)
    lvl = torch.floor(2.0 + torch.log2(s / (4.0 * finest_scale) + eps))
    return lvl.clamp(0, num_levels - 1).to(torch.int64)


def legacy_multi_level_roi_align(
    feats: list[Tensor],
    rois: Tensor,
    output_size: int,
    scales: list[float],
    sampling_ratio: int,
    aligned: bool,
    finest_scale: int,
    offset: float,
    eps: float,
) -> Tensor:
    """Multi-level RoIAlign with :func:`legacy_roi_levels` as the level mapping.

    ``feats`` are ``[B, C, H_l, W_l]``, ``rois`` ``[K, 5]`` (``batch_index, x1, y1, x2, y2``);
    returns ``[K, C, S, S]``. Each level is pooled with ``torch.ops.cendetect.roi_align``.
    """
    out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], output_size, output_size))
    if rois.shape[0] == 0:
        return out
    levels = legacy_roi_levels(rois, len(feats), finest_scale, offset, eps)
    for lvl in range(len(feats)):
        inds = (levels == lvl).nonzero().squeeze(1)
        if inds.numel() > 0:
            out[inds] = torch.ops.cendetect.roi_align(
                feats[lvl],
                rois[inds],
                [output_size, output_size],
                scales[lvl],
                sampling_ratio,
                aligned,
            )
    return out


def detectron_detections(
    rois: Tensor,
    cls_score: Tensor,
    bbox_pred: Tensor,
    num_per_image: list[int],
    image_sizes: Tensor,
    num_classes: int,
    weights: list[float],
    offset: float,
    scale_clamp: float,
    score_thr: float,
    iou_threshold: float,
    max_per_img: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Final detections as detectron2 ``fast_rcnn_inference_single_image`` (``offset=0``) and
    maskrcnn-benchmark ``PostProcessor`` (``offset=1``) compute them, per image.

    Softmax over ``num_classes + 1`` logits (background last: importers move
    maskrcnn-benchmark's background row there), class-specific decoding with
    :func:`decode_detectron` and clipping in network-input pixels, ``score > score_thr``,
    per-class NMS **in network-input pixels** with ``offset``-sized boxes, then the
    ``max_per_img`` best (maskrcnn-benchmark keeps every detection tied with the
    ``max_per_img``-th score; we keep exactly ``max_per_img``).

    Args:
        rois: ``[K, 5]`` (``batch_index, x1, y1, x2, y2``), image 0 first.
        cls_score: ``[K, num_classes + 1]`` float32 logits; bbox_pred ``[K, 4 * num_classes]``.
        num_per_image: rows of each image; image_sizes ``[B, 2]`` (h, w) before padding.

    Returns ``boxes [N, 4]`` (network-input pixels), ``scores [N]``, ``labels [N]`` int64 and
    ``batch_ids [N]`` int64, each image's detections score-descending.
    """
    out_boxes: list[Tensor] = []
    out_scores: list[Tensor] = []
    out_labels: list[Tensor] = []
    out_ids: list[Tensor] = []
    start = 0
    for i, n in enumerate(num_per_image):
        scores = torch.softmax(cls_score[start : start + n], dim=-1)[:, :num_classes]
        boxes = decode_detectron(
            rois[start : start + n, 1:],
            bbox_pred[start : start + n],
            weights,
            offset,
            scale_clamp,
            image_sizes[i][0],
            image_sizes[i][1],
        ).reshape(-1, 4)
        start += n
        labels = torch.arange(num_classes, device=scores.device)
        labels = labels.view(1, -1).expand(scores.shape[0], num_classes).reshape(-1)
        scores = scores.reshape(-1)
        valid = (scores > score_thr).nonzero().squeeze(1)
        boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
        keep = torch.ops.cendetect.batched_nms(
            nms_boxes(boxes, offset), scores, labels, iou_threshold
        )
        keep = keep[: min(keep.shape[0], max_per_img)]
        out_boxes.append(boxes[keep])
        out_scores.append(scores[keep])
        out_labels.append(labels[keep])
        out_ids.append(torch.full_like(labels[keep], i))
    return (
        torch.cat(out_boxes),
        torch.cat(out_scores),
        torch.cat(out_labels),
        torch.cat(out_ids),
    )
