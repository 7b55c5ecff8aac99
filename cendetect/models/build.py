"""Build our modules from an mmdetection model config (the ``model`` dict of a config file).

Only what changes the test-time computation is read; training-only keys (losses, assigners,
samplers, ``init_cfg``) are ignored. Anything we would compute differently from mmdetection is
refused with a :class:`~cendetect.config.ConfigError` naming the key, never silently ignored.
"""

from __future__ import annotations

from typing import Any

from cendetect.config import ConfigError
from cendetect.models.cascade import CascadeRoIHead
from cendetect.models.conventions import apply_convention, split_convention
from cendetect.models.dcn import DCNConfig
from cendetect.models.fpn import FPN
from cendetect.models.mask_rcnn import MaskRCNN
from cendetect.models.mobilenet_v2 import MobileNetV2, build_mobilenet_v2
from cendetect.models.point_rend import (
    CoarseMaskHeadConfig,
    MaskPointHeadConfig,
    PointRendRoIHead,
    PointRendTestConfig,
    PointRoIExtractorConfig,
)
from cendetect.models.resnet import ResNet
from cendetect.models.roi_heads import RCNNTestConfig, RoIExtractorConfig, StandardRoIHead
from cendetect.models.rpn import RPNHead, RPNTestConfig

SUPPORTED_TYPES = ("MaskRCNN", "CascadeRCNN", "PointRend")


def _get(cfg: dict[str, Any], key: str, where: str) -> Any:
    if key not in cfg:
        raise ConfigError(f"model config: {where}.{key} is missing")
    return cfg[key]


def _expect(
    cfg: dict[str, Any], key: str, allowed: tuple[Any, ...], default: Any, where: str
) -> Any:
    value = cfg.get(key, default)
    if value not in allowed:
        raise ConfigError(
            f"model config: {where}.{key}={value!r} is not supported (supported: {allowed})"
        )
    return value


def build_backbone(cfg: dict[str, Any]) -> ResNet | MobileNetV2:
    where = "backbone"
    if cfg.get("type") == "MobileNetV2":
        return build_mobilenet_v2(cfg)
    _expect(cfg, "type", ("ResNet", "MobileNetV2"), None, where)
    dcn, stage_with_dcn = _build_dcn(cfg)
    if cfg.get("plugins"):
        raise ConfigError("model config: backbone.plugins are not supported")
    norm = cfg.get("norm_cfg", {"type": "BN"})
    if norm.get("type") not in ("BN", "SyncBN"):
        raise ConfigError(
            f"model config: backbone.norm_cfg type {norm.get('type')!r} is not supported"
        )
    if not cfg.get("norm_eval", True):
        raise ConfigError(
            "model config: backbone.norm_eval=False (BatchNorm in train mode) is not supported"
        )
    _expect(cfg, "num_stages", (4,), 4, where)
    _expect(cfg, "deep_stem", (False,), False, where)
    _expect(cfg, "avg_down", (False,), False, where)
    _expect(cfg, "strides", ((1, 2, 2, 2), [1, 2, 2, 2]), (1, 2, 2, 2), where)
    _expect(cfg, "dilations", ((1, 1, 1, 1), [1, 1, 1, 1]), (1, 1, 1, 1), where)
    return ResNet(
        depth=int(_get(cfg, "depth", where)),
        style=cfg.get("style", "pytorch"),
        out_indices=tuple(cfg.get("out_indices", (0, 1, 2, 3))),
        frozen_stages=int(cfg.get("frozen_stages", -1)),
        dcn=dcn,
        stage_with_dcn=stage_with_dcn,
    )


def _build_dcn(cfg: dict[str, Any]) -> tuple[DCNConfig | None, tuple[bool, bool, bool, bool]]:
    """backbone.dcn / stage_with_dcn; only mmcv's DCNv1 ``type='DCN'`` is supported."""
    stages = tuple(bool(s) for s in cfg.get("stage_with_dcn", (False, False, False, False)))
    dcn = cfg.get("dcn")
    if dcn is None:
        return None, (False, False, False, False)
    if len(stages) != 4:
        raise ConfigError(
            f"model config: backbone.stage_with_dcn must have 4 entries, got {stages!r}"
        )
    if dcn.get("type") != "DCN":
        raise ConfigError(
            f"model config: backbone.dcn type {dcn.get('type')!r} is not supported; only "
            "type='DCN' (DCNv1, mmcv DeformConv2dPack) is, not the modulated DCNv2 ('DCNv2')"
        )
    unknown = set(dcn) - {"type", "deform_groups", "deformable_groups", "fallback_on_stride"}
    if unknown:
        raise ConfigError(f"model config: backbone.dcn keys {sorted(unknown)} are not supported")
    if cfg.get("conv_cfg") is not None:
        raise ConfigError("model config: backbone.conv_cfg must be None with backbone.dcn")
    # mmcv's DeformConv2d still accepts the old name deformable_groups.
    groups = int(dcn.get("deform_groups", dcn.get("deformable_groups", 1)))
    fallback = bool(dcn.get("fallback_on_stride", False))
    s2, s3, s4, s5 = stages
    return DCNConfig(deform_groups=groups, fallback_on_stride=fallback), (s2, s3, s4, s5)


