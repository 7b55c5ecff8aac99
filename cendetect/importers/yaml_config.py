"""detectron2 and maskrcnn-benchmark config files (yacs YAML), read as data and applied to an
imported checkpoint.

Both families configure a model with a yacs ``CfgNode``: a tree of upper-case keys over the
family's defaults (detectron2 ``config/defaults.py``, maskrcnn-benchmark
``maskrcnn_benchmark/config/defaults.py``). A training run leaves the whole tree beside its
weights (detectron2's ``DefaultTrainer`` writes ``config.yaml``; maskrcnn-benchmark's
``train_net.py`` writes ``config.yml``); a model-zoo file holds only what differs from the
defaults, and detectron2's may name a parent with ``_BASE_``.

:func:`read_yaml_config` parses such a file with YAML's safe loader (nothing in it is ever
executed) and decodes values the way yacs does (a string that is a Python literal, such as
``"(4, 8, 16)"``, becomes that literal through :func:`ast.literal_eval`). ``_BASE_`` is resolved
only from a file beside the config (a relative path) or, by file name, from the bases cendetect
ships (``importers/bases/``: ``Base-RCNN-FPN.yaml``).

:func:`settings_from_yaml` merges the file over the family's defaults and sorts every key:

* **applied** -- what cendetect reproduces and takes from the file: classes, test score
  threshold, NMS, detections per image, test sizes, input format, pixel mean/std, size
  divisibility, ResNet depth and ``STRIDE_IN_1X1``, anchor sizes and ratios, box-regression
  weights, RPN top-k / NMS / minimum size, pooler resolution, sampling ratio and type;
* **required** -- structure cendetect builds one way only (a ResNet-FPN backbone, the
  standard RPN, box and mask heads, no keypoints, no test-time augmentation, ...): a value other
  than the supported one is refused with the key's name;
* **ignored** -- training-only settings (solver, datasets, data loader, training sizes and
  augmentation, loss weights, sampling of training RoIs) and the sections of heads the model
  does not have (RetinaNet, semantic segmentation, keypoints, cascade stages).

A key in none of these lists is refused too: it may change the computation in a way cendetect
does not know about. :func:`apply_settings` then writes the applied values into the
:class:`~cendetect.importers.common.ImportedCheckpoint` (model config, box convention,
pre-processing) after checking them against the weights.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cendetect.config import PreprocessConfig
from cendetect.errors import ConfigError
from cendetect.importers.common import ImportedCheckpoint
from cendetect.models.conventions import CONVENTION_KEY

__all__ = [
    "YAML_SUFFIXES",
    "FamilySettings",
    "apply_settings",
    "family_of",
    "read_yaml_config",
    "settings_from_yaml",
]

YAML_SUFFIXES = (".yaml", ".yml")
#: folder of the ``_BASE_`` files cendetect ships (looked up by file name)
BASES_DIR = Path(__file__).with_name("bases")
#: how deep ``_BASE_`` chains may go (guards against a file naming itself through others)
_MAX_BASE_DEPTH = 8

_RES = ["res2", "res3", "res4", "res5"]
_P2_P5 = ["p2", "p3", "p4", "p5"]


# ---------------------------------------------------------------------------------------------
# Reading the file


def _decode(value: Any) -> Any:
    """A yacs value: strings that are Python literals become them (yacs ``_decode_cfg_value``);
    tuples become lists so that comparisons do not depend on which the file used."""
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
    if isinstance(value, (list, tuple)):
        return [_decode(v) for v in value]
    return value


def _merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """``child`` over ``base``, recursively for nested dicts (yacs ``merge_from_other_cfg``)."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config {path}: cannot read it: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config {path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config {path}: the top level is a {type(data).__name__}, not a mapping")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"config {path}: top-level key {key!r} is not a string")
    return data


def _base_path(name: str, config: Path) -> Path:
    if "://" in name:
        raise ConfigError(
            f"config {config}: _BASE_ {name!r} is a URL; cendetect reads no file from the "
            "network: save the base beside the config and name it by a relative path"
        )
    beside = (config.parent / os.path.expanduser(name)).resolve()
    if beside.is_file():
        return beside
    shipped = BASES_DIR / Path(name).name
    if shipped.is_file():
        return shipped
    raise ConfigError(
        f"config {config}: _BASE_ {name!r} was not found beside it ({beside}) and is not one of "
        f"the bases cendetect ships ({', '.join(sorted(p.name for p in BASES_DIR.glob('*.yaml')))})"
    )


def read_yaml_config(path: str | os.PathLike[str], _depth: int = 0) -> dict[str, Any]:
    """Parse a detectron2 / maskrcnn-benchmark YAML config as data, ``_BASE_`` merged in.

    Returns:
        The nested key tree, values decoded as yacs decodes them (tuples as lists).

    Raises:
        ConfigError: unreadable or invalid YAML, a top level that is not a mapping, a ``_BASE_``
            that is a URL, cannot be found, or nests deeper than 8 files.
    """
    path = Path(path)
    if _depth > _MAX_BASE_DEPTH:
        raise ConfigError(f"config {path}: _BASE_ files nest more than {_MAX_BASE_DEPTH} deep")
    data = _load_yaml(path)
    base_name = data.pop("_BASE_", None)
    data = _decode(data)
    if base_name is None:
        return data
    if not isinstance(base_name, str):
        raise ConfigError(f"config {path}: _BASE_ must be a file name, got {base_name!r}")
    base = read_yaml_config(_base_path(base_name, path), _depth + 1)
    return _merge(base, data)


