"""A training run's settings (:class:`TrainConfig`) and the mmdetection 2.x config it embeds
in its checkpoints (``meta.config``).

The text is plain ``name = value`` assignments of literals and dicts, which
:func:`cendetect.config_text.parse_config_text` reads back (and mmdetection's ``Config.fromstring``
too). It holds the model (zoo config + mmdet's Mask R-CNN ``train_cfg``), the normalisation and
the test pipeline (the keep-ratio test scale the detector will use).
"""

from __future__ import annotations

import copy
import pprint
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cendetect.train.data import Normalize
from cendetect.zoo import zoo_model_config


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one run (``cendetect train --help`` describes each)."""

    dataset: str
    out: str
    model: str = "mobilenet_v2_fpn"
    classes: tuple[str, ...] | None = None
    iters: int = 3000
    batch_size: int = 2
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 200
    warmup_ratio: float = 0.001
    schedule: str = "cosine"
    steps: tuple[float, ...] = (0.75, 0.9)
    min_lr_ratio: float = 0.01
    grad_clip: float = 35.0
    checkpoint_every: int = 500
    eval_every: int = 1000
    eval_images: int = 50
    train_scale: tuple[int, int] = (512, 768)
    test_scale: int = 640
    hflip: float = 0.5
    crop_prob: float = 0.3
    colour_jitter: float = 0.25
    pretrained: str = "imagenet"
    init_from: str | None = None
    frozen_stages: int | None = None
    resume: bool = False
    workers: int = 1
    device: str = "cpu"
    amp: bool = True
    cpu_bf16: bool = False
    seed: int = 0
    log_every: int = 1
    progress: bool = True


#: mmdet 2.28 Mask R-CNN ``train_cfg`` (configs/_base_/models/mask_rcnn_r50_fpn.py);
#: ``rpn_proposal`` is informational: our training takes proposals with the model's ``test_cfg.rpn``
TRAIN_CFG: dict[str, Any] = {
    "rpn": {
        "assigner": {
            "type": "MaxIoUAssigner",
            "pos_iou_thr": 0.7,
            "neg_iou_thr": 0.3,
            "min_pos_iou": 0.3,
            "match_low_quality": True,
            "ignore_iof_thr": -1,
        },
        "sampler": {
            "type": "RandomSampler",
            "num": 256,
            "pos_fraction": 0.5,
            "neg_pos_ub": -1,
            "add_gt_as_proposals": False,
        },
        "allowed_border": -1,
        "pos_weight": -1,
        "debug": False,
    },
    "rpn_proposal": {
        "nms_pre": 1000,
        "max_per_img": 500,
        "nms": {"type": "nms", "iou_threshold": 0.7},
        "min_bbox_size": 0,
    },
    "rcnn": {
        "assigner": {
            "type": "MaxIoUAssigner",
            "pos_iou_thr": 0.5,
            "neg_iou_thr": 0.5,
            "min_pos_iou": 0.5,
            "match_low_quality": True,
            "ignore_iof_thr": -1,
        },
        "sampler": {
            "type": "RandomSampler",
            "num": 512,
            "pos_fraction": 0.25,
            "neg_pos_ub": -1,
            "add_gt_as_proposals": True,
        },
        "mask_size": 28,
        "pos_weight": -1,
        "debug": False,
    },
}


def with_losses(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The model config with mmdet's loss entries and ``train_cfg`` (what mmdet needs to
    train it; our builder ignores them)."""
    cfg = copy.deepcopy(model_cfg)
    cfg["rpn_head"]["loss_cls"] = {
        "type": "CrossEntropyLoss",
        "use_sigmoid": True,
        "loss_weight": 1.0,
    }
    cfg["rpn_head"]["loss_bbox"] = {"type": "L1Loss", "loss_weight": 1.0}
    bbox = cfg["roi_head"]["bbox_head"]
    if isinstance(bbox, dict):
        bbox["loss_cls"] = {"type": "CrossEntropyLoss", "use_sigmoid": False, "loss_weight": 1.0}
        bbox["loss_bbox"] = {"type": "L1Loss", "loss_weight": 1.0}
    cfg["roi_head"]["mask_head"]["loss_mask"] = {
        "type": "CrossEntropyLoss",
        "use_mask": True,
        "loss_weight": 1.0,
    }
    cfg["train_cfg"] = copy.deepcopy(TRAIN_CFG)
    return cfg


def full_config(
    model_cfg: dict[str, Any],
    classes: Sequence[str],
    test_scale: int,
    train_scale: tuple[int, int],
    norm: Normalize | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An mmdet 2.x config dict: ``model``, ``img_norm_cfg``, ``train_pipeline``,
    ``test_pipeline``, ``data`` (test pipeline), ``classes`` and ``cendetect_train`` (our own
    training settings, for the record)."""
    norm = norm or Normalize()
    img_norm_cfg = {"mean": list(norm.mean), "std": list(norm.std), "to_rgb": norm.to_rgb}
    test_pipeline = [
        {"type": "LoadImageFromFile"},
        {
            "type": "MultiScaleFlipAug",
            "img_scale": (test_scale, test_scale),
            "flip": False,
            "transforms": [
                {"type": "Resize", "keep_ratio": True},
                {"type": "RandomFlip"},
                {"type": "Normalize", **img_norm_cfg},
                {"type": "Pad", "size_divisor": 32},
                {"type": "ImageToTensor", "keys": ["img"]},
                {"type": "Collect", "keys": ["img"]},
            ],
        },
    ]
    train_pipeline = [
        {"type": "LoadImageFromFile"},
        {"type": "LoadAnnotations", "with_bbox": True, "with_mask": True},
        {
            "type": "Resize",
            "img_scale": [(train_scale[0], train_scale[0]), (train_scale[1], train_scale[1])],
            "multiscale_mode": "range",
            "keep_ratio": True,
        },
        {"type": "RandomFlip", "flip_ratio": 0.5},
        {"type": "Normalize", **img_norm_cfg},
        {"type": "Pad", "size_divisor": 32},
        {"type": "DefaultFormatBundle"},
        {"type": "Collect", "keys": ["img", "gt_bboxes", "gt_labels", "gt_masks"]},
    ]
    cfg: dict[str, Any] = {
        "model": with_losses(model_cfg),
        "classes": tuple(classes),
        "img_norm_cfg": img_norm_cfg,
        "train_pipeline": train_pipeline,
        "test_pipeline": test_pipeline,
        "data": {
            "test": {"type": "CocoDataset", "classes": tuple(classes), "pipeline": test_pipeline}
        },
    }
    if extra:
        cfg["cendetect_train"] = extra
    return cfg


def default_config(
    classes: Sequence[str], test_scale: int = 640, train_scale: tuple[int, int] = (512, 768)
) -> dict[str, Any]:
    """The full config of the zoo's ``mobilenet_v2_fpn`` for ``classes``."""
    return full_config(
        zoo_model_config("mobilenet_v2_fpn", len(classes)), classes, test_scale, train_scale
    )


def config_text(cfg: dict[str, Any]) -> str:
    """``name = value`` Python text of a config dict (literals only, stable order)."""
    lines = ["# written by cendetect train (mmdetection 2.x config syntax)"]
    for key, value in cfg.items():
        if not key.isidentifier():
            raise ValueError(f"config key {key!r} is not a Python identifier")
        lines.append(f"{key} = {pprint.pformat(value, width=100, sort_dicts=False)}")
    return "\n".join(lines) + "\n"