def build_neck(cfg: dict[str, Any]) -> FPN:
    where = "neck"
    _expect(cfg, "type", ("FPN",), None, where)
    _expect(cfg, "start_level", (0,), 0, where)
    _expect(cfg, "end_level", (-1,), -1, where)
    _expect(cfg, "add_extra_convs", (False,), False, where)
    _expect(cfg, "relu_before_extra_convs", (False,), False, where)
    _expect(cfg, "no_norm_on_lateral", (False,), False, where)
    if cfg.get("norm_cfg") is not None or cfg.get("act_cfg") is not None:
        raise ConfigError("model config: neck.norm_cfg/act_cfg are not supported")
    up = cfg.get("upsample_cfg", {"mode": "nearest"})
    if up.get("mode", "nearest") != "nearest" or "scale_factor" in up:
        raise ConfigError(f"model config: neck.upsample_cfg={up!r} is not supported")
    return FPN(
        list(_get(cfg, "in_channels", where)),
        int(cfg.get("out_channels", 256)),
        int(cfg.get("num_outs", 5)),
    )


def _coder(cfg: dict[str, Any], where: str, default_stds: tuple[float, ...]) -> tuple[tuple, tuple]:
    coder = cfg.get("bbox_coder", {"type": "DeltaXYWHBBoxCoder"})
    _expect(coder, "type", ("DeltaXYWHBBoxCoder",), None, f"{where}.bbox_coder")
    _expect(coder, "add_ctr_clamp", (False,), False, f"{where}.bbox_coder")
    _expect(coder, "clip_border", (True,), True, f"{where}.bbox_coder")
    means = tuple(float(m) for m in coder.get("target_means", (0.0, 0.0, 0.0, 0.0)))
    stds = tuple(float(s) for s in coder.get("target_stds", default_stds))
    return means, stds


def build_rpn_head(cfg: dict[str, Any], test_cfg: dict[str, Any]) -> RPNHead:
    where = "rpn_head"
    _expect(cfg, "type", ("RPNHead",), None, where)
    _expect(cfg, "num_convs", (1,), 1, where)
    gen = cfg.get("anchor_generator", {})
    _expect(gen, "type", ("AnchorGenerator",), "AnchorGenerator", f"{where}.anchor_generator")
    _expect(gen, "center_offset", (0.0, 0), 0.0, f"{where}.anchor_generator")
    strides = gen.get("strides", (4, 8, 16, 32, 64))
    if any(isinstance(s, (list, tuple)) for s in strides):
        strides = [s[0] for s in strides]
    if gen.get("base_sizes") not in (None, list(strides), tuple(strides)):
        raise ConfigError(
            "model config: rpn_head.anchor_generator.base_sizes != strides is not supported"
        )
    if "octave_base_scale" in gen:
        octave, per = gen["octave_base_scale"], gen.get("scales_per_octave", 1)
        scales = tuple(octave * 2 ** (i / per) for i in range(per))
    else:
        scales = tuple(float(s) for s in gen.get("scales", (8,)))
    means, stds = _coder(cfg, where, (1.0, 1.0, 1.0, 1.0))
    nms = test_cfg.get("nms", {"iou_threshold": 0.7})
    rpn_test = RPNTestConfig(
        nms_pre=int(test_cfg.get("nms_pre", 1000)),
        max_per_img=int(test_cfg.get("max_per_img", test_cfg.get("max_num", 1000))),
        iou_threshold=float(nms.get("iou_threshold", 0.7)),
        min_bbox_size=float(test_cfg.get("min_bbox_size", 0)),
    )
    return RPNHead(
        in_channels=int(cfg.get("in_channels", 256)),
        feat_channels=int(cfg.get("feat_channels", 256)),
        strides=tuple(int(s) for s in strides),
        ratios=tuple(float(r) for r in gen.get("ratios", (0.5, 1.0, 2.0))),
        scales=scales,
        target_means=means,
        target_stds=stds,
        test_cfg=rpn_test,
    )


