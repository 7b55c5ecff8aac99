"""Build the RoI heads from an mmdetection ``roi_head`` config: Mask R-CNN's standard head,
Cascade Mask R-CNN's stages and PointRend's coarse mask and point heads (the test-time parts;
see :mod:`cendetect.models.build`)."""

from __future__ import annotations

from typing import Any

from cendetect.config import ConfigError
from cendetect.models.cascade import CascadeRoIHead
from cendetect.models.config_keys import box_coder, expect_value, get_key
from cendetect.models.point_rend import (
    CoarseMaskHeadConfig,
    MaskPointHeadConfig,
    PointRendRoIHead,
    PointRendTestConfig,
    PointRoIExtractorConfig,
)
from cendetect.models.roi_heads import RCNNTestConfig, RoIExtractorConfig, StandardRoIHead

__all__ = ["build_cascade_roi_head", "build_point_rend_roi_head", "build_roi_head"]


def _roi_extractor(cfg: dict[str, Any], where: str) -> RoIExtractorConfig:
    expect_value(cfg, "type", ("SingleRoIExtractor",), None, where)
    layer = cfg.get("roi_layer", {})
    expect_value(layer, "type", ("RoIAlign",), None, f"{where}.roi_layer")
    expect_value(layer, "pool_mode", ("avg",), "avg", f"{where}.roi_layer")
    return RoIExtractorConfig(
        output_size=int(get_key(layer, "output_size", f"{where}.roi_layer")),
        featmap_strides=tuple(int(s) for s in cfg.get("featmap_strides", (4, 8, 16, 32))),
        sampling_ratio=int(layer.get("sampling_ratio", 0)),
        aligned=bool(layer.get("aligned", True)),
        finest_scale=int(cfg.get("finest_scale", 56)),
    )


def build_roi_head(
    cfg: dict[str, Any], test_cfg: dict[str, Any], num_classes: int | None
) -> StandardRoIHead:
    where = "roi_head"
    expect_value(cfg, "type", ("StandardRoIHead",), None, where)
    bbox = get_key(cfg, "bbox_head", where)
    mask = get_key(cfg, "mask_head", where)
    expect_value(bbox, "type", ("Shared2FCBBoxHead",), None, f"{where}.bbox_head")
    expect_value(bbox, "reg_class_agnostic", (False,), False, f"{where}.bbox_head")
    _check_mask_head(mask, f"{where}.mask_head")
    cfg_classes = int(get_key(bbox, "num_classes", f"{where}.bbox_head"))
    if int(mask.get("num_classes", cfg_classes)) != cfg_classes:
        raise ConfigError("model config: bbox_head and mask_head disagree on num_classes")
    if num_classes is not None and num_classes != cfg_classes:
        raise ConfigError(
            f"model config has num_classes={cfg_classes} but {num_classes} class names were given"
        )
    means, stds = box_coder(bbox, f"{where}.bbox_head", (0.1, 0.1, 0.2, 0.2))
    rcnn_test = _rcnn_test_cfg(test_cfg)
    bbox_roi = _roi_extractor(
        get_key(cfg, "bbox_roi_extractor", where), f"{where}.bbox_roi_extractor"
    )
    mask_roi = _roi_extractor(
        get_key(cfg, "mask_roi_extractor", where), f"{where}.mask_roi_extractor"
    )
    if int(bbox.get("roi_feat_size", 7)) != bbox_roi.output_size:
        raise ConfigError("model config: bbox_head.roi_feat_size != bbox_roi_extractor output_size")
    return StandardRoIHead(
        num_classes=cfg_classes,
        bbox_roi=bbox_roi,
        mask_roi=mask_roi,
        in_channels=int(bbox.get("in_channels", 256)),
        fc_out_channels=int(bbox.get("fc_out_channels", 1024)),
        mask_convs=int(mask.get("num_convs", 4)),
        target_means=means,
        target_stds=stds,
        test_cfg=rcnn_test,
    )