def family_of(cfg: Mapping[str, Any]) -> str | None:
    """``'detectron2'``, ``'maskrcnn_benchmark'`` or None from keys only one family has."""
    model = cfg.get("MODEL") if isinstance(cfg.get("MODEL"), Mapping) else {}
    d2 = (
        "VERSION" in cfg
        or "PROPOSAL_GENERATOR" in model
        or "ANCHOR_GENERATOR" in model
        or "PIXEL_MEAN" in model
        or "WEIGHTS" in model
        or any(k in model.get("ROI_HEADS", {}) for k in ("NAME", "NUM_CLASSES"))
    )
    mb = (
        "CONV_BODY" in model.get("BACKBONE", {})
        or "TO_BGR255" in cfg.get("INPUT", {})
        or "ANCHOR_SIZES" in model.get("RPN", {})
        or "WEIGHT" in model
        or "PATHS_CATALOG" in cfg
        or any(k in model.get("ROI_HEADS", {}) for k in ("SCORE_THRESH", "DETECTIONS_PER_IMG"))
    )
    if d2 and not mb:
        return "detectron2"
    if mb and not d2:
        return "maskrcnn_benchmark"
    return None


# ---------------------------------------------------------------------------------------------
# The keys of each family: defaults, and what cendetect does with each

#: the default of a required key that is checked only when a file sets it (its name moved
#: between releases of the family; the weights' shapes hold the value anyway)
_IF_GIVEN = object()


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