def _roi_extractor(cfg: dict[str, Any], where: str) -> RoIExtractorConfig:
    _expect(cfg, "type", ("SingleRoIExtractor",), None, where)
    layer = cfg.get("roi_layer", {})
    _expect(layer, "type", ("RoIAlign",), None, f"{where}.roi_layer")
    _expect(layer, "pool_mode", ("avg",), "avg", f"{where}.roi_layer")
    return RoIExtractorConfig(
        output_size=int(_get(layer, "output_size", f"{where}.roi_layer")),
        featmap_strides=tuple(int(s) for s in cfg.get("featmap_strides", (4, 8, 16, 32))),
        sampling_ratio=int(layer.get("sampling_ratio", 0)),
        aligned=bool(layer.get("aligned", True)),
        finest_scale=int(cfg.get("finest_scale", 56)),
    )


def build_roi_head(
    cfg: dict[str, Any], test_cfg: dict[str, Any], num_classes: int | None
) -> StandardRoIHead:
    where = "roi_head"
    _expect(cfg, "type", ("StandardRoIHead",), None, where)
    bbox = _get(cfg, "bbox_head", where)
    mask = _get(cfg, "mask_head", where)
    _expect(bbox, "type", ("Shared2FCBBoxHead",), None, f"{where}.bbox_head")
    _expect(bbox, "reg_class_agnostic", (False,), False, f"{where}.bbox_head")
    _check_mask_head(mask, f"{where}.mask_head")
    cfg_classes = int(_get(bbox, "num_classes", f"{where}.bbox_head"))
    if int(mask.get("num_classes", cfg_classes)) != cfg_classes:
        raise ConfigError("model config: bbox_head and mask_head disagree on num_classes")
    if num_classes is not None and num_classes != cfg_classes:
        raise ConfigError(
            f"model config has num_classes={cfg_classes} but {num_classes} class names were given"
        )
    means, stds = _coder(bbox, f"{where}.bbox_head", (0.1, 0.1, 0.2, 0.2))
    rcnn_test = _rcnn_test_cfg(test_cfg)
    bbox_roi = _roi_extractor(_get(cfg, "bbox_roi_extractor", where), f"{where}.bbox_roi_extractor")
    mask_roi = _roi_extractor(_get(cfg, "mask_roi_extractor", where), f"{where}.mask_roi_extractor")
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
    _expect(mask, "type", ("FCNMaskHead",), None, where)
    _expect(mask, "class_agnostic", (False,), False, where)
    _expect(mask, "upsample_cfg", ({"type": "deconv", "scale_factor": 2}, None), None, where)


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
    _expect(cfg, "type", ("CascadeRoIHead",), None, where)
    num_stages = int(_get(cfg, "num_stages", where))
    if num_stages < 1:
        raise ConfigError(f"model config: {where}.num_stages={num_stages} must be >= 1")
    bboxes = _per_stage(_get(cfg, "bbox_head", where), num_stages, f"{where}.bbox_head")
    masks = _per_stage(_get(cfg, "mask_head", where), num_stages, f"{where}.mask_head")
    stage_coders = []
    for i, bbox in enumerate(bboxes):
        w = f"{where}.bbox_head[{i}]"
        _expect(bbox, "type", ("Shared2FCBBoxHead",), None, w)
        _expect(bbox, "reg_class_agnostic", (True,), False, w)
        stage_coders.append(_coder(bbox, w, (0.1, 0.1, 0.2, 0.2)))
    for i, mask in enumerate(masks):
        _check_mask_head(mask, f"{where}.mask_head[{i}]")
    classes = [int(_get(b, "num_classes", f"{where}.bbox_head")) for b in bboxes]
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
        per_stage = _per_stage(_get(cfg, key, where), num_stages, f"{where}.{key}")
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
    bbox = _get(cfg, "bbox_head", where)
    _expect(bbox, "type", ("Shared2FCBBoxHead",), None, f"{where}.bbox_head")
    _expect(bbox, "reg_class_agnostic", (False,), False, f"{where}.bbox_head")
    cfg_classes = int(_get(bbox, "num_classes", f"{where}.bbox_head"))
    if num_classes is not None and num_classes != cfg_classes:
        raise ConfigError(
            f"model config has num_classes={cfg_classes} but {num_classes} class names were given"
        )
    bbox_roi = _roi_extractor(_get(cfg, "bbox_roi_extractor", where), f"{where}.bbox_roi_extractor")
    if int(bbox.get("roi_feat_size", 7)) != bbox_roi.output_size:
        raise ConfigError("model config: bbox_head.roi_feat_size != bbox_roi_extractor output_size")
    means, stds = _coder(bbox, f"{where}.bbox_head", (0.1, 0.1, 0.2, 0.2))
    in_channels = int(bbox.get("in_channels", 256))

    w = f"{where}.mask_roi_extractor"
    ext = _get(cfg, "mask_roi_extractor", where)
    _expect(ext, "type", ("GenericRoIExtractor",), None, w)
    _expect(ext, "aggregation", ("sum", "concat"), "sum", w)
    _expect(ext, "pre_cfg", (None,), None, w)
    _expect(ext, "post_cfg", (None,), None, w)
    layer = ext.get("roi_layer", {})
    _expect(layer, "type", ("SimpleRoIAlign",), None, f"{w}.roi_layer")
    strides = tuple(int(s) for s in ext.get("featmap_strides", (4,)))
    mask_roi = PointRoIExtractorConfig(
        output_size=int(_get(layer, "output_size", f"{w}.roi_layer")),
        featmap_strides=strides,
        aligned=bool(layer.get("aligned", True)),
        concat=ext.get("aggregation", "sum") == "concat",
    )
    feat_channels = in_channels * (len(strides) if mask_roi.concat else 1)
    if int(ext.get("out_channels", feat_channels)) != feat_channels:
        raise ConfigError(f"model config: {w}.out_channels != {feat_channels}")

    w = f"{where}.mask_head"
    mask = _get(cfg, "mask_head", where)
    _expect(mask, "type", ("CoarseMaskHead",), None, w)
    _expect(mask, "class_agnostic", (False,), False, w)
    _expect(mask, "conv_cfg", (None,), None, w)
    _expect(mask, "norm_cfg", (None,), None, w)
    _expect(mask, "conv_kernel_size", (3,), 3, w)
    _expect(mask, "roi_feat_size", (mask_roi.output_size,), mask_roi.output_size, w)
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
    point = _get(cfg, "point_head", where)
    _expect(point, "type", ("MaskPointHead",), None, w)
    _expect(point, "class_agnostic", (False,), False, w)
    _expect(point, "conv_cfg", ({"type": "Conv1d"},), {"type": "Conv1d"}, w)
    _expect(point, "norm_cfg", (None,), None, w)
    _expect(point, "act_cfg", ({"type": "ReLU"},), {"type": "ReLU"}, w)
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
        subdivision_steps=int(_get(test_cfg, "subdivision_steps", "test_cfg.rcnn")),
        subdivision_num_points=int(_get(test_cfg, "subdivision_num_points", "test_cfg.rcnn")),
        scale_factor=int(_get(test_cfg, "scale_factor", "test_cfg.rcnn")),
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


