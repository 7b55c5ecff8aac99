"""PointRend's second stage at test time (mmdetection 2.28 ``PointRendRoIHead``, mmdet names).

The box stage is Mask R-CNN's (:func:`cendetect.models.roi_heads.detections_per_image`). Masks:

1. ``SimpleRoIAlign``: a regular ``S x S`` grid of points inside each RoI, bilinearly sampled
   (``grid_sample``, ``align_corners=False``) from the FPN level(s) of the mask RoI extractor.
2. ``CoarseMaskHead``: a strided convolution and FCs give ``[K, num_classes, S/2, S/2]`` logits.
3. ``subdivision_steps`` rounds of: 2x bilinear upsampling (``align_corners=False``) of the
   label's logits; the ``subdivision_num_points`` most uncertain cells (largest ``-|logit|``,
   ``topk``) are re-predicted by ``MaskPointHead`` from fine-grained FPN features and the coarse
   logits sampled at the cell centres, and written back in place. A round whose point budget
   covers the whole next grid is skipped, as in mmdetection (with the defaults: the first).

Point coordinates are relative to the RoI, ``(x, y)`` in ``[0, 1] x [0, 1]`` with ``(0, 0)`` the
RoI's top-left corner ``(x1, y1)``; cell ``(i, j)`` of an ``h x w`` grid has its centre at
``((j + 0.5) / w, (i + 0.5) / h)``. Image points are in network-input pixels (pixel ``p`` covers
``[p, p + 1)``), mapped onto a feature map of stride ``s`` by ``/ s``.

Precision rule: every ``grid_sample``, the upsampling and the uncertainty ``topk`` run in
float32 whatever the convolutions run in (mmdet's extractor is ``force_fp32``; fp16/bf16
sampling grids lose whole pixels at 1333 px, ``grid_sample`` refuses mixed dtypes, and half
``topk`` ties differently). Features are cast to float32 at the sampling boundary; the
RoI features handed to the coarse head are cast back to the feature dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cendetect.models.layers import ConvModule
from cendetect.models.roi_heads import (
    RCNNTestConfig,
    RoIExtractor,
    RoIExtractorConfig,
    Shared2FCBBoxHead,
    detections_per_image,
    rois_from_boxes,
)

__all__ = [
    "CoarseMaskHead",
    "CoarseMaskHeadConfig",
    "MaskPointHead",
    "MaskPointHeadConfig",
    "PointRendRoIHead",
    "PointRendTestConfig",
    "PointRoIExtractorConfig",
    "SimpleRoIAlign",
    "point_sample",
    "regular_grid_points",
    "roi_points_to_image",
    "sample_roi_points",
    "uncertain_points",
]


@dataclass(frozen=True)
class PointRendTestConfig:
    """mmdet ``test_cfg.rcnn`` keys of PointRend's mask refinement."""

    subdivision_steps: int = 5
    subdivision_num_points: int = 784
    scale_factor: int = 2


@dataclass(frozen=True)
class PointRoIExtractorConfig:
    """mmdet ``GenericRoIExtractor`` with mmcv ``SimpleRoIAlign`` layers."""

    output_size: int = 14
    featmap_strides: tuple[int, ...] = (4,)
    aligned: bool = True
    concat: bool = True  # aggregation 'concat' (else 'sum')


@dataclass(frozen=True)
class CoarseMaskHeadConfig:
    """mmdet ``CoarseMaskHead``: ``num_convs`` 3x3 convs, a ``downsample_factor`` strided conv,
    ``num_fcs`` FCs; ``in_channels`` and ``roi_feat_size`` come from the RoI extractor."""

    num_convs: int = 0
    conv_out_channels: int = 256
    num_fcs: int = 2
    fc_out_channels: int = 1024
    downsample_factor: int = 2


@dataclass(frozen=True)
class MaskPointHeadConfig:
    """mmdet ``MaskPointHead`` (class-specific, 1x1 ``Conv1d`` layers with ReLU)."""

    num_fcs: int = 3
    in_channels: int = 256
    fc_channels: int = 256
    coarse_pred_each_layer: bool = True


def point_sample(input: Tensor, points: Tensor, align_corners: bool = False) -> Tensor:
    """Bilinear samples of ``input [N, C, H, W]`` at ``points [N, P, 2]`` or ``[N, Hg, Wg, 2]``.

    Points are ``(x, y)`` in ``[0, 1]``, relative to the map's extent (``0`` and ``1`` are its
    outer edges when ``align_corners=False``); outside the map the features are zero. Computed in
    float32. Returns ``[N, C, P]`` (or ``[N, C, Hg, Wg]``) float32.
    """
    squeeze = points.dim() == 3
    if squeeze:
        points = points.unsqueeze(2)
    grid = points.float() * 2.0 - 1.0
    out = F.grid_sample(input.float(), grid, align_corners=align_corners)
    if squeeze:
        out = out.squeeze(3)
    return out