# detectron2 ``config/defaults.py`` (VERSION 2) for every key cendetect applies or requires,
# with the values it supports for the required ones.
_D2_APPLY: dict[str, Any] = {
    "MODEL.PIXEL_MEAN": [103.530, 116.280, 123.675],
    "MODEL.PIXEL_STD": [1.0, 1.0, 1.0],
    "MODEL.RESNETS.DEPTH": 50,
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RESNETS.NORM": "FrozenBN",
    "MODEL.ANCHOR_GENERATOR.SIZES": [[32, 64, 128, 256, 512]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.PROPOSAL_GENERATOR.MIN_SIZE": 0,
    "MODEL.RPN.BBOX_REG_WEIGHTS": [1.0, 1.0, 1.0, 1.0],
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 1000,
    "MODEL.RPN.NMS_THRESH": 0.7,
    "MODEL.ROI_HEADS.NUM_CLASSES": 80,
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST": 0.05,
    "MODEL.ROI_HEADS.NMS_THRESH_TEST": 0.5,
    "MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS": [10.0, 10.0, 5.0, 5.0],
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_TYPE": "ROIAlignV2",
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_MASK_HEAD.POOLER_TYPE": "ROIAlignV2",
    "INPUT.FORMAT": "BGR",
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "TEST.DETECTIONS_PER_IMAGE": 100,
}
# (default, supported values); a default outside the supported set means a file must say it
_D2_REQUIRE: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "VERSION": (2, (2,)),
    "MODEL.META_ARCHITECTURE": ("GeneralizedRCNN", ("GeneralizedRCNN",)),
    "MODEL.MASK_ON": (False, (True,)),
    "MODEL.KEYPOINT_ON": (False, (False,)),
    "MODEL.LOAD_PROPOSALS": (False, (False,)),
    "MODEL.BACKBONE.NAME": ("build_resnet_backbone", ("build_resnet_fpn_backbone",)),
    "MODEL.RESNETS.OUT_FEATURES": (["res4"], (_RES,)),
    "MODEL.RESNETS.NUM_GROUPS": (1, (1,)),
    "MODEL.RESNETS.WIDTH_PER_GROUP": (64, (64,)),
    "MODEL.RESNETS.RES5_DILATION": (1, (1,)),
    "MODEL.RESNETS.RES2_OUT_CHANNELS": (256, (256,)),
    "MODEL.RESNETS.STEM_OUT_CHANNELS": (64, (64,)),
    "MODEL.RESNETS.DEFORM_ON_PER_STAGE": ([False] * 4, ([False] * 4,)),
    "MODEL.FPN.IN_FEATURES": ([], (_RES,)),
    "MODEL.FPN.OUT_CHANNELS": (256, (256,)),
    "MODEL.FPN.NORM": ("", ("",)),
    "MODEL.FPN.FUSE_TYPE": ("sum", ("sum",)),
    "MODEL.PROPOSAL_GENERATOR.NAME": ("RPN", ("RPN",)),
    "MODEL.ANCHOR_GENERATOR.NAME": ("DefaultAnchorGenerator", ("DefaultAnchorGenerator",)),
    "MODEL.ANCHOR_GENERATOR.OFFSET": (0.0, (0.0,)),
    "MODEL.RPN.HEAD_NAME": ("StandardRPNHead", ("StandardRPNHead",)),
    "MODEL.RPN.IN_FEATURES": (["res4"], ([*_P2_P5, "p6"],)),
    "MODEL.RPN.CONV_DIMS": ([-1], ([-1], [256])),
    "MODEL.ROI_HEADS.NAME": ("Res5ROIHeads", ("StandardROIHeads",)),
    "MODEL.ROI_HEADS.IN_FEATURES": (["res4"], (_P2_P5,)),
    "MODEL.ROI_BOX_HEAD.NAME": ("", ("FastRCNNConvFCHead",)),
    "MODEL.ROI_BOX_HEAD.NUM_FC": (0, (2,)),
    "MODEL.ROI_BOX_HEAD.FC_DIM": (1024, (1024,)),
    "MODEL.ROI_BOX_HEAD.NUM_CONV": (0, (0,)),
    "MODEL.ROI_BOX_HEAD.NORM": ("", ("",)),
    "MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG": (False, (False,)),
    "MODEL.ROI_BOX_HEAD.USE_SIGMOID_CE": (False, (False,)),
    "MODEL.ROI_MASK_HEAD.NAME": ("MaskRCNNConvUpsampleHead", ("MaskRCNNConvUpsampleHead",)),
    "MODEL.ROI_MASK_HEAD.NUM_CONV": (0, (4,)),
    "MODEL.ROI_MASK_HEAD.CONV_DIM": (256, (256,)),
    "MODEL.ROI_MASK_HEAD.NORM": ("", ("",)),
    "MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK": (False, (False,)),
    "TEST.AUG.ENABLED": (False, (False,)),
}
# whole sections or single keys that never change what a Mask R-CNN computes at test time
_D2_IGNORE = (
    "DATASETS.", "DATALOADER.", "SOLVER.", "GLOBAL.", "OUTPUT_DIR", "SEED", "CUDNN_BENCHMARK",
    "VIS_PERIOD", "FLOAT32_PRECISION", "MODEL.WEIGHTS", "MODEL.DEVICE",
    "MODEL.BACKBONE.FREEZE_AT", "INPUT.MIN_SIZE_TRAIN", "INPUT.MIN_SIZE_TRAIN_SAMPLING",
    "INPUT.MAX_SIZE_TRAIN", "INPUT.RANDOM_FLIP", "INPUT.CROP.", "INPUT.MASK_FORMAT",
    "MODEL.ANCHOR_GENERATOR.ANGLES",  # rotated anchors only
    "MODEL.RESNETS.DEFORM_MODULATED", "MODEL.RESNETS.DEFORM_NUM_GROUPS",  # DEFORM_ON all False
    "MODEL.RPN.BOUNDARY_THRESH", "MODEL.RPN.IOU_THRESHOLDS", "MODEL.RPN.IOU_LABELS",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "MODEL.RPN.POSITIVE_FRACTION",
    "MODEL.RPN.BBOX_REG_LOSS_TYPE", "MODEL.RPN.BBOX_REG_LOSS_WEIGHT", "MODEL.RPN.SMOOTH_L1_BETA",
    "MODEL.RPN.LOSS_WEIGHT", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "MODEL.RPN.POST_NMS_TOPK_TRAIN",
    "MODEL.ROI_HEADS.IOU_THRESHOLDS", "MODEL.ROI_HEADS.IOU_LABELS",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.ROI_HEADS.PROPOSAL_APPEND_GT", "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_TYPE",
    "MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT", "MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA",
    "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES", "MODEL.ROI_BOX_HEAD.USE_FED_LOSS",
    "MODEL.ROI_BOX_HEAD.FED_LOSS_FREQ_WEIGHT_POWER", "MODEL.ROI_BOX_HEAD.FED_LOSS_NUM_CLASSES",
    "MODEL.ROI_BOX_HEAD.CONV_DIM",  # NUM_CONV is 0
    # heads this model does not have (META_ARCHITECTURE, ROI_HEADS.NAME, KEYPOINT_ON say so)
    "MODEL.ROI_KEYPOINT_HEAD.", "MODEL.ROI_BOX_CASCADE_HEAD.", "MODEL.SEM_SEG_HEAD.",
    "MODEL.PANOPTIC_FPN.", "MODEL.RETINANET.",
    "TEST.AUG.", "TEST.EVAL_PERIOD", "TEST.EXPECTED_RESULTS", "TEST.KEYPOINT_OKS_SIGMAS",
    "TEST.PRECISE_BN.",
)  # fmt: skip