def build_model(
    model_cfg: dict[str, Any],
    num_classes: int | None = None,
    test_cfg: dict[str, Any] | None = None,
) -> MaskRCNN:
    """A :class:`MaskRCNN` in eval mode from mmdet's ``model`` dict (2.x or 3.x syntax); a
    ``CascadeRoIHead`` config gives it a :class:`CascadeRoIHead` (Cascade Mask R-CNN).

    Args:
        model_cfg: the config's ``model`` dict.
        num_classes: if given, must equal the config's ``bbox_head.num_classes``.
        test_cfg: mmdet 2.x configs before 2.12 kept ``test_cfg`` at the top level; pass it here
            when ``model_cfg`` has none.
    """
    # detectron2 / maskrcnn-benchmark imports (cendetect.models.conventions)
    model_cfg, convention = split_convention(model_cfg)
    mtype = model_cfg.get("type")
    if mtype not in SUPPORTED_TYPES:
        raise ConfigError(
            f"model type {mtype!r} is not supported yet (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    tcfg = model_cfg.get("test_cfg") or test_cfg or {}
    roi_cfg = _get(model_cfg, "roi_head", "model")
    roi_type = roi_cfg.get("type")
    if roi_type == "PointRendRoIHead":
        roi_head = build_point_rend_roi_head(roi_cfg, tcfg.get("rcnn", {}), num_classes)
    elif roi_type == "CascadeRoIHead":
        roi_head: StandardRoIHead | CascadeRoIHead = build_cascade_roi_head(
            roi_cfg, tcfg.get("rcnn", {}), num_classes
        )
    else:
        roi_head = build_roi_head(roi_cfg, tcfg.get("rcnn", {}), num_classes)
    model = MaskRCNN(
        backbone=build_backbone(_get(model_cfg, "backbone", "model")),
        neck=build_neck(_get(model_cfg, "neck", "model")),
        rpn_head=build_rpn_head(_get(model_cfg, "rpn_head", "model"), tcfg.get("rpn", {})),
        roi_head=roi_head,
    )
    return apply_convention(model, convention).eval()
