"""Cascade Mask R-CNN's second stage (mmdet 2.28 ``CascadeRoIHead``, test time, ``rescale=True``).

What happens at test time, in mmdetection's order:

1. Stage ``i`` pools 7x7 features for the current RoIs and runs its own ``Shared2FCBBoxHead``
   (class-agnostic regression: one box delta per RoI).
2. Between stages, every RoI is replaced by its own regressed box (``regress_by_class``), decoded
   with *that stage's* ``target_stds`` and clipped to the resized image. With a class-agnostic
   head the argmax label mmdet computes for it selects nothing, so it is not computed here.
3. The class **logits** of all stages are averaged (mmdet sums the raw ``cls_score`` per stage
   and divides by the number of stages); softmax comes after, in the usual box post-processing.
4. The final boxes are the last stage's deltas applied to the RoIs that stage saw, then
   ``multiclass_nms`` in original-image pixels, exactly as :class:`StandardRoIHead` (shared
   helpers in :mod:`cendetect.models.roi_heads`).
5. Every stage's mask head runs on the final boxes; the mask probability is the mean over the
   stages of ``sigmoid(logits)`` (mmdet ``merge_aug_masks``: sigmoid first, then the mean).

mmdetection 3.3's ``CascadeRoIHead.predict`` (``_refine_roi``, ``predict_mask``) does the same
arithmetic; it runs the box NMS in network-input pixels instead of original-image pixels, which
the Mask R-CNN fixtures show makes no difference to the detections (see ``docs/models.md``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.*)
from cendetect.models.box_coder import decode_deltas
from cendetect.models.roi_heads import (
    FCNMaskHead,
    RCNNTestConfig,
    RoIExtractor,
    RoIExtractorConfig,
    Shared2FCBBoxHead,
    detections_per_image,
    label_mask_probs,
    rois_from_boxes,
)

# defaults: mmdet's cascade_mask_rcnn_r50_fpn configs (module-level, as they are frozen objects)
_BBOX_ROI = RoIExtractorConfig(7)
_MASK_ROI = RoIExtractorConfig(14)
_TEST_CFG = RCNNTestConfig()


class CascadeRoIHead(nn.Module):
    """``num_stages`` box heads refining the RoIs in turn, and one mask head per stage.

    State-dict names are mmdetection's: ``bbox_head.{i}.*`` and ``mask_head.{i}.*``; the RoI
    extractors hold no weights (mmdet keeps one per stage, all alike; one serves here).

    Args:
        num_classes: object classes (background excluded).
        stage_stds: ``target_stds`` of each stage's box coder; its length is the number of stages.
        stage_means: ``target_means`` of each stage (default zeros).
        bbox_roi, mask_roi: the RoI extractors (7x7 box features, 14x14 mask features).
        in_channels, fc_out_channels, mask_convs: head sizes, as :class:`StandardRoIHead`.
        test_cfg: mmdet ``test_cfg.rcnn``.
    """

    def __init__(
        self,
        num_classes: int,
        stage_stds: tuple[tuple[float, ...], ...] = (
            (0.1, 0.1, 0.2, 0.2),
            (0.05, 0.05, 0.1, 0.1),
            (0.033, 0.033, 0.067, 0.067),
        ),
        stage_means: tuple[tuple[float, ...], ...] | None = None,
        bbox_roi: RoIExtractorConfig = _BBOX_ROI,
        mask_roi: RoIExtractorConfig = _MASK_ROI,
        in_channels: int = 256,
        fc_out_channels: int = 1024,
        mask_convs: int = 4,
        test_cfg: RCNNTestConfig = _TEST_CFG,
    ) -> None:
        super().__init__()
        num_stages = len(stage_stds)
        if num_stages < 1:
            raise ValueError("CascadeRoIHead needs at least one stage")
        if stage_means is None:
            stage_means = tuple((0.0, 0.0, 0.0, 0.0) for _ in range(num_stages))
        if len(stage_means) != num_stages:
            raise ValueError(f"{len(stage_means)} stage_means for {num_stages} stages")
        self.bbox_roi_extractor = RoIExtractor(bbox_roi)
        # creation order (all box heads, then the mask extractor and mask heads) gives mmdet's
        # key order: bbox_head.0..N-1 before mask_head.0..N-1
        self.bbox_head = nn.ModuleList(
            [
                Shared2FCBBoxHead(
                    num_classes,
                    in_channels,
                    bbox_roi.output_size,
                    fc_out_channels,
                    reg_class_agnostic=True,
                )
                for _ in range(num_stages)
            ]
        )
        self.mask_roi_extractor = RoIExtractor(mask_roi)
        self.mask_head = nn.ModuleList(
            [
                FCNMaskHead(num_classes, in_channels, in_channels, mask_convs)
                for _ in range(num_stages)
            ]
        )
        self.num_classes = num_classes
        self.num_stages = num_stages
        self.means = [[float(m) for m in ms] for ms in stage_means]
        self.stds = [[float(s) for s in ss] for ss in stage_stds]
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
        """Detections for a batch; same contract as :meth:`StandardRoIHead.forward`.

        Args:
            feats: FPN levels ``[B, C, H_l, W_l]``.
            proposals: per image ``[K_i, 5]`` (``x1, y1, x2, y2, score``), network-input pixels.
            image_sizes: ``Tensor[B, 2]`` (h, w) of each resized image before padding.
            scale_factors: ``Tensor[B, 4]`` float32 (w_scale, h_scale, w_scale, h_scale).

        Returns:
            ``boxes [N, 4]`` (network-input pixels), ``scores [N]``, ``labels [N]`` int64,
            ``mask_probs [N, M, M]`` (mean over stages of the sigmoid of the label's mask
            logits), ``batch_ids [N]`` int64; image 0 first, each image's score-descending.
        """
        num_per_image = [p.shape[0] for p in proposals]
        rois = rois_from_boxes(proposals)
        score_sum = torch.zeros(0)
        bbox_pred = torch.zeros(0)
        last = self.num_stages - 1
        for stage, head in enumerate(self.bbox_head):
            cls_score, bbox_pred = head(self.bbox_roi_extractor(feats, rois))
            cls_score = cls_score.float()
            bbox_pred = bbox_pred.float()
            # mmdet: sum(stage logits) / num_stages, summed in stage order
            score_sum = cls_score if stage == 0 else score_sum + cls_score
            if stage < last:
                rois = self._refine(rois, bbox_pred, num_per_image, image_sizes, stage)
        boxes, scores, labels, batch_ids = detections_per_image(
            rois,
            score_sum / float(self.num_stages),
            bbox_pred,
            num_per_image,
            image_sizes,
            scale_factors,
            self.means[last],
            self.stds[last],
            self.num_classes,
            self.score_thr,
            self.iou_threshold,
            self.max_per_img,
        )
        mask_rois = torch.cat([batch_ids.to(boxes.dtype).unsqueeze(1), boxes], dim=1)
        mask_feats = self.mask_roi_extractor(feats, mask_rois)
        prob_sum = torch.zeros(0)
        for stage, mask_head in enumerate(self.mask_head):
            probs = label_mask_probs(mask_head(mask_feats), labels)
            prob_sum = probs if stage == 0 else prob_sum + probs
        return boxes, scores, labels, prob_sum / float(self.num_stages), batch_ids

    def _refine(
        self,
        rois: Tensor,
        bbox_pred: Tensor,
        num_per_image: list[int],
        image_sizes: Tensor,
        stage: int,
    ) -> Tensor:
        """mmdet ``BBoxHead.regress_by_class`` per image: ``rois [K, 5]`` moved by their
        class-agnostic deltas ``[K, 4]`` (this stage's coder), clipped to each resized image."""
        refined: list[Tensor] = []
        start = 0
        for i, n in enumerate(num_per_image):
            r = rois[start : start + n]
            boxes = decode_deltas(
                r[:, 1:],
                bbox_pred[start : start + n],
                self.means[stage],
                self.stds[stage],
                image_sizes[i, 0],
                image_sizes[i, 1],
            )
            refined.append(torch.cat([r[:, :1], boxes], dim=1))
            start += n
        return torch.cat(refined)
