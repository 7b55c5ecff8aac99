"""Build our modules from an mmdetection model config (the ``model`` dict of a config file).

Only what changes the test-time computation is read; training-only keys (losses, assigners,
samplers, ``init_cfg``) are ignored. Anything we would compute differently from mmdetection is
refused with a :class:`~cendetect.config.ConfigError` naming the key, never silently ignored.
"""

from __future__ import annotations

from typing import Any

from cendetect.config import ConfigError
from cendetect.models.fpn import FPN
from cendetect.models.mask_rcnn import MaskRCNN
from cendetect.models.resnet import ResNet
from cendetect.models.roi_heads import RCNNTestConfig, RoIExtractorConfig, StandardRoIHead
from cendetect.models.rpn import RPNHead, RPNTestConfig

SUPPORTED_TYPES = ("MaskRCNN",)


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


def build_backbone(cfg: dict[str, Any]) -> ResNet:
    where = "backbone"
    _expect(cfg, "type", ("ResNet",), None, where)
    if cfg.get("dcn") is not None:
        raise ConfigError(
            "model config: backbone.dcn (deformable convolution) is not supported yet"
        )
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
    )


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
    _expect(mask, "type", ("FCNMaskHead",), None, f"{where}.mask_head")
    _expect(mask, "class_agnostic", (False,), False, f"{where}.mask_head")
    _expect(
        mask,
        "upsample_cfg",
        ({"type": "deconv", "scale_factor": 2}, None),
        None,
        f"{where}.mask_head",
    )
    cfg_classes = int(_get(bbox, "num_classes", f"{where}.bbox_head"))
    if int(mask.get("num_classes", cfg_classes)) != cfg_classes:
        raise ConfigError("model config: bbox_head and mask_head disagree on num_classes")
    if num_classes is not None and num_classes != cfg_classes:
        raise ConfigError(
            f"model config has num_classes={cfg_classes} but {num_classes} class names were given"
        )
    means, stds = _coder(bbox, f"{where}.bbox_head", (0.1, 0.1, 0.2, 0.2))
    nms = test_cfg.get("nms", {"iou_threshold": 0.5})
    if nms.get("type", "nms") != "nms":
        raise ConfigError(
            f"model config: test_cfg.rcnn.nms type {nms.get('type')!r} is not supported"
        )
    rcnn_test = RCNNTestConfig(
        score_thr=float(test_cfg.get("score_thr", 0.05)),
        iou_threshold=float(nms.get("iou_threshold", 0.5)),
        max_per_img=int(test_cfg.get("max_per_img", 100)),
        mask_thr_binary=float(test_cfg.get("mask_thr_binary", 0.5)),
    )
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


def build_model(
    model_cfg: dict[str, Any],
    num_classes: int | None = None,
    test_cfg: dict[str, Any] | None = None,
) -> MaskRCNN:
    """A :class:`MaskRCNN` in eval mode from mmdet's ``model`` dict (2.x or 3.x syntax).

    Args:
        model_cfg: the config's ``model`` dict.
        num_classes: if given, must equal the config's ``bbox_head.num_classes``.
        test_cfg: mmdet 2.x configs before 2.12 kept ``test_cfg`` at the top level; pass it here
            when ``model_cfg`` has none.
    """
    mtype = model_cfg.get("type")
    if mtype not in SUPPORTED_TYPES:
        raise ConfigError(
            f"model type {mtype!r} is not supported yet (supported: {', '.join(SUPPORTED_TYPES)})"
        )
    tcfg = model_cfg.get("test_cfg") or test_cfg or {}
    model = MaskRCNN(
        backbone=build_backbone(_get(model_cfg, "backbone", "model")),
        neck=build_neck(_get(model_cfg, "neck", "model")),
        rpn_head=build_rpn_head(_get(model_cfg, "rpn_head", "model"), tcfg.get("rpn", {})),
        roi_head=build_roi_head(
            _get(model_cfg, "roi_head", "model"), tcfg.get("rcnn", {}), num_classes
        ),
    )
    return model.eval()