def _check_mask_head(mask: dict[str, Any], where: str) -> None:
    expect_value(mask, "type", ("FCNMaskHead",), None, where)
    expect_value(mask, "class_agnostic", (False,), False, where)
    expect_value(mask, "upsample_cfg", ({"type": "deconv", "scale_factor": 2}, None), None, where)


def _rcnn_test_cfg(test_cfg: dict[str, Any]) -> RCNNTestConfig:
    nms = test_cfg.get("nms", {"iou_threshold": 0.5})
    if nms.get("type", "nms") != "nms":
        raise ConfigError(
            f"model config: test_cfg.rcnn.nms type {nms.get('type')!r} is not supported"
        )
    return RCNNTestConfig(
        score_thr=float(test_cfg.get("score_thr", 0.05)),
        iou_threshold=float(nms.get("iou_threshold", 0.5)),
        max_per_img=int(test_cfg.get("max_per_img", 100)),
        mask_thr_binary=float(test_cfg.get("mask_thr_binary", 0.5)),
    )


def _per_stage(value: Any, num_stages: int, where: str) -> list[dict[str, Any]]:
    """mmdet repeats a single dict for every stage; a list must have one entry per stage."""
    if isinstance(value, dict):
        return [value] * num_stages
    if not isinstance(value, (list, tuple)) or len(value) != num_stages:
        raise ConfigError(f"model config: {where} must be a dict or a list of {num_stages} dicts")
    return list(value)


def _same_for_all_stages(values: list[Any], where: str) -> Any:
    if any(v != values[0] for v in values[1:]):
        raise ConfigError(
            f"model config: {where} differs between cascade stages, which is not supported"
        )
    return values[0]


def build_cascade_roi_head(
    cfg: dict[str, Any], test_cfg: dict[str, Any], num_classes: int | None
) -> CascadeRoIHead:
    """mmdet ``CascadeRoIHead`` (Shared2FC class-agnostic box heads, FCN mask heads)."""
    where = "roi_head"
    expect_value(cfg, "type", ("CascadeRoIHead",), None, where)
    num_stages = int(get_key(cfg, "num_stages", where))
    if num_stages < 1:
        raise ConfigError(f"model config: {where}.num_stages={num_stages} must be >= 1")
    bboxes = _per_stage(get_key(cfg, "bbox_head", where), num_stages, f"{where}.bbox_head")
    masks = _per_stage(get_key(cfg, "mask_head", where), num_stages, f"{where}.mask_head")
    stage_coders = []
    for i, bbox in enumerate(bboxes):
        w = f"{where}.bbox_head[{i}]"
        expect_value(bbox, "type", ("Shared2FCBBoxHead",), None, w)
        expect_value(bbox, "reg_class_agnostic", (True,), False, w)
        stage_coders.append(box_coder(bbox, w, (0.1, 0.1, 0.2, 0.2)))
    for i, mask in enumerate(masks):
        _check_mask_head(mask, f"{where}.mask_head[{i}]")
    classes = [int(get_key(b, "num_classes", f"{where}.bbox_head")) for b in bboxes]
    classes += [int(m.get("num_classes", classes[0])) for m in masks]
    cfg_classes = _same_for_all_stages(classes, f"{where}.bbox_head/mask_head num_classes")
    if num_classes is not None and num_classes != cfg_classes:
        raise ConfigError(
            f"model config has num_classes={cfg_classes} but {num_classes} class names were given"
        )
    sizes = [(int(b.get("in_channels", 256)), int(b.get("fc_out_channels", 1024))) for b in bboxes]
    in_channels, fc_out = _same_for_all_stages(sizes, f"{where}.bbox_head channels")
    mask_convs = _same_for_all_stages(
        [int(m.get("num_convs", 4)) for m in masks], f"{where}.mask_head.num_convs"
    )
    if cfg.get("mask_roi_extractor") is None:
        raise ConfigError(
            f"model config: {where}.mask_roi_extractor is missing (sharing the box extractor "
            "is not supported)"
        )
    extractors = {}
    for key in ("bbox_roi_extractor", "mask_roi_extractor"):
        per_stage = _per_stage(get_key(cfg, key, where), num_stages, f"{where}.{key}")
        configs = [_roi_extractor(e, f"{where}.{key}") for e in per_stage]
        extractors[key] = _same_for_all_stages(configs, f"{where}.{key}")
    bbox_roi = extractors["bbox_roi_extractor"]
    for i, bbox in enumerate(bboxes):
        if int(bbox.get("roi_feat_size", 7)) != bbox_roi.output_size:
            raise ConfigError(
                f"model config: {where}.bbox_head[{i}].roi_feat_size != bbox_roi_extractor "
                "output_size"
            )
    return CascadeRoIHead(
        num_classes=cfg_classes,
        stage_stds=tuple(stds for _, stds in stage_coders),
        stage_means=tuple(means for means, _ in stage_coders),
        bbox_roi=bbox_roi,
        mask_roi=extractors["mask_roi_extractor"],
        in_channels=in_channels,
        fc_out_channels=fc_out,
        mask_convs=mask_convs,
        test_cfg=_rcnn_test_cfg(test_cfg),
    )


