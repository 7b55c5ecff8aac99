"""Build our modules from an mmdetection model config (the ``model`` dict of a config file).

Only what changes the test-time computation is read; training-only keys (losses, assigners,
samplers, ``init_cfg``) are ignored. Anything we would compute differently from mmdetection is
refused with a :class:`~cendetect.config.ConfigError` naming the key, never silently ignored.
"""

from __future__ import annotations

from typing import Any

from cendetect.config import ConfigError
from cendetect.models.build_heads import (
    build_cascade_roi_head,
    build_point_rend_roi_head,
    build_roi_head,
)
from cendetect.models.cascade import CascadeRoIHead
from cendetect.models.config_keys import box_coder, expect_value, get_key
from cendetect.models.conventions import apply_convention, split_convention
from cendetect.models.dcn import DCNConfig
from cendetect.models.fpn import FPN
from cendetect.models.mask_rcnn import MaskRCNN
from cendetect.models.mobilenet_v2 import MobileNetV2, build_mobilenet_v2
from cendetect.models.resnet import ResNet
from cendetect.models.roi_heads import StandardRoIHead
from cendetect.models.rpn import RPNHead, RPNTestConfig

SUPPORTED_TYPES = ("MaskRCNN", "CascadeRCNN", "PointRend")


def build_backbone(cfg: dict[str, Any]) -> ResNet | MobileNetV2:
    where = "backbone"
    if cfg.get("type") == "MobileNetV2":
        return build_mobilenet_v2(cfg)
    expect_value(cfg, "type", ("ResNet", "MobileNetV2"), None, where)
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
    expect_value(cfg, "num_stages", (4,), 4, where)
    expect_value(cfg, "deep_stem", (False,), False, where)
    expect_value(cfg, "avg_down", (False,), False, where)
    expect_value(cfg, "strides", ((1, 2, 2, 2), [1, 2, 2, 2]), (1, 2, 2, 2), where)
    expect_value(cfg, "dilations", ((1, 1, 1, 1), [1, 1, 1, 1]), (1, 1, 1, 1), where)
    return ResNet(
        depth=int(get_key(cfg, "depth", where)),
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
    expect_value(cfg, "type", ("FPN",), None, where)
    expect_value(cfg, "start_level", (0,), 0, where)
    expect_value(cfg, "end_level", (-1,), -1, where)
    expect_value(cfg, "add_extra_convs", (False,), False, where)
    expect_value(cfg, "relu_before_extra_convs", (False,), False, where)
    expect_value(cfg, "no_norm_on_lateral", (False,), False, where)
    if cfg.get("norm_cfg") is not None or cfg.get("act_cfg") is not None:
        raise ConfigError("model config: neck.norm_cfg/act_cfg are not supported")
    up = cfg.get("upsample_cfg", {"mode": "nearest"})
    if up.get("mode", "nearest") != "nearest" or "scale_factor" in up:
        raise ConfigError(f"model config: neck.upsample_cfg={up!r} is not supported")
    return FPN(
        list(get_key(cfg, "in_channels", where)),
        int(cfg.get("out_channels", 256)),
        int(cfg.get("num_outs", 5)),
    )


def build_rpn_head(cfg: dict[str, Any], test_cfg: dict[str, Any]) -> RPNHead:
    where = "rpn_head"
    expect_value(cfg, "type", ("RPNHead",), None, where)
    expect_value(cfg, "num_convs", (1,), 1, where)
    gen = cfg.get("anchor_generator", {})
    expect_value(gen, "type", ("AnchorGenerator",), "AnchorGenerator", f"{where}.anchor_generator")
    expect_value(gen, "center_offset", (0.0, 0), 0.0, f"{where}.anchor_generator")
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
    means, stds = box_coder(cfg, where, (1.0, 1.0, 1.0, 1.0))
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
    roi_cfg = get_key(model_cfg, "roi_head", "model")
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
        backbone=build_backbone(get_key(model_cfg, "backbone", "model")),
        neck=build_neck(get_key(model_cfg, "neck", "model")),
        rpn_head=build_rpn_head(get_key(model_cfg, "rpn_head", "model"), tcfg.get("rpn", {})),
        roi_head=roi_head,
    )
    return apply_convention(model, convention).eval()
