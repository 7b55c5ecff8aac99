"""Region proposal network head with mmdetection 2.28's test-time proposal selection.

Per image and level: sigmoid objectness, the ``nms_pre`` best anchors (descending sort), decode
with the RPN coder (means 0, stds 1), drop boxes with width or height <= ``min_bbox_size``, then
NMS across levels with the level as the NMS group (mmdet ``batched_nms(..., level_ids)``) and keep
``max_per_img``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.*)
from cendetect.models.box_coder import base_anchors, decode_deltas, grid_anchors
from cendetect.models.detectron import SCALE_CLAMP, decode_detectron, nms_boxes
from cendetect.models.layers import first_k


@dataclass(frozen=True)
class RPNTestConfig:
    """mmdet ``test_cfg.rpn``."""

    nms_pre: int = 1000
    max_per_img: int = 1000
    iou_threshold: float = 0.7
    min_bbox_size: float = 0.0


class RPNHead(nn.Module):
    """Shared 3x3 conv + per-anchor objectness (sigmoid) and box deltas, one set per level.

    Args:
        in_channels, feat_channels: channels of the FPN levels / of the shared conv.
        strides: anchor stride of each level (mmdet ``anchor_generator.strides``).
        ratios, scales: anchor aspect ratios (h / w) and octave scales (base size = stride).
    """

    def __init__(
        self,
        in_channels: int = 256,
        feat_channels: int = 256,
        strides: tuple[int, ...] = (4, 8, 16, 32, 64),
        ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        scales: tuple[float, ...] = (8.0,),
        target_means: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
        target_stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
        test_cfg: RPNTestConfig = RPNTestConfig(),
    ) -> None:
        super().__init__()
        num_anchors = len(ratios) * len(scales)
        self.rpn_conv = nn.Conv2d(in_channels, feat_channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(feat_channels, num_anchors, 1)
        self.rpn_reg = nn.Conv2d(feat_channels, num_anchors * 4, 1)
        self.strides = list(strides)
        self.num_anchors = num_anchors
        self.means = [float(m) for m in target_means]
        self.stds = [float(s) for s in target_stds]
        self.nms_pre = test_cfg.nms_pre
        self.max_per_img = test_cfg.max_per_img
        self.iou_threshold = test_cfg.iou_threshold
        self.min_bbox_size = test_cfg.min_bbox_size
        # detectron2 / maskrcnn-benchmark conventions, set by
        # cendetect.models.detectron.apply_conventions (these values mean mmdet's)
        self.nms_offset = 0.0
        self.detectron_coder = False
        self.coder_weights = [1.0, 1.0, 1.0, 1.0]
        self.coder_offset = 0.0
        self.scale_clamp = SCALE_CLAMP
        bases = [base_anchors(s, list(ratios), list(scales)) for s in strides]
        # buffers, not parameters: not in mmdet's state dict, so persistent=False
        self.register_buffer("base_anchors", torch.stack(bases), persistent=False)

    def forward_levels(self, feats: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Raw outputs per level: objectness logits ``[B, A, H, W]``, deltas ``[B, 4A, H, W]``."""
        cls_scores: list[Tensor] = []
        bbox_preds: list[Tensor] = []
        for x in feats:
            x = torch.relu(self.rpn_conv(x))
            cls_scores.append(self.rpn_cls(x))
            bbox_preds.append(self.rpn_reg(x))
        return cls_scores, bbox_preds

    def forward(self, feats: list[Tensor], image_sizes: Tensor) -> list[Tensor]:
        """Proposals per image.

        Args:
            feats: FPN levels ``[B, C, H_l, W_l]``, one per stride.
            image_sizes: ``Tensor[B, 2]`` (h, w) of each resized image before padding.

        Returns:
            a list of B tensors ``[K_i, 5]``: ``x1, y1, x2, y2, score``, score-descending,
            ``K_i <= max_per_img``.
        """
        cls_scores, bbox_preds = self.forward_levels(feats)
        anchors: list[Tensor] = []
        for lvl in range(len(feats)):
            h, w = cls_scores[lvl].shape[-2], cls_scores[lvl].shape[-1]
            anchors.append(grid_anchors(self.base_anchors[lvl], h, w, self.strides[lvl]))
        batch = feats[0].shape[0]
        results: list[Tensor] = []
        for i in range(batch):
            results.append(
                self._proposals_single(cls_scores, bbox_preds, anchors, image_sizes[i], i)
            )
        return results

    @torch.jit.unused
    def proposals_from_levels(
        self, cls_scores: list[Tensor], bbox_preds: list[Tensor], image_sizes: Tensor
    ) -> list[Tensor]:
        """Training entry point: :meth:`forward`'s proposal selection on outputs of
        :meth:`forward_levels` (detach them first), so the RPN runs once per training step.
        Returns per image ``[K_i, 5]`` as :meth:`forward`."""
        anchors = self.level_anchors(cls_scores)
        return [
            self._proposals_single(cls_scores, bbox_preds, anchors, image_sizes[i], i)
            for i in range(cls_scores[0].shape[0])
        ]

    @torch.jit.unused
    def level_anchors(self, cls_scores: list[Tensor]) -> list[Tensor]:
        """Training entry point: anchors ``[H_l * W_l * A, 4]`` of each level, in the order of
        the outputs permuted to ``(H, W, A)`` (as :meth:`forward` builds them)."""
        anchors: list[Tensor] = []
        for lvl, scores in enumerate(cls_scores):
            h, w = scores.shape[-2], scores.shape[-1]
            anchors.append(grid_anchors(self.base_anchors[lvl], h, w, self.strides[lvl]))
        return anchors

    def _proposals_single(
        self,
        cls_scores: list[Tensor],
        bbox_preds: list[Tensor],
        anchors: list[Tensor],
        image_size: Tensor,
        i: int,
    ) -> Tensor:
        scores_all: list[Tensor] = []
        deltas_all: list[Tensor] = []
        anchors_all: list[Tensor] = []
        level_ids: list[Tensor] = []
        for lvl in range(len(cls_scores)):
            scores = cls_scores[lvl][i].permute(1, 2, 0).reshape(-1).float().sigmoid()
            deltas = bbox_preds[lvl][i].permute(1, 2, 0).reshape(-1, 4).float()
            ranked, order = scores.sort(descending=True)
            order = first_k(order, self.nms_pre)
            scores_all.append(first_k(ranked, self.nms_pre))
            deltas_all.append(deltas[order])
            anchors_all.append(anchors[lvl][order])
            level_ids.append(torch.full_like(order, lvl))
        scores = torch.cat(scores_all)
        if self.detectron_coder:
            boxes = decode_detectron(
                torch.cat(anchors_all),
                torch.cat(deltas_all),
                self.coder_weights,
                self.coder_offset,
                self.scale_clamp,
                image_size[0],
                image_size[1],
            )
        else:
            boxes = decode_deltas(
                torch.cat(anchors_all),
                torch.cat(deltas_all),
                self.means,
                self.stds,
                image_size[0],
                image_size[1],
            )
        ids = torch.cat(level_ids)
        if self.min_bbox_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = (wh[:, 0] > self.min_bbox_size) & (wh[:, 1] > self.min_bbox_size)
            keep_valid = valid.nonzero().squeeze(1)
            boxes, scores, ids = boxes[keep_valid], scores[keep_valid], ids[keep_valid]
        # mmcv's nms visits boxes in torch.sort(descending=True) order, which does not keep
        # exact ties in index order; saturated objectness (sigmoid == 1.0 in float32) makes such
        # ties common. Presorting the same way makes our stable NMS visit them as mmcv does.
        presort = scores.sort(descending=True)[1]
        boxes, scores, ids = boxes[presort], scores[presort], ids[presort]
        keep = torch.ops.cendetect.batched_nms(
            nms_boxes(boxes, self.nms_offset), scores, ids, self.iou_threshold
        )
        keep = first_k(keep, self.max_per_img)
        return torch.cat([boxes[keep], scores[keep].unsqueeze(1)], dim=1)