# maskrcnn-benchmark ``maskrcnn_benchmark/config/defaults.py`` (master)
_MB_APPLY: dict[str, Any] = {
    "INPUT.MIN_SIZE_TEST": 800,
    "INPUT.MAX_SIZE_TEST": 1333,
    "INPUT.PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
    "INPUT.PIXEL_STD": [1.0, 1.0, 1.0],
    "INPUT.TO_BGR255": True,
    "DATALOADER.SIZE_DIVISIBILITY": 0,
    "MODEL.BACKBONE.CONV_BODY": "R-50-C4",
    "MODEL.RESNETS.STRIDE_IN_1X1": True,
    "MODEL.RPN.ANCHOR_SIZES": [32, 64, 128, 256, 512],
    "MODEL.RPN.ANCHOR_STRIDE": [16],
    "MODEL.RPN.ASPECT_RATIOS": [0.5, 1.0, 2.0],
    "MODEL.RPN.PRE_NMS_TOP_N_TEST": 6000,
    "MODEL.RPN.POST_NMS_TOP_N_TEST": 1000,
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TEST": 2000,
    "MODEL.RPN.NMS_THRESH": 0.7,
    "MODEL.RPN.MIN_SIZE": 0,
    "MODEL.ROI_HEADS.BBOX_REG_WEIGHTS": [10.0, 10.0, 5.0, 5.0],
    "MODEL.ROI_HEADS.SCORE_THRESH": 0.05,
    "MODEL.ROI_HEADS.NMS": 0.5,
    "MODEL.ROI_HEADS.DETECTIONS_PER_IMG": 100,
    "MODEL.ROI_BOX_HEAD.NUM_CLASSES": 81,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_BOX_HEAD.POOLER_SCALES": [1.0 / 16],
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO": 0,
    "MODEL.ROI_MASK_HEAD.POOLER_SCALES": [1.0 / 16],
    "MODEL.ROI_MASK_HEAD.RESOLUTION": 14,
}
_FPN_SCALES = [0.25, 0.125, 0.0625, 0.03125]
_MB_REQUIRE: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "MODEL.META_ARCHITECTURE": ("GeneralizedRCNN", ("GeneralizedRCNN",)),
    "MODEL.MASK_ON": (False, (True,)),
    "MODEL.RPN_ONLY": (False, (False,)),
    "MODEL.RETINANET_ON": (False, (False,)),
    "MODEL.KEYPOINT_ON": (False, (False,)),
    "MODEL.CLS_AGNOSTIC_BBOX_REG": (False, (False,)),
    "MODEL.BACKBONE.USE_GN": (False, (False,)),
    "MODEL.BACKBONE.OUT_CHANNELS": (_IF_GIVEN, (256,)),
    "MODEL.FPN.USE_GN": (False, (False,)),
    "MODEL.FPN.USE_RELU": (False, (False,)),
    "MODEL.RPN.USE_FPN": (False, (True,)),
    "MODEL.RPN.RPN_HEAD": ("SingleConvRPNHead", ("SingleConvRPNHead",)),
    "MODEL.ROI_HEADS.USE_FPN": (False, (True,)),
    "MODEL.ROI_BOX_HEAD.FEATURE_EXTRACTOR": (
        "ResNet50Conv5ROIFeatureExtractor", ("FPN2MLPFeatureExtractor",)
    ),
    "MODEL.ROI_BOX_HEAD.PREDICTOR": ("FastRCNNPredictor", ("FPNPredictor",)),
    "MODEL.ROI_BOX_HEAD.MLP_HEAD_DIM": (1024, (1024,)),
    "MODEL.ROI_BOX_HEAD.USE_GN": (False, (False,)),
    "MODEL.ROI_BOX_HEAD.DILATION": (1, (1,)),
    "MODEL.ROI_MASK_HEAD.FEATURE_EXTRACTOR": (
        "ResNet50Conv5ROIFeatureExtractor", ("MaskRCNNFPNFeatureExtractor",)
    ),
    "MODEL.ROI_MASK_HEAD.PREDICTOR": ("MaskRCNNC4Predictor", ("MaskRCNNC4Predictor",)),
    "MODEL.ROI_MASK_HEAD.CONV_LAYERS": ([256] * 4, ([256] * 4,)),
    "MODEL.ROI_MASK_HEAD.SHARE_BOX_FEATURE_EXTRACTOR": (True, (False,)),
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS": (False, (False,)),
    "MODEL.ROI_MASK_HEAD.DILATION": (1, (1,)),
    "MODEL.ROI_MASK_HEAD.USE_GN": (False, (False,)),
    "MODEL.RESNETS.NUM_GROUPS": (1, (1,)),
    "MODEL.RESNETS.WIDTH_PER_GROUP": (64, (64,)),
    "MODEL.RESNETS.TRANS_FUNC": (
        "BottleneckWithFixedBatchNorm", ("BottleneckWithFixedBatchNorm",)
    ),
    "MODEL.RESNETS.STEM_FUNC": ("StemWithFixedBatchNorm", ("StemWithFixedBatchNorm",)),
    "MODEL.RESNETS.RES5_DILATION": (1, (1,)),
    "MODEL.RESNETS.BACKBONE_OUT_CHANNELS": (_IF_GIVEN, (256,)),
    "MODEL.RESNETS.RES2_OUT_CHANNELS": (256, (256,)),
    "MODEL.RESNETS.STEM_OUT_CHANNELS": (64, (64,)),
    "MODEL.RESNETS.STAGE_WITH_DCN": ([False] * 4, ([False] * 4,)),
    "TEST.BBOX_AUG.ENABLED": (False, (False,)),
    "DTYPE": ("float32", ("float32",)),
}  # fmt: skip
_MB_IGNORE = (
    "DATASETS.", "SOLVER.", "OUTPUT_DIR", "PATHS_CATALOG", "AMP_VERBOSE",
    "DATALOADER.NUM_WORKERS", "DATALOADER.ASPECT_RATIO_GROUPING", "MODEL.WEIGHT", "MODEL.DEVICE",
    "MODEL.BACKBONE.FREEZE_CONV_BODY_AT", "INPUT.MIN_SIZE_TRAIN", "INPUT.MAX_SIZE_TRAIN",
    "INPUT.BRIGHTNESS", "INPUT.CONTRAST", "INPUT.SATURATION", "INPUT.HUE",
    "INPUT.VERTICAL_FLIP_PROB_TRAIN", "INPUT.HORIZONTAL_FLIP_PROB_TRAIN",
    "MODEL.GROUP_NORM.",  # no GroupNorm anywhere (the USE_GN keys are required False)
    "MODEL.RESNETS.WITH_MODULATED_DCN", "MODEL.RESNETS.DEFORMABLE_GROUPS",  # no DCN stage
    "MODEL.RPN.STRADDLE_THRESH", "MODEL.RPN.FG_IOU_THRESHOLD", "MODEL.RPN.BG_IOU_THRESHOLD",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "MODEL.RPN.POSITIVE_FRACTION",
    "MODEL.RPN.PRE_NMS_TOP_N_TRAIN", "MODEL.RPN.POST_NMS_TOP_N_TRAIN",
    "MODEL.RPN.FPN_POST_NMS_TOP_N_TRAIN", "MODEL.RPN.FPN_POST_NMS_PER_BATCH",  # training only
    "MODEL.ROI_HEADS.FG_IOU_THRESHOLD", "MODEL.ROI_HEADS.BG_IOU_THRESHOLD",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.ROI_BOX_HEAD.CONV_HEAD_DIM", "MODEL.ROI_BOX_HEAD.NUM_STACKED_CONVS",  # conv heads
    "MODEL.ROI_MASK_HEAD.MLP_HEAD_DIM",  # the MLP mask extractor only
    # the COCODemo Masker's threshold is its own 0.5; this one is only read when the model
    # pastes masks itself, which POSTPROCESS_MASKS (required False) turns off
    "MODEL.ROI_MASK_HEAD.POSTPROCESS_MASKS_THRESHOLD",
    "MODEL.RETINANET.", "MODEL.ROI_KEYPOINT_HEAD.", "MODEL.FBNET.", "MODEL.FCOS.",
    "TEST.BBOX_AUG.", "TEST.EXPECTED_RESULTS", "TEST.EXPECTED_RESULTS_SIGMA_TOL",
    "TEST.IMS_PER_BATCH", "TEST.DETECTIONS_PER_IMG",  # RetinaNet / FCOS only
)  # fmt: skip

