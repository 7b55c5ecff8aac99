"""Second stage of Mask R-CNN: RoI feature extraction, box head, mask head (mmdet 2.28 names).

Test-time behaviour follows mmdetection 2.28's ``StandardRoIHead.simple_test`` with
``rescale=True``: box deltas are decoded and clipped in network-input pixels, boxes are divided
by the image's scale factor *before* the per-class NMS (so NMS runs in original-image pixels, as
mmdet's does), and the mask RoIs are those boxes multiplied back by the scale factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.*)
from cendetect.models.box_coder import decode_deltas
from cendetect.models.detectron import (
    SCALE_CLAMP,
    detectron_detections,
    legacy_multi_level_roi_align,
)
from cendetect.models.layers import ConvModule, first_k


@dataclass(frozen=True)
class RCNNTestConfig:
    """mmdet ``test_cfg.rcnn``."""

    score_thr: float = 0.05
    iou_threshold: float = 0.5
    max_per_img: int = 100
    mask_thr_binary: float = 0.5


@dataclass(frozen=True)
class RoIExtractorConfig:
    """mmdet ``SingleRoIExtractor`` with an ``RoIAlign`` layer."""

    output_size: int
    featmap_strides: tuple[int, ...] = (4, 8, 16, 32)
    sampling_ratio: int = 0
    aligned: bool = True
    finest_scale: int = 56
    #: maskrcnn-benchmark ``LevelMapper``: +1 box sizes, eps 1e-6 on ``s / 224`` (see
    #: :func:`cendetect.models.detectron.legacy_roi_levels`)
    legacy_levels: bool = False


class RoIExtractor(nn.Module):
    """Pools ``output_size x output_size`` features for each RoI from the level its size maps to.

    Input: FPN levels (only the first ``len(featmap_strides)`` are used) and ``rois[K, 5]``
    (``batch_index, x1, y1, x2, y2`` in network-input pixels). Output ``[K, C, S, S]``.
    """

    def __init__(self, cfg: RoIExtractorConfig) -> None:
        super().__init__()
        self.output_size = cfg.output_size
        self.num_levels = len(cfg.featmap_strides)
        self.scales = [1.0 / s for s in cfg.featmap_strides]
        self.sampling_ratio = cfg.sampling_ratio
        self.aligned = cfg.aligned
        self.finest_scale = cfg.finest_scale
        self.legacy_levels = cfg.legacy_levels

    def forward(self, feats: list[Tensor], rois: Tensor) -> Tensor:
        if self.legacy_levels:
            return legacy_multi_level_roi_align(
                feats[: self.num_levels],
                rois,
                self.output_size,
                self.scales,
                self.sampling_ratio,
                self.aligned,
                self.finest_scale,
                1.0,
                1e-6,
            )
        return torch.ops.cendetect.multi_level_roi_align(
            feats[: self.num_levels],
            rois,
            self.output_size,
            self.scales,
            self.sampling_ratio,
            self.aligned,
            self.finest_scale,
        )


class Shared2FCBBoxHead(nn.Module):
    """Two shared FC layers, then class scores (``num_classes + 1``, background last) and
    class-specific deltas (``4 * num_classes``; ``4`` with ``reg_class_agnostic``)."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        roi_feat_size: int = 7,
        fc_out_channels: int = 1024,
        reg_class_agnostic: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        # creation order equals mmdet's (BBoxHead makes fc_cls/fc_reg before the shared fcs),
        # so our state_dict lists keys in the same order as theirs
        self.fc_cls = nn.Linear(fc_out_channels, num_classes + 1)
        self.fc_reg = nn.Linear(fc_out_channels, 4 if reg_class_agnostic else 4 * num_classes)
        self.shared_fcs = nn.ModuleList(
            [
                nn.Linear(in_channels * roi_feat_size * roi_feat_size, fc_out_channels),
                nn.Linear(fc_out_channels, fc_out_channels),
            ]
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        for fc in self.shared_fcs:
            x = torch.relu(fc(x))
        return self.fc_cls(x), self.fc_reg(x)


class FCNMaskHead(nn.Module):
    """``num_convs`` 3x3 convs, a 2x deconvolution and a 1x1 classifier: ``[K, num_classes,
    2S, 2S]`` mask logits from ``[K, C, S, S]`` RoI features."""

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 256,
        conv_out_channels: int = 256,
        num_convs: int = 4,
    ) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                ConvModule(in_channels if i == 0 else conv_out_channels, conv_out_channels, 3, 1, 1)
                for i in range(num_convs)
            ]
        )
        self.upsample = nn.ConvTranspose2d(conv_out_channels, conv_out_channels, 2, stride=2)
        self.conv_logits = nn.Conv2d(conv_out_channels, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(x)
        x = torch.relu(self.upsample(x))
        return self.conv_logits(x)


def rois_from_boxes(boxes: list[Tensor]) -> Tensor:
    """``[sum K_i, 5]`` rois (``batch_index, x1, y1, x2, y2``) from per-image ``[K_i, >=4]``."""
    rois: list[Tensor] = []
    for i, b in enumerate(boxes):
        idx = torch.full_like(b[:, :1], float(i))
        rois.append(torch.cat([idx, b[:, :4]], dim=1))
    return torch.cat(rois, dim=0)


class StandardRoIHead(nn.Module):
    """Box head + mask head at test time (mmdet ``StandardRoIHead.simple_test``)."""

    def __init__(
        self,
        num_classes: int,
        bbox_roi: RoIExtractorConfig = RoIExtractorConfig(7),
        mask_roi: RoIExtractorConfig = RoIExtractorConfig(14),
        in_channels: int = 256,
        fc_out_channels: int = 1024,
        mask_convs: int = 4,
        target_means: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
        target_stds: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2),
        test_cfg: RCNNTestConfig = RCNNTestConfig(),
    ) -> None:
        super().__init__()
        # True: detectron2 / maskrcnn-benchmark decoding and final NMS in network-input pixels
        # (cendetect.models.detectron.detectron_detections), set by apply_conventions there
        self.detectron_coder = False
        self.coder_weights = [10.0, 10.0, 5.0, 5.0]
        self.coder_offset = 0.0
        self.scale_clamp = SCALE_CLAMP
        self.bbox_roi_extractor = RoIExtractor(bbox_roi)
        self.bbox_head = Shared2FCBBoxHead(
            num_classes, in_channels, bbox_roi.output_size, fc_out_channels
        )
        self.mask_roi_extractor = RoIExtractor(mask_roi)
        self.mask_head = FCNMaskHead(num_classes, in_channels, in_channels, mask_convs)
        self.num_classes = num_classes
        self.means = [float(m) for m in target_means]
        self.stds = [float(s) for s in target_stds]
        self.score_thr = test_cfg.score_thr
        self.iou_threshold = test_cfg.iou_threshold
        self.max_per_img = test_cfg.max_per_img

    def forward(
        self,
        feats: list[Tensor],
        proposals: list[Tensor],
        image_sizes: Tensor,
        scale_factors: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Detections for a batch.

        Args:
            feats: FPN levels ``[B, C, H_l, W_l]``.
            proposals: per image ``[K_i, 5]`` (``x1, y1, x2, y2, score``), network-input pixels.
            image_sizes: ``Tensor[B, 2]`` (h, w) of each resized image before padding.
            scale_factors: ``Tensor[B, 4]`` float32 (w_scale, h_scale, w_scale, h_scale): resized
                size / original size.

        Returns:
            ``boxes [N, 4]`` (network-input pixels), ``scores [N]``, ``labels [N]`` int64,
            ``mask_probs [N, M, M]`` (sigmoid of the label's mask logits), ``batch_ids [N]``
            int64; detections of image 0 first, each image's score-descending.
        """
        rois = rois_from_boxes(proposals)
        cls_score, bbox_pred = self.bbox_head(self.bbox_roi_extractor(feats, rois))
        if self.detectron_coder:
            boxes, scores, labels, batch_ids = detectron_detections(
                rois,
                cls_score.float(),
                bbox_pred.float(),
                [p.shape[0] for p in proposals],
                image_sizes,
                self.num_classes,
                self.coder_weights,
                self.coder_offset,
                self.scale_clamp,
                self.score_thr,
                self.iou_threshold,
                self.max_per_img,
            )
        else:
            boxes, scores, labels, batch_ids = detections_per_image(
                rois,
                cls_score.float(),
                bbox_pred.float(),
                [p.shape[0] for p in proposals],
                image_sizes,
                scale_factors,
                self.means,
                self.stds,
                self.num_classes,
                self.score_thr,
                self.iou_threshold,
                self.max_per_img,
            )
        mask_rois = torch.cat([batch_ids.to(boxes.dtype).unsqueeze(1), boxes], dim=1)
        mask_logits = self.mask_head(self.mask_roi_extractor(feats, mask_rois))
        return boxes, scores, labels, label_mask_probs(mask_logits, labels), batch_ids


def label_mask_probs(mask_logits: Tensor, labels: Tensor) -> Tensor:
    """``[N, M, M]`` float32 sigmoid of each RoI's own class channel of ``[N, C, M, M]`` logits."""
    index = torch.arange(labels.shape[0], device=labels.device)
    return mask_logits[index, labels].float().sigmoid()


def detections_per_image(
    rois: Tensor,
    cls_score: Tensor,
    bbox_pred: Tensor,
    num_per_image: list[int],
    image_sizes: Tensor,
    scale_factors: Tensor,
    means: list[float],
    stds: list[float],
    num_classes: int,
    score_thr: float,
    iou_threshold: float,
    max_per_img: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`detections_single` for each image of a batch, concatenated.

    Args:
        rois: ``[K, 5]`` (``batch_index, x1, y1, x2, y2``), network-input pixels, image 0 first.
        cls_score: ``[K, num_classes + 1]`` float32 logits (background last).
        bbox_pred: ``[K, 4 * num_classes]`` or class-agnostic ``[K, 4]`` float32 deltas.
        num_per_image: how many of the K rows belong to each image.
        image_sizes, scale_factors: ``[B, 2]`` (h, w) and ``[B, 4]`` as in the model's forward.

    Returns:
        ``boxes [N, 4]`` (network-input pixels), ``scores [N]``, ``labels [N]`` int64,
        ``batch_ids [N]`` int64; each image's detections score-descending.
    """
    det_boxes: list[Tensor] = []
    det_scores: list[Tensor] = []
    det_labels: list[Tensor] = []
    batch_ids: list[Tensor] = []
    start = 0
    for i, n in enumerate(num_per_image):
        boxes, scores, labels = detections_single(
            rois[start : start + n, 1:],
            cls_score[start : start + n],
            bbox_pred[start : start + n],
            image_sizes[i],
            scale_factors[i],
            means,
            stds,
            num_classes,
            score_thr,
            iou_threshold,
            max_per_img,
        )
        start += n
        det_boxes.append(boxes)
        det_scores.append(scores)
        det_labels.append(labels)
        batch_ids.append(torch.full_like(labels, i))
    return (
        torch.cat(det_boxes),
        torch.cat(det_scores),
        torch.cat(det_labels),
        torch.cat(batch_ids),
    )


def detections_single(
    rois: Tensor,
    cls_score: Tensor,
    bbox_pred: Tensor,
    image_size: Tensor,
    scale_factor: Tensor,
    means: list[float],
    stds: list[float],
    num_classes: int,
    score_thr: float,
    iou_threshold: float,
    max_per_img: int,
) -> tuple[Tensor, Tensor, Tensor]:
    """mmdet ``BBoxHead.get_bboxes(rescale=True)`` + ``multiclass_nms`` for one image, then boxes
    back in network-input pixels (``det_bboxes * scale_factor``, as mmdet builds its mask RoIs).

    ``rois [K, 4]``, ``cls_score [K, num_classes + 1]`` logits, ``bbox_pred [K, 4 * num_classes]``
    (or ``[K, 4]`` class-agnostic: one box serves every class, as ``multiclass_nms`` expands it).
    Returns ``boxes [N, 4]``, ``scores [N]``, ``labels [N]`` int64, score-descending.
    """
    scores = torch.softmax(cls_score, dim=-1)[:, :num_classes]
    boxes = decode_deltas(rois, bbox_pred, means, stds, image_size[0], image_size[1])
    sf = scale_factor.to(boxes.dtype)
    boxes = boxes.view(boxes.shape[0], boxes.shape[1] // 4, 4) / sf
    if boxes.shape[1] == 1:
        boxes = boxes.expand(boxes.shape[0], num_classes, 4)
    boxes = boxes.reshape(-1, 4)
    labels = torch.arange(num_classes, device=scores.device)
    labels = labels.view(1, -1).expand(scores.shape[0], num_classes).reshape(-1)
    scores = scores.reshape(-1)
    valid = (scores > score_thr).nonzero().squeeze(1)
    boxes, scores, labels = boxes[valid], scores[valid], labels[valid]
    keep = torch.ops.cendetect.batched_nms(boxes, scores, labels, iou_threshold)
    keep = first_k(keep, max_per_img)
    return boxes[keep] * sf, scores[keep], labels[keep]