def roi_points_to_image(
    rois: Tensor, rel_points: Tensor, feat_h: int, feat_w: int, spatial_scale: float
) -> Tensor:
    """RoI-relative points ``[K, P, 2]`` to feature-map-relative ``[K, P, 2]`` (``x, y`` in
    ``[0, 1]`` of a ``feat_h x feat_w`` map of ``spatial_scale = 1 / stride``).

    ``rois [K, 5]`` (``batch_index, x1, y1, x2, y2``) in network-input pixels. Same arithmetic
    order as mmcv's ``rel_roi_point_to_rel_img_point`` (scale, shift, divide, rescale).
    """
    boxes = rois[:, 1:].float()
    xs = rel_points[:, :, 0] * (boxes[:, None, 2] - boxes[:, None, 0])
    ys = rel_points[:, :, 1] * (boxes[:, None, 3] - boxes[:, None, 1])
    xs = xs + boxes[:, None, 0]
    ys = ys + boxes[:, None, 1]
    size = torch.tensor([feat_w, feat_h], dtype=torch.float32, device=rois.device)
    return torch.stack([xs, ys], dim=2) / size.view(1, 1, 2) * spatial_scale


def sample_roi_points(
    feat: Tensor,
    rois: Tensor,
    rel_points: Tensor,
    spatial_scale: float,
    align_corners: bool = False,
) -> Tensor:
    """Features of ``feat [B, C, H, W]`` at RoI-relative points ``[K, P, 2]`` of ``rois [K, 5]``.

    Each RoI samples its own image (``rois[:, 0]``); RoIs must be grouped by image, image 0
    first (the order detections come in). Returns ``[K, C, P]`` float32.
    """
    points = roi_points_to_image(rois, rel_points, feat.shape[2], feat.shape[3], spatial_scale)
    if feat.shape[0] == 1:  # the common case, and static under torch.export
        out = point_sample(feat, points.unsqueeze(0), align_corners)
        return out.squeeze(0).transpose(0, 1)
    parts: list[Tensor] = []
    image_ids = rois[:, 0].long()
    for b in range(feat.shape[0]):
        sel = (image_ids == b).nonzero().squeeze(1)
        out = point_sample(feat[b : b + 1], points[sel].unsqueeze(0), align_corners)
        parts.append(out.squeeze(0).transpose(0, 1))
    return torch.cat(parts, dim=0)


def regular_grid_points(num_rois: int, size: int, device: torch.device) -> Tensor:
    """``[num_rois, size * size, 2]`` cell centres ``(x, y)`` of a ``size x size`` grid over
    ``[0, 1]^2``, row-major; computed by ``affine_grid`` as mmcv's ``generate_grid`` does."""
    theta = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], device=device)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    grid = (grid + 1.0) / 2.0
    return grid.view(1, -1, 2).expand(num_rois, -1, -1)


def uncertain_points(logits: Tensor, num_points: int) -> tuple[Tensor, Tensor]:
    """The ``num_points`` most uncertain cells of ``logits [K, 1, h, w]`` (float32).

    Uncertainty is ``-|logit|``; cells are ranked by ``topk`` over the row-major flattened grid
    (``min(num_points, h * w)`` of them, torch's ``topk`` order and tie-breaking, as mmdet).

    Returns:
        ``indices [K, P]`` int64 into ``h * w`` and ``points [K, P, 2]`` float32, the cells'
        centres ``(x, y)`` relative to the RoI.
    """
    h, w = logits.shape[2], logits.shape[3]
    uncertainty = -torch.abs(logits.float()).reshape(logits.shape[0], h * w)
    indices = uncertainty.topk(min(h * w, num_points), dim=1)[1]
    h_step = 1.0 / h
    w_step = 1.0 / w
    xs = w_step / 2.0 + (indices % w).float() * w_step
    ys = h_step / 2.0 + torch.div(indices, w, rounding_mode="floor").float() * h_step
    return indices, torch.stack([xs, ys], dim=2)


