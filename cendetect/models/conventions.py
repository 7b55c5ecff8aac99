"""The ``box_convention`` entry of a model config: run a Mask R-CNN with detectron2's or
maskrcnn-benchmark's test-time arithmetic instead of mmdetection's.

An mmdet ``model`` dict describes the architecture; :mod:`cendetect.importers` writes one for
each imported checkpoint and adds a cendetect-only key, ``box_convention``, holding what mmdet's
config language cannot say (see :mod:`cendetect.models.detectron` for the formulas)::

    box_convention=dict(
        family="maskrcnn_benchmark",       # or "detectron2"
        anchors="legacy",                  # or "detectron2"
        anchor_sizes=(32, 64, 128, 256, 512),
        anchor_ratios=(0.5, 1.0, 2.0),
        offset=1.0,                        # box size +1 (coder, NMS, clip); 0.0 for detectron2
        rpn_weights=(1.0, 1.0, 1.0, 1.0),
        rcnn_weights=(10.0, 10.0, 5.0, 5.0),
        scale_clamp=4.135166556742356,     # log(1000 / 16)
        legacy_levels=True,                # +1 areas in the FPN level mapping
        norm_eps=0.0,                      # FrozenBatchNorm epsilon of the backbone
        norm_affine=True,                  # BN as x * scale + shift (its FrozenBatchNorm2d)
    )

:func:`cendetect.models.build.build_model` strips the key, builds the mmdet model, then calls
:func:`apply_convention`, so the module tree and state-dict names stay mmdet's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from cendetect.errors import ConfigError
from cendetect.models.detectron import (
    SCALE_CLAMP,
    detectron2_cell_anchors,
    legacy_cell_anchors,
)
from cendetect.models.layers import FrozenBatchNorm2d

M = TypeVar("M", bound=nn.Module)
CONVENTION_KEY = "box_convention"
FAMILIES = ("detectron2", "maskrcnn_benchmark")


@dataclass(frozen=True)
class BoxConvention:
    """Test-time conventions of a detectron-family checkpoint (see the module docstring)."""

    family: str
    anchors: str
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    offset: float = 0.0
    rpn_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    rcnn_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    scale_clamp: float = SCALE_CLAMP
    legacy_levels: bool = False
    norm_eps: float = 1e-5
    norm_affine: bool = False

    def to_config(self) -> dict[str, Any]:
        """The plain-dict form stored under ``model['box_convention']``."""
        return asdict(self)


def _convention(value: Any) -> BoxConvention:
    where = f"model config: {CONVENTION_KEY}"
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a dict, got {type(value).__name__}")
    known = set(BoxConvention.__dataclass_fields__)
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown} (known: {sorted(known)})")
    try:
        conv = BoxConvention(
            family=str(value["family"]),
            anchors=str(value["anchors"]),
            anchor_sizes=tuple(
                float(s) for s in value.get("anchor_sizes", (32, 64, 128, 256, 512))
            ),
            anchor_ratios=tuple(float(r) for r in value.get("anchor_ratios", (0.5, 1.0, 2.0))),
            offset=float(value.get("offset", 0.0)),
            rpn_weights=tuple(float(w) for w in value.get("rpn_weights", (1, 1, 1, 1))),
            rcnn_weights=tuple(float(w) for w in value.get("rcnn_weights", (10, 10, 5, 5))),
            scale_clamp=float(value.get("scale_clamp", SCALE_CLAMP)),
            legacy_levels=bool(value.get("legacy_levels", False)),
            norm_eps=float(value.get("norm_eps", 1e-5)),
            norm_affine=bool(value.get("norm_affine", False)),
        )
    except KeyError as exc:
        raise ConfigError(f"{where}: {exc.args[0]!r} is missing") from None
    if conv.family not in FAMILIES:
        raise ConfigError(f"{where}.family={conv.family!r} is not one of {FAMILIES}")
    if conv.anchors not in ("detectron2", "legacy"):
        raise ConfigError(f"{where}.anchors={conv.anchors!r} is not 'detectron2' or 'legacy'")
    if conv.offset not in (0.0, 1.0):
        raise ConfigError(f"{where}.offset={conv.offset!r} must be 0 or 1")
    if len(conv.rpn_weights) != 4 or len(conv.rcnn_weights) != 4:
        raise ConfigError(f"{where}: rpn_weights and rcnn_weights need 4 values each")
    return conv


def split_convention(model_cfg: dict[str, Any]) -> tuple[dict[str, Any], BoxConvention | None]:
    """``model_cfg`` without its ``box_convention`` entry, and that entry parsed (or None)."""
    if CONVENTION_KEY not in model_cfg:
        return model_cfg, None
    rest = {k: v for k, v in model_cfg.items() if k != CONVENTION_KEY}
    return rest, _convention(model_cfg[CONVENTION_KEY])


def cell_anchors(conv: BoxConvention, strides: list[int]) -> torch.Tensor:
    """``Tensor[L, A, 4]`` float32 base anchors of each level, one size per level."""
    if len(conv.anchor_sizes) != len(strides):
        raise ConfigError(
            f"model config: {CONVENTION_KEY}.anchor_sizes has {len(conv.anchor_sizes)} sizes "
            f"but the RPN has {len(strides)} levels (strides {strides})"
        )
    ratios = list(conv.anchor_ratios)
    if conv.anchors == "legacy":
        levels = [legacy_cell_anchors(s, z, ratios) for s, z in zip(strides, conv.anchor_sizes)]
    else:
        levels = [detectron2_cell_anchors(z, ratios) for z in conv.anchor_sizes]
    return torch.stack(levels)


def apply_convention(model: M, conv: BoxConvention | None) -> M:
    """Switch a freshly built ``MaskRCNN`` (StandardRoIHead) to ``conv``; no-op for None.

    Raises:
        ConfigError: the model has another RoI head, or its anchors do not fit ``conv``.
    """
    if conv is None:
        return model
    from cendetect.models.roi_heads import StandardRoIHead
    from cendetect.models.rpn import RPNHead

    rpn, roi = getattr(model, "rpn_head", None), getattr(model, "roi_head", None)
    if not isinstance(rpn, RPNHead) or type(roi) is not StandardRoIHead:
        raise ConfigError(
            f"model config: {CONVENTION_KEY} needs an RPNHead and a StandardRoIHead, got "
            f"{type(rpn).__name__} and {type(roi).__name__}"
        )
    for m in model.backbone.modules():
        if isinstance(m, FrozenBatchNorm2d):
            m.eps = conv.norm_eps
            m.affine_form = conv.norm_affine
    anchors = cell_anchors(conv, list(rpn.strides))
    if anchors.shape != rpn.base_anchors.shape:
        raise ConfigError(
            f"model config: {CONVENTION_KEY} gives {anchors.shape[1]} anchors per location but "
            f"the RPN head has {rpn.base_anchors.shape[1]}"
        )
    rpn.base_anchors.copy_(anchors)
    rpn.detectron_coder = True
    rpn.coder_weights = list(conv.rpn_weights)
    rpn.coder_offset = conv.offset
    rpn.scale_clamp = conv.scale_clamp
    rpn.nms_offset = conv.offset
    roi.detectron_coder = True
    roi.coder_weights = list(conv.rcnn_weights)
    roi.coder_offset = conv.offset
    roi.scale_clamp = conv.scale_clamp
    roi.bbox_roi_extractor.legacy_levels = conv.legacy_levels
    roi.mask_roi_extractor.legacy_levels = conv.legacy_levels
    return model
