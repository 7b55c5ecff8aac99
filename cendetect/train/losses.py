"""Mask R-CNN training losses (mmdetection 2.28's, for the default ``train_cfg``) computed with
the very modules the test-time :class:`~cendetect.models.mask_rcnn.MaskRCNN` runs.

There is no second model: :func:`mask_rcnn_losses` calls ``model.backbone``, ``model.neck``,
``model.rpn_head.forward_levels`` and the RoI head's box and mask heads, so the parameters
trained are exactly those the checkpoint stores and the detector uses. RoI features are pooled
by the RoI extractors themselves (``cendetect::multi_level_roi_align``, whose CPU backward is the
C++ kernel of csrc/roi_align.cpp).

* RPN: anchors assigned by IoU (positive >= 0.7, negative < 0.3, each gt's best anchors positive
  if their IoU >= 0.3), 256 anchors sampled per image with at most half positive, sigmoid
  cross-entropy on the objectness and L1 on the (means 0, stds 1) deltas of the positives, both
  averaged over the sampled anchors of the batch (mmdet ``avg_factor``).
* Proposals: the RPN's test-time selection (``test_cfg.rpn``) on the detached outputs, with the
  gt boxes added as proposals (mmdet ``add_gt_as_proposals=True``).
* RCNN: proposals assigned at IoU 0.5 (positive >= 0.5, negative < 0.5), 512 sampled per image,
  at most 25 % positive; softmax cross-entropy over ``num_classes + 1`` (background last) averaged
  over the samples, L1 on the gt class's deltas (stds 0.1, 0.1, 0.2, 0.2) summed over positives
  and divided by the number of samples.
* Mask: for positive RoIs, the gt mask cropped to the RoI and resized to 28x28 by RoIAlign and
  binarised; binary cross-entropy on the gt class's logits, averaged over all pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cendetect.models.mask_rcnn import MaskRCNN
from cendetect.models.roi_heads import rois_from_boxes
from cendetect.train.targets import assign_max_iou, encode_deltas, mask_targets, sample_random


@dataclass(frozen=True)
class SamplerConfig:
    """mmdet ``MaxIoUAssigner`` + ``RandomSampler`` settings of one stage."""

    pos_iou_thr: float
    neg_iou_thr: float
    min_pos_iou: float
    num: int
    pos_fraction: float


#: mmdet's Mask R-CNN ``train_cfg.rpn`` / ``train_cfg.rcnn``
RPN_SAMPLER = SamplerConfig(0.7, 0.3, 0.3, 256, 0.5)
RCNN_SAMPLER = SamplerConfig(0.5, 0.5, 0.5, 512, 0.25)


@dataclass
class TrainBatch:
    """A padded batch with its targets.

    Attributes:
        images: ``float32 [B, 3, H, W]`` normalised, padded (H, W multiples of 32).
        image_sizes: ``int64 [B, 2]`` (h, w) of each image inside the padding.
        boxes: per image ``float32 [G_i, 4]`` gt boxes, network-input pixels.
        labels: per image ``int64 [G_i]`` class indices in ``[0, num_classes)``.
        masks: per image ``uint8 [G_i, h_i, w_i]`` instance bitmaps (unpadded image size).
    """

    images: Tensor
    image_sizes: Tensor
    boxes: list[Tensor]
    labels: list[Tensor]
    masks: list[Tensor]

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(
            self.images.to(device, non_blocking=True),
            self.image_sizes.to(device),
            [b.to(device) for b in self.boxes],
            [lb.to(device) for lb in self.labels],
            [m.to(device) for m in self.masks],
        )


def _valid_anchors(
    cls_scores: list[Tensor], strides: list[int], num_anchors: int, h: int, w: int
) -> Tensor:
    """mmdet ``valid_flags``: anchors of cells inside the image's own padded size (h, w rounded
    up to 32), so images padded for the batch do not train on the batch padding."""
    pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
    flags: list[Tensor] = []
    for scores, stride in zip(cls_scores, strides, strict=True):
        fh, fw = scores.shape[-2], scores.shape[-1]
        vh, vw = min(-(-pad_h // stride), fh), min(-(-pad_w // stride), fw)
        v = torch.zeros((fh, fw), dtype=torch.bool, device=scores.device)
        v[:vh, :vw] = True
        flags.append(v.reshape(-1, 1).expand(fh * fw, num_anchors).reshape(-1))
    return torch.cat(flags)


def rpn_losses(
    model: MaskRCNN,
    feats: list[Tensor],
    batch: TrainBatch,
    sampler: SamplerConfig = RPN_SAMPLER,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, Tensor], list[Tensor]]:
    """RPN losses and the (detached) proposals per image ``[K_i, 5]``."""
    head = model.rpn_head
    cls_scores, bbox_preds = head.forward_levels(feats)
    anchors = torch.cat(head.level_anchors(cls_scores))
    bsz = feats[0].shape[0]
    logits = torch.cat([c.permute(0, 2, 3, 1).reshape(bsz, -1) for c in cls_scores], dim=1)
    deltas = torch.cat([d.permute(0, 2, 3, 1).reshape(bsz, -1, 4) for d in bbox_preds], dim=1)
    cls_terms: list[Tensor] = []
    reg_terms: list[Tensor] = []
    num_samples = 0
    for i in range(bsz):
        h, w = int(batch.image_sizes[i, 0]), int(batch.image_sizes[i, 1])
        valid = _valid_anchors(cls_scores, head.strides, head.num_anchors, h, w)
        gt = batch.boxes[i]
        assigned = assign_max_iou(
            anchors,
            gt,
            sampler.pos_iou_thr,
            sampler.neg_iou_thr,
            sampler.min_pos_iou,
            valid=valid,
        )
        pos, neg = sample_random(assigned, sampler.num, sampler.pos_fraction, generator)
        idx = torch.cat([pos, neg])
        target = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)]).float()
        cls_terms.append(
            F.binary_cross_entropy_with_logits(logits[i, idx].float(), target, reduction="sum")
        )
        if pos.numel():
            t = encode_deltas(anchors[pos], gt[assigned[pos] - 1], head.means, head.stds)
            reg_terms.append((deltas[i, pos].float() - t).abs().sum())
        num_samples += idx.numel()
    norm = float(max(num_samples, 1))
    losses = {
        "loss_rpn_cls": torch.stack(cls_terms).sum() / norm,
        "loss_rpn_bbox": (torch.stack(reg_terms).sum() / norm if reg_terms else deltas.sum() * 0.0),
    }
    with torch.no_grad():
        proposals = head.proposals_from_levels(
            [c.detach() for c in cls_scores], [d.detach() for d in bbox_preds], batch.image_sizes
        )
    return losses, proposals


def roi_losses(
    model: MaskRCNN,
    feats: list[Tensor],
    proposals: list[Tensor],
    batch: TrainBatch,
    sampler: SamplerConfig = RCNN_SAMPLER,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """Box classification/regression and mask losses of the RoI head."""
    head = model.roi_head
    num_classes = head.num_classes
    mask_size = 2 * head.mask_roi_extractor.output_size
    boxes_s: list[Tensor] = []
    labels_s: list[Tensor] = []
    targets_s: list[Tensor] = []
    pos_boxes: list[Tensor] = []
    pos_labels: list[Tensor] = []
    pos_masks: list[Tensor] = []
    num_pos_total = 0
    for i, props in enumerate(proposals):
        gt, gt_labels = batch.boxes[i], batch.labels[i]
        cand = torch.cat([gt, props[:, :4].to(gt.dtype)], dim=0)
        assigned = assign_max_iou(
            cand, gt, sampler.pos_iou_thr, sampler.neg_iou_thr, sampler.min_pos_iou
        )
        pos, neg = sample_random(assigned, sampler.num, sampler.pos_fraction, generator)
        gt_idx = assigned[pos] - 1
        labels = torch.cat([gt_labels[gt_idx], gt_labels.new_full((neg.numel(),), num_classes)])
        boxes_s.append(torch.cat([cand[pos], cand[neg]]))
        labels_s.append(labels)
        targets_s.append(encode_deltas(cand[pos], gt[gt_idx], head.means, head.stds))
        pos_boxes.append(cand[pos])
        pos_labels.append(gt_labels[gt_idx])
        pos_masks.append(mask_targets(batch.masks[i], cand[pos], gt_idx, mask_size))
        num_pos_total += pos.numel()
    rois = rois_from_boxes(boxes_s)
    cls_score, bbox_pred = head.bbox_head(head.bbox_roi_extractor(feats, rois))
    labels = torch.cat(labels_s)
    n = max(labels.numel(), 1)
    loss_cls = F.cross_entropy(cls_score.float(), labels, reduction="sum") / n
    # positives come first in each image's samples
    pos_rows = torch.cat(
        [
            torch.arange(p.shape[0], device=rois.device) + off
            for p, off in zip(pos_boxes, _offsets(boxes_s), strict=True)
        ]
    )
    pos_lab = torch.cat(pos_labels)
    if num_pos_total:
        reg = bbox_pred.float().view(bbox_pred.shape[0], -1, 4)
        reg = reg[pos_rows, pos_lab] if reg.shape[1] > 1 else reg[pos_rows, 0]
        loss_bbox = (reg - torch.cat(targets_s)).abs().sum() / n
        mask_rois = rois_from_boxes(pos_boxes)
        mask_logits = head.mask_head(head.mask_roi_extractor(feats, mask_rois))
        idx = torch.arange(pos_lab.numel(), device=pos_lab.device)
        logits = mask_logits[idx, pos_lab].float()
        loss_mask = F.binary_cross_entropy_with_logits(logits, torch.cat(pos_masks))
    else:  # keep every parameter in the graph so DDP/AMP see consistent gradients
        loss_bbox = bbox_pred.sum() * 0.0
        loss_mask = sum(p.sum() for p in head.mask_head.parameters()) * 0.0
    return {"loss_cls": loss_cls, "loss_bbox": loss_bbox, "loss_mask": loss_mask}


def _offsets(parts: list[Tensor]) -> list[int]:
    out, acc = [], 0
    for p in parts:
        out.append(acc)
        acc += p.shape[0]
    return out


def mask_rcnn_losses(
    model: MaskRCNN, batch: TrainBatch, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """All five Mask R-CNN losses (scalars) for one batch; their sum is what is minimised.

    ``model`` must be in training mode only for the parameters' ``requires_grad``: every layer
    behaves as at test time (frozen BatchNorm, no dropout), so train/eval mode changes nothing.
    """
    feats = model.neck(model.backbone(batch.images))
    losses, proposals = rpn_losses(model, feats, batch, generator=generator)
    losses.update(roi_losses(model, feats, proposals, batch, generator=generator))
    return losses