class SimpleRoIAlign(nn.Module):
    """mmdet ``GenericRoIExtractor`` of mmcv ``SimpleRoIAlign`` layers (``aligned=True``).

    ``forward(feats, rois [K, 5])`` -> ``[K, C_out, S, S]`` in the features' dtype: per level, the
    ``S x S`` cell centres of each RoI sampled bilinearly (float32); levels concatenated along
    channels (``aggregation='concat'``) or summed (``'sum'``).
    """

    def __init__(self, cfg: PointRoIExtractorConfig) -> None:
        super().__init__()
        self.output_size = cfg.output_size
        self.scales = [1.0 / float(s) for s in cfg.featmap_strides]
        self.align_corners = not cfg.aligned
        self.concat = cfg.concat

    def forward(self, feats: list[Tensor], rois: Tensor) -> Tensor:
        s = self.output_size
        points = regular_grid_points(rois.shape[0], s, rois.device)
        levels: list[Tensor] = []
        for lvl, scale in enumerate(self.scales):
            out = sample_roi_points(feats[lvl], rois, points, scale, self.align_corners)
            levels.append(out.reshape(rois.shape[0], out.shape[1], s, s))
        if self.concat:
            pooled = torch.cat(levels, dim=1)
        else:
            pooled = levels[0]
            for other in levels[1:]:
                pooled = pooled + other
        return pooled.to(feats[0].dtype)