def build_point_rend_roi_head(
    cfg: dict[str, Any], test_cfg: dict[str, Any], num_classes: int | None
) -> PointRendRoIHead:
    """mmdet ``PointRendRoIHead``: StandardRoIHead's box stage, ``GenericRoIExtractor`` of
    ``SimpleRoIAlign``, ``CoarseMaskHead`` and class-specific ``MaskPointHead``."""
    where = "roi_head"
    bbox = get_key(cfg, "bbox_head", where)
    expect_value(bbox, "type", ("Shared2FCBBoxHead",), None, f"{where}.bbox_head")
    expect_value(bbox, "reg_class_agnostic", (False,), False, f"{where}.bbox_head")
    cfg_classes = int(get_key(bbox, "num_classes", f"{where}.bbox_head"))
    if num_classes is not None and num_classes != cfg_classes:
        raise ConfigError(
            f"model config has num_classes={cfg_classes} but {num_classes} class names were given"
        )
    bbox_roi = _roi_extractor(
        get_key(cfg, "bbox_roi_extractor", where), f"{where}.bbox_roi_extractor"
    )
    if int(bbox.get("roi_feat_size", 7)) != bbox_roi.output_size:
        raise ConfigError("model config: bbox_head.roi_feat_size != bbox_roi_extractor output_size")
    means, stds = box_coder(bbox, f"{where}.bbox_head", (0.1, 0.1, 0.2, 0.2))
    in_channels = int(bbox.get("in_channels", 256))

    w = f"{where}.mask_roi_extractor"
    ext = get_key(cfg, "mask_roi_extractor", where)
    expect_value(ext, "type", ("GenericRoIExtractor",), None, w)
    expect_value(ext, "aggregation", ("sum", "concat"), "sum", w)
    expect_value(ext, "pre_cfg", (None,), None, w)
    expect_value(ext, "post_cfg", (None,), None, w)
    layer = ext.get("roi_layer", {})
    expect_value(layer, "type", ("SimpleRoIAlign",), None, f"{w}.roi_layer")
    strides = tuple(int(s) for s in ext.get("featmap_strides", (4,)))
    mask_roi = PointRoIExtractorConfig(
        output_size=int(get_key(layer, "output_size", f"{w}.roi_layer")),
        featmap_strides=strides,
        aligned=bool(layer.get("aligned", True)),
        concat=ext.get("aggregation", "sum") == "concat",
    )
    feat_channels = in_channels * (len(strides) if mask_roi.concat else 1)
    if int(ext.get("out_channels", feat_channels)) != feat_channels:
        raise ConfigError(f"model config: {w}.out_channels != {feat_channels}")

    w = f"{where}.mask_head"
    mask = get_key(cfg, "mask_head", where)
    expect_value(mask, "type", ("CoarseMaskHead",), None, w)
    expect_value(mask, "class_agnostic", (False,), False, w)
    expect_value(mask, "conv_cfg", (None,), None, w)
    expect_value(mask, "norm_cfg", (None,), None, w)
    expect_value(mask, "conv_kernel_size", (3,), 3, w)
    expect_value(mask, "roi_feat_size", (mask_roi.output_size,), mask_roi.output_size, w)
    if int(mask.get("in_channels", feat_channels)) != feat_channels:
        raise ConfigError(f"model config: {w}.in_channels != {feat_channels}")
    coarse = CoarseMaskHeadConfig(
        num_convs=int(mask.get("num_convs", 0)),
        conv_out_channels=int(mask.get("conv_out_channels", 256)),
        num_fcs=int(mask.get("num_fcs", 2)),
        fc_out_channels=int(mask.get("fc_out_channels", 1024)),
        downsample_factor=int(mask.get("downsample_factor", 2)),
    )
    if coarse.num_fcs < 1 or coarse.downsample_factor < 1:
        raise ConfigError(f"model config: {w}.num_fcs and downsample_factor must be >= 1")

    w = f"{where}.point_head"
    point = get_key(cfg, "point_head", where)
    expect_value(point, "type", ("MaskPointHead",), None, w)
    expect_value(point, "class_agnostic", (False,), False, w)
    expect_value(point, "conv_cfg", ({"type": "Conv1d"},), {"type": "Conv1d"}, w)
    expect_value(point, "norm_cfg", (None,), None, w)
    expect_value(point, "act_cfg", ({"type": "ReLU"},), {"type": "ReLU"}, w)
    point_cfg = MaskPointHeadConfig(
        num_fcs=int(point.get("num_fcs", 3)),
        in_channels=int(point.get("in_channels", 256)),
        fc_channels=int(point.get("fc_channels", 256)),
        coarse_pred_each_layer=bool(point.get("coarse_pred_each_layer", True)),
    )
    if point_cfg.in_channels != in_channels * len(strides):
        raise ConfigError(f"model config: {w}.in_channels != {in_channels * len(strides)}")
    for head, key in ((mask, "mask_head"), (point, "point_head")):
        if int(head.get("num_classes", cfg_classes)) != cfg_classes:
            raise ConfigError(f"model config: bbox_head and {key} disagree on num_classes")

    refine = PointRendTestConfig(
        subdivision_steps=int(get_key(test_cfg, "subdivision_steps", "test_cfg.rcnn")),
        subdivision_num_points=int(get_key(test_cfg, "subdivision_num_points", "test_cfg.rcnn")),
        scale_factor=int(get_key(test_cfg, "scale_factor", "test_cfg.rcnn")),
    )
    if float(test_cfg["scale_factor"]) != refine.scale_factor or refine.scale_factor < 1:
        raise ConfigError(
            f"model config: test_cfg.rcnn.scale_factor={test_cfg['scale_factor']!r} is not "
            "supported (a positive integer)"
        )
    if refine.subdivision_steps < 0 or refine.subdivision_num_points < 1:
        raise ConfigError(
            "model config: test_cfg.rcnn.subdivision_steps must be >= 0 and "
            "subdivision_num_points >= 1"
        )
    return PointRendRoIHead(
        num_classes=cfg_classes,
        bbox_roi=bbox_roi,
        mask_roi=mask_roi,
        in_channels=in_channels,
        fc_out_channels=int(bbox.get("fc_out_channels", 1024)),
        coarse=coarse,
        point=point_cfg,
        target_means=means,
        target_stds=stds,
        test_cfg=_rcnn_test_cfg(test_cfg),
        refine=refine,
    )