_SCHEMAS = {
    "detectron2": (_D2_APPLY, _D2_REQUIRE, _D2_IGNORE),
    "maskrcnn_benchmark": (_MB_APPLY, _MB_REQUIRE, _MB_IGNORE),
}


def _ignored(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) for p in prefixes)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


# ---------------------------------------------------------------------------------------------
# What the file sets


@dataclass(frozen=True)
class FamilySettings:
    """The test-time settings a detectron2 / maskrcnn-benchmark config applies.

    Sizes are in pixels of the network input; ``num_classes`` excludes the background (for
    maskrcnn-benchmark, whose ``NUM_CLASSES`` counts it, one less than the file says).
    """

    path: str
    family: str
    num_classes: int
    depth: int
    stride_in_1x1: bool
    score_thr: float
    nms_thr: float
    max_per_img: int
    preprocess: PreprocessConfig
    anchor_sizes: tuple[float, ...]
    anchor_ratios: tuple[float, ...]
    rpn_weights: tuple[float, float, float, float]
    rcnn_weights: tuple[float, float, float, float]
    rpn_nms_pre: int
    rpn_max_per_img: int
    rpn_nms_thr: float
    rpn_min_bbox_size: float
    box_pool: tuple[int, int]  # (resolution, sampling ratio)
    mask_pool: tuple[int, int]
    aligned: bool
    #: every applied key with the value in effect (the file's, else the family default)
    applied: tuple[tuple[str, Any], ...] = ()


def _fail(path: str, key: str, value: Any, why: str) -> ConfigError:
    return ConfigError(f"config {path}: {key} = {value!r}: {why}")


def _number_list(path: str, key: str, value: Any, n: int | None = None) -> tuple[float, ...]:
    if not isinstance(value, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
    ):
        raise _fail(path, key, value, "expected a list of numbers")
    if n is not None and len(value) != n:
        raise _fail(path, key, value, f"expected {n} numbers")
    return tuple(float(v) for v in value)