class CoarseMaskHead(nn.Module):
    """``[K, C, S, S]`` RoI features -> ``[K, num_classes, S/d, S/d]`` coarse mask logits."""

    def __init__(
        self, num_classes: int, in_channels: int, roi_feat_size: int, cfg: CoarseMaskHeadConfig
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.convs = nn.ModuleList(
            [
                ConvModule(
                    in_channels if i == 0 else cfg.conv_out_channels, cfg.conv_out_channels, 3, 1, 1
                )
                for i in range(cfg.num_convs)
            ]
        )
        down_in = cfg.conv_out_channels if cfg.num_convs > 0 else in_channels
        d = cfg.downsample_factor
        # mmdet has no downsampling layer (and no state-dict entry) when d == 1
        self.downsample_conv = (
            ConvModule(down_in, cfg.conv_out_channels, d, d, 0) if d > 1 else nn.Identity()
        )
        self.output_size = roi_feat_size // d
        # mmdet sizes the first FC by conv_out_channels whatever the layers before it give
        dims = [cfg.conv_out_channels * self.output_size**2] + [cfg.fc_out_channels] * cfg.num_fcs
        self.fcs = nn.ModuleList([nn.Linear(dims[i], dims[i + 1]) for i in range(cfg.num_fcs)])
        self.fc_logits = nn.Linear(dims[-1], num_classes * self.output_size**2)

    def forward(self, x: Tensor) -> Tensor:
        for conv in self.convs:
            x = conv(x)
        x = self.downsample_conv(x).flatten(1)
        for fc in self.fcs:
            x = torch.relu(fc(x))
        return self.fc_logits(x).view(
            x.shape[0], self.num_classes, self.output_size, self.output_size
        )


class _PointConv(nn.Module):
    """mmcv ``ConvModule(conv_cfg=Conv1d)``: a 1x1 ``Conv1d`` stored as ``.conv``, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.conv(x))


class MaskPointHead(nn.Module):
    """Point-wise MLP: ``fine [K, C, P]`` and ``coarse [K, num_classes, P]`` -> logits
    ``[K, num_classes, P]`` float32 (computed in the dtype of its own weights)."""

    def __init__(self, num_classes: int, cfg: MaskPointHeadConfig) -> None:
        super().__init__()
        self.coarse_pred_each_layer = cfg.coarse_pred_each_layer
        fcs: list[nn.Module] = []
        c = cfg.in_channels + num_classes
        for _ in range(cfg.num_fcs):
            fcs.append(_PointConv(c, cfg.fc_channels))
            c = cfg.fc_channels + (num_classes if cfg.coarse_pred_each_layer else 0)
        self.fcs = nn.ModuleList(fcs)
        self.fc_logits = nn.Conv1d(c, num_classes, 1)

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        dtype = self.fc_logits.weight.dtype
        coarse = coarse.to(dtype)
        x = torch.cat([fine.to(dtype), coarse], dim=1)
        for fc in self.fcs:
            x = fc(x)
            if self.coarse_pred_each_layer:
                x = torch.cat([x, coarse], dim=1)
        return self.fc_logits(x).float()


_BBOX_ROI = RoIExtractorConfig(7)
_RCNN_TEST = RCNNTestConfig()


class PointRendRoIHead(nn.Module):
    """Box head + coarse mask head + point-wise refinement (mmdet ``PointRendRoIHead``)."""

    def __init__(
        self,
        num_classes: int,
        bbox_roi: RoIExtractorConfig = _BBOX_ROI,
        mask_roi: PointRoIExtractorConfig = PointRoIExtractorConfig(),
        in_channels: int = 256,
        fc_out_channels: int = 1024,
        coarse: CoarseMaskHeadConfig = CoarseMaskHeadConfig(),
        point: MaskPointHeadConfig = MaskPointHeadConfig(),
        target_means: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0),
        target_stds: tuple[float, ...] = (0.1, 0.1, 0.2, 0.2),
        test_cfg: RCNNTestConfig = _RCNN_TEST,
        refine: PointRendTestConfig = PointRendTestConfig(),
    ) -> None:
        super().__init__()
        self.bbox_roi_extractor = RoIExtractor(bbox_roi)
        self.bbox_head = Shared2FCBBoxHead(
            num_classes, in_channels, bbox_roi.output_size, fc_out_channels
        )
        self.mask_roi_extractor = SimpleRoIAlign(mask_roi)
        mask_channels = in_channels * (len(mask_roi.featmap_strides) if mask_roi.concat else 1)
        self.mask_head = CoarseMaskHead(num_classes, mask_channels, mask_roi.output_size, coarse)
        self.point_head = MaskPointHead(num_classes, point)
        self.num_classes = num_classes
        self.means = [float(m) for m in target_means]
        self.stds = [float(s) for s in target_stds]
        self.score_thr = test_cfg.score_thr
        self.iou_threshold = test_cfg.iou_threshold
        self.max_per_img = test_cfg.max_per_img
        self.subdivision_steps = refine.subdivision_steps
        self.num_points = refine.subdivision_num_points
        self.scale_factor = refine.scale_factor

    def forward(
        self,
        feats: list[Tensor],
        proposals: list[Tensor],
        image_sizes: Tensor,
        scale_factors: Tensor,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """Same contract as :meth:`StandardRoIHead.forward`, with ``mask_probs [N, M, M]``
        float32, ``M = S/2 * scale_factor ** subdivision_steps`` (224 for mmdet's config)."""
        rois = rois_from_boxes(proposals)
        cls_score, bbox_pred = self.bbox_head(self.bbox_roi_extractor(feats, rois))
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
        logits = self.mask_logits(feats, mask_rois, labels)
        return boxes, scores, labels, logits[:, 0].sigmoid(), batch_ids

    def mask_logits(self, feats: list[Tensor], rois: Tensor, labels: Tensor) -> Tensor:
        """Refined logits ``[K, 1, M, M]`` float32 of each RoI's class ``labels [K]``.

        ``rois [K, 5]`` (``batch_index, x1, y1, x2, y2``, network-input pixels, grouped by image).
        Only the label's channel is refined: every step treats channels independently and mmdet
        keeps only that channel, so the other classes' refinement is never observable.
        """
        coarse = self.mask_head(self.mask_roi_extractor(feats, rois)).float()
        index = torch.arange(labels.shape[0], device=labels.device)
        refined = coarse[index, labels].unsqueeze(1)
        k = refined.shape[0]
        for step in range(self.subdivision_steps):
            refined = F.interpolate(
                refined,
                scale_factor=float(self.scale_factor),
                mode="bilinear",
                align_corners=False,
            )
            h, w = refined.shape[2], refined.shape[3]
            # mmdet's rule (it compares with the grid *after* next): skip while the budget covers
            # it, except in the last step
            last = step == self.subdivision_steps - 1
            if self.num_points >= self.scale_factor * self.scale_factor * h * w and not last:
                continue
            indices, points = uncertain_points(refined, self.num_points)
            fine = self.fine_grained_feats(feats, rois, points)
            point_logits = self.point_head(fine, point_sample(coarse, points))
            point_logits = point_logits[index, labels].unsqueeze(1)
            refined = refined.reshape(k, 1, h * w).scatter(2, indices.unsqueeze(1), point_logits)
            refined = refined.view(k, 1, h, w)
        return refined

    def fine_grained_feats(self, feats: list[Tensor], rois: Tensor, points: Tensor) -> Tensor:
        """``[K, C * L, P]`` float32 features at RoI-relative ``points [K, P, 2]`` from each of
        the mask extractor's ``L`` levels, concatenated along channels (mmdet's order)."""
        levels: list[Tensor] = []
        for lvl, scale in enumerate(self.mask_roi_extractor.scales):
            levels.append(sample_roi_points(feats[lvl], rois, points, scale))
        return torch.cat(levels, dim=1)