class _Values:
    """Typed reads of the effective keys, each error naming the file and the key."""

    def __init__(self, values: dict[str, Any], path: str) -> None:
        self.values, self.path = values, path

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def int(self, key: str, low: int = 0) -> int:
        value = self.values[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise _fail(self.path, key, value, f"expected an integer >= {low}")
        return value

    def prob(self, key: str) -> float:
        value = self.values[key]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
            raise _fail(self.path, key, value, "expected a number in [0, 1]")
        return float(value)

    def nums(self, key: str, n: int | None = None) -> tuple[float, ...]:
        return _number_list(self.path, key, self.values[key], n)

    def quad(self, key: str) -> tuple[float, float, float, float]:
        a, b, c, d = self.nums(key, 4)
        return (a, b, c, d)

    def triple(self, key: str) -> tuple[float, float, float]:
        a, b, c = self.nums(key, 3)
        return (a, b, c)

    def pool(self, head: str, low_res: int = 1) -> tuple[int, int]:
        """(POOLER_RESOLUTION, POOLER_SAMPLING_RATIO) of ``MODEL.{head}``."""
        return (
            self.int(f"MODEL.{head}.POOLER_RESOLUTION", low_res),
            self.int(f"MODEL.{head}.POOLER_SAMPLING_RATIO"),
        )


def _effective(cfg: Mapping[str, Any], family: str, path: str) -> _Values:
    """Every applied and required key with its value in effect; refuses unknown keys and
    required keys set to values cendetect does not build."""
    apply, require, ignore = _SCHEMAS[family]
    given = _flatten(cfg)
    unknown = [k for k in given if k not in apply and k not in require and not _ignored(k, ignore)]
    if unknown:
        raise ConfigError(
            f"config {path}: {family} key(s) cendetect does not know: "
            f"{', '.join(unknown[:10])}; they may change what the model computes, so the config "
            "is refused (docs/checkpoints.md lists the keys read)"
        )
    out = {**apply, **{k: v[0] for k, v in require.items()}}
    out.update({k: v for k, v in given.items() if k in apply or k in require})
    for key, (_, supported) in require.items():
        if out[key] is _IF_GIVEN:
            continue
        if not any(_same(out[key], s) for s in supported):
            shown = " or ".join(repr(s) for s in supported)
            where = "the file says" if key in given else "the family default; the file is silent"
            raise ConfigError(
                f"config {path}: {key} = {out[key]!r} ({where}); cendetect builds only {shown} "
                "(a Mask R-CNN with a ResNet-FPN backbone and the standard heads)"
            )
    return _Values(out, path)


def _pooler_type(path: str, key: str, value: Any) -> bool:
    if value == "ROIAlignV2":
        return True
    if value == "ROIAlign":
        return False
    raise _fail(path, key, value, "cendetect pools with ROIAlign or ROIAlignV2 only")


def _d2(cfg: Mapping[str, Any], path: str) -> FamilySettings:
    e = _effective(cfg, "detectron2", path)
    norm = e["MODEL.RESNETS.NORM"]
    if norm not in ("FrozenBN", "BN", "SyncBN", "naiveSyncBN"):
        # BN and SyncBN in eval mode compute FrozenBN's affine map with the same epsilon
        raise _fail(path, "MODEL.RESNETS.NORM", norm, "cendetect supports FrozenBN (or BN/SyncBN)")
    sizes = e["MODEL.ANCHOR_GENERATOR.SIZES"]
    if not (
        isinstance(sizes, list)
        and len(sizes) == 5
        and all(isinstance(s, list) and len(s) == 1 for s in sizes)
    ):
        raise _fail(
            path, "MODEL.ANCHOR_GENERATOR.SIZES", sizes,
            "cendetect's RPN has one anchor size per level, p2..p6 ([[32], [64], ...])",
        )  # fmt: skip
    anchor_sizes = _number_list(path, "MODEL.ANCHOR_GENERATOR.SIZES", [s[0] for s in sizes])
    ratios_all = e["MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS"]
    if not isinstance(ratios_all, list) or not ratios_all:
        raise _fail(path, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", ratios_all, "expected a list")
    if not all(isinstance(r, list) for r in ratios_all):
        ratios_all = [ratios_all]
    if any(not _same(r, ratios_all[0]) for r in ratios_all):
        raise _fail(
            path, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", ratios_all,
            "cendetect uses the same ratios on every level",
        )  # fmt: skip
    ratios = _number_list(path, "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", ratios_all[0])
    box_aligned, mask_aligned = (
        _pooler_type(path, f"MODEL.{h}.POOLER_TYPE", e[f"MODEL.{h}.POOLER_TYPE"])
        for h in ("ROI_BOX_HEAD", "ROI_MASK_HEAD")
    )
    if box_aligned != mask_aligned:
        raise ConfigError(
            f"config {path}: ROI_BOX_HEAD.POOLER_TYPE and ROI_MASK_HEAD.POOLER_TYPE differ; "
            "cendetect uses one RoIAlign flavour for both heads"
        )
    fmt = e["INPUT.FORMAT"]
    if fmt not in ("BGR", "RGB"):
        raise _fail(path, "INPUT.FORMAT", fmt, "cendetect feeds BGR or RGB images only")
    if e.int("INPUT.MIN_SIZE_TEST") == 0:
        raise _fail(path, "INPUT.MIN_SIZE_TEST", 0, "testing without a resize is not supported")
    pre = PreprocessConfig(
        img_scale=(e.int("INPUT.MAX_SIZE_TEST", 1), e.int("INPUT.MIN_SIZE_TEST", 1)),
        keep_ratio=True,
        mean=e.triple("MODEL.PIXEL_MEAN"),
        std=e.triple("MODEL.PIXEL_STD"),
        to_rgb=fmt == "RGB",
        size_divisor=32,  # the FPN backbone's size_divisibility
        resize="detectron2",
    )
    return FamilySettings(
        path=path,
        family="detectron2",
        num_classes=e.int("MODEL.ROI_HEADS.NUM_CLASSES", 1),
        depth=e.int("MODEL.RESNETS.DEPTH", 1),
        stride_in_1x1=bool(e["MODEL.RESNETS.STRIDE_IN_1X1"]),
        score_thr=e.prob("MODEL.ROI_HEADS.SCORE_THRESH_TEST"),
        nms_thr=e.prob("MODEL.ROI_HEADS.NMS_THRESH_TEST"),
        max_per_img=e.int("TEST.DETECTIONS_PER_IMAGE", 1),
        preprocess=pre,
        anchor_sizes=anchor_sizes,
        anchor_ratios=ratios,
        rpn_weights=e.quad("MODEL.RPN.BBOX_REG_WEIGHTS"),
        rcnn_weights=e.quad("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS"),
        rpn_nms_pre=e.int("MODEL.RPN.PRE_NMS_TOPK_TEST", 1),
        rpn_max_per_img=e.int("MODEL.RPN.POST_NMS_TOPK_TEST", 1),
        rpn_nms_thr=e.prob("MODEL.RPN.NMS_THRESH"),
        # detectron2 keeps proposals with width and height > MIN_SIZE, as mmdet's
        # min_bbox_size does
        rpn_min_bbox_size=float(e.int("MODEL.PROPOSAL_GENERATOR.MIN_SIZE")),
        box_pool=e.pool("ROI_BOX_HEAD"),
        mask_pool=e.pool("ROI_MASK_HEAD"),
        aligned=box_aligned,
        applied=tuple((k, e[k]) for k in _D2_APPLY),
    )


_MB_BODIES = {"R-50-FPN": 50, "R-101-FPN": 101, "R-152-FPN": 152}


def _mb(cfg: Mapping[str, Any], path: str) -> FamilySettings:
    e = _effective(cfg, "maskrcnn_benchmark", path)
    body = e["MODEL.BACKBONE.CONV_BODY"]
    if body not in _MB_BODIES:
        raise _fail(
            path, "MODEL.BACKBONE.CONV_BODY", body,
            f"cendetect builds {', '.join(_MB_BODIES)} (a C4 or RetinaNet body is another model)",
        )  # fmt: skip
    if e.nums("MODEL.RPN.ANCHOR_STRIDE") != (4.0, 8.0, 16.0, 32.0, 64.0):
        raise _fail(
            path, "MODEL.RPN.ANCHOR_STRIDE", e["MODEL.RPN.ANCHOR_STRIDE"],
            "an FPN RPN has (4, 8, 16, 32, 64)",
        )  # fmt: skip
    for key in ("MODEL.ROI_BOX_HEAD.POOLER_SCALES", "MODEL.ROI_MASK_HEAD.POOLER_SCALES"):
        if not _same(e[key], _FPN_SCALES):
            raise _fail(path, key, e[key], f"an FPN pooler has {_FPN_SCALES}")
    pre_n = e.int("MODEL.RPN.PRE_NMS_TOP_N_TEST", 1)
    post_n = e.int("MODEL.RPN.POST_NMS_TOP_N_TEST", 1)
    if post_n < pre_n:
        # it keeps POST_NMS_TOP_N per level after that level's NMS; with POST >= PRE that cut
        # never removes anything, which is the only case cendetect's RPN reproduces
        raise _fail(
            path, "MODEL.RPN.POST_NMS_TOP_N_TEST", post_n,
            f"below PRE_NMS_TOP_N_TEST ({pre_n}): a per-level cut after NMS that cendetect "
            "does not make",
        )  # fmt: skip
    if e["MODEL.RPN.MIN_SIZE"] != 0:
        # it keeps boxes with (x2 - x1 + 1) >= MIN_SIZE; only 0 (keep every box) maps exactly
        raise _fail(path, "MODEL.RPN.MIN_SIZE", e["MODEL.RPN.MIN_SIZE"], "only 0 is supported")
    mask_pool = e.pool("ROI_MASK_HEAD")
    if e["MODEL.ROI_MASK_HEAD.RESOLUTION"] != 2 * mask_pool[0]:
        raise _fail(
            path, "MODEL.ROI_MASK_HEAD.RESOLUTION", e["MODEL.ROI_MASK_HEAD.RESOLUTION"],
            f"the mask head's deconvolution doubles POOLER_RESOLUTION ({mask_pool[0]})",
        )  # fmt: skip
    mean, std = e.triple("INPUT.PIXEL_MEAN"), e.triple("INPUT.PIXEL_STD")
    bgr255 = e["INPUT.TO_BGR255"]
    if not isinstance(bgr255, bool):
        raise _fail(path, "INPUT.TO_BGR255", bgr255, "expected true or false")
    if not bgr255:
        # its demo then feeds RGB in [0, 1]: (x / 255 - m) / s, which cendetect computes on
        # 0-255 pixels as (x - 255 m) / (255 s); the two differ by float rounding only
        mean = (255.0 * mean[0], 255.0 * mean[1], 255.0 * mean[2])
        std = (255.0 * std[0], 255.0 * std[1], 255.0 * std[2])
    pre = PreprocessConfig(
        img_scale=(e.int("INPUT.MAX_SIZE_TEST", 1), e.int("INPUT.MIN_SIZE_TEST", 1)),
        keep_ratio=True,
        mean=mean,
        std=std,
        to_rgb=not bgr255,
        size_divisor=max(e.int("DATALOADER.SIZE_DIVISIBILITY"), 1),
        resize="maskrcnn_benchmark",
    )
    return FamilySettings(
        path=path,
        family="maskrcnn_benchmark",
        num_classes=e.int("MODEL.ROI_BOX_HEAD.NUM_CLASSES", 2) - 1,
        depth=_MB_BODIES[body],
        stride_in_1x1=bool(e["MODEL.RESNETS.STRIDE_IN_1X1"]),
        score_thr=e.prob("MODEL.ROI_HEADS.SCORE_THRESH"),
        nms_thr=e.prob("MODEL.ROI_HEADS.NMS"),
        max_per_img=e.int("MODEL.ROI_HEADS.DETECTIONS_PER_IMG", 1),
        preprocess=pre,
        anchor_sizes=e.nums("MODEL.RPN.ANCHOR_SIZES", 5),
        anchor_ratios=e.nums("MODEL.RPN.ASPECT_RATIOS"),
        rpn_weights=(1.0, 1.0, 1.0, 1.0),  # fixed in its RPN (no config key)
        rcnn_weights=e.quad("MODEL.ROI_HEADS.BBOX_REG_WEIGHTS"),
        rpn_nms_pre=pre_n,
        rpn_max_per_img=e.int("MODEL.RPN.FPN_POST_NMS_TOP_N_TEST", 1),
        rpn_nms_thr=e.prob("MODEL.RPN.NMS_THRESH"),
        rpn_min_bbox_size=-1.0,  # MIN_SIZE 0 with +1 sizes keeps every box: no filter
        box_pool=e.pool("ROI_BOX_HEAD"),
        mask_pool=mask_pool,
        aligned=False,  # its ROIAlign has no half-pixel offset
        applied=tuple((k, e[k]) for k in _MB_APPLY),
    )


def settings_from_yaml(
    cfg: Mapping[str, Any], family: str | None = None, path: str = "<config>"
) -> FamilySettings:
    """The test-time settings of a parsed config (:func:`read_yaml_config`).

    Args:
        cfg: the key tree.
        family: ``'detectron2'`` or ``'maskrcnn_benchmark'``; None decides from the keys.
        path: the file, for messages.

    Raises:
        ConfigError: the family cannot be told or contradicts ``family``; an unknown key; a
            required key with an unsupported value; an applied key with a malformed value.
    """
    found = family_of(cfg)
    if family is None:
        if found is None:
            raise ConfigError(
                f"config {path}: cannot tell whether this is a detectron2 or a "
                "maskrcnn-benchmark config; pass --checkpoint-format"
            )
        family = found
    elif found is not None and found != family:
        raise ConfigError(
            f"config {path}: the keys are {found}'s but the checkpoint is {family}'s; give the "
            "config the checkpoint was trained with"
        )
    if family not in _SCHEMAS:
        raise ValueError(f"family {family!r} is not one of {sorted(_SCHEMAS)}")
    return _d2(cfg, path) if family == "detectron2" else _mb(cfg, path)


def apply_settings(imported: ImportedCheckpoint, s: FamilySettings) -> ImportedCheckpoint:
    """``imported`` with the config's settings written into its model config, box convention
    and pre-processing.

    Raises:
        ConfigError: the config's family, class count or ResNet depth contradicts the weights.
    """
    where = f"config {s.path}"
    if s.family != imported.family:
        raise ConfigError(
            f"{where} is a {s.family} config but {imported.path} is a {imported.family} checkpoint"
        )
    if s.num_classes != imported.num_classes:
        key = (
            "MODEL.ROI_HEADS.NUM_CLASSES"
            if s.family == "detectron2"
            else "MODEL.ROI_BOX_HEAD.NUM_CLASSES (background included)"
        )
        shown = s.num_classes if s.family == "detectron2" else s.num_classes + 1
        raise ConfigError(
            f"{where}: {key} = {shown} but the checkpoint {imported.path} has "
            f"{imported.num_classes} classes"
        )
    if s.depth != imported.depth:
        raise ConfigError(
            f"{where}: ResNet depth {s.depth} but the checkpoint {imported.path} has a "
            f"ResNet-{imported.depth}"
        )
    cfg = copy.deepcopy(imported.model_config)
    cfg["backbone"]["style"] = "caffe" if s.stride_in_1x1 else "pytorch"
    anchor = cfg["rpn_head"]["anchor_generator"]
    anchor["ratios"] = list(s.anchor_ratios)
    conv = dict(cfg[CONVENTION_KEY])
    conv.update(
        anchor_sizes=tuple(s.anchor_sizes),
        anchor_ratios=tuple(s.anchor_ratios),
        rpn_weights=tuple(s.rpn_weights),
        rcnn_weights=tuple(s.rcnn_weights),
    )
    cfg[CONVENTION_KEY] = conv
    roi = cfg["roi_head"]
    pools = {"bbox_roi_extractor": s.box_pool, "mask_roi_extractor": s.mask_pool}
    for name, (res, ratio) in pools.items():
        layer = roi[name]["roi_layer"]
        layer.update(output_size=res, sampling_ratio=ratio, aligned=s.aligned)
    roi["bbox_head"]["roi_feat_size"] = s.box_pool[0]
    test = cfg["test_cfg"]
    test["rpn"].update(
        nms_pre=s.rpn_nms_pre,
        max_per_img=s.rpn_max_per_img,
        nms=dict(type="nms", iou_threshold=s.rpn_nms_thr),
        min_bbox_size=s.rpn_min_bbox_size,
    )
    test["rcnn"].update(
        score_thr=s.score_thr,
        nms=dict(type="nms", iou_threshold=s.nms_thr),
        max_per_img=s.max_per_img,
    )
    return dataclasses.replace(
        imported, model_config=cfg, preprocess=s.preprocess, stride_in_1x1=s.stride_in_1x1
    )
