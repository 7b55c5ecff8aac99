"""Write test checkpoints with detectron2's and maskrcnn-benchmark's exact key layouts.

The names are spelled out from their sources (see cendetect/importers/*.py docstrings), written
here independently of the importers: each function turns one of our (mmdet-named) state dicts
into the other codebase's layout, so that importing the result must give back the original.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

_BN = ("weight", "bias", "running_mean", "running_var")
_WB = ("weight", "bias")


def _blocks(sd: dict[str, torch.Tensor], stage: int) -> int:
    head = f"backbone.layer{stage}."
    return len({k[len(head) :].split(".")[0] for k in sd if k.startswith(head)})


def to_detectron2(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our Mask R-CNN R-50/101-FPN state dict with detectron2 GeneralizedRCNN names."""
    out: dict[str, torch.Tensor] = {}
    bu = "backbone.bottom_up"
    out[f"{bu}.stem.conv1.weight"] = sd["backbone.conv1.weight"]
    for n in _BN:
        out[f"{bu}.stem.conv1.norm.{n}"] = sd[f"backbone.bn1.{n}"]
    for s in range(1, 5):
        for b in range(_blocks(sd, s)):
            ours, theirs = f"backbone.layer{s}.{b}", f"{bu}.res{s + 1}.{b}"
            if b == 0:
                out[f"{theirs}.shortcut.weight"] = sd[f"{ours}.downsample.0.weight"]
                for n in _BN:
                    out[f"{theirs}.shortcut.norm.{n}"] = sd[f"{ours}.downsample.1.{n}"]
            for j in (1, 2, 3):
                out[f"{theirs}.conv{j}.weight"] = sd[f"{ours}.conv{j}.weight"]
                for n in _BN:
                    out[f"{theirs}.conv{j}.norm.{n}"] = sd[f"{ours}.bn{j}.{n}"]
    for i in range(4):
        for n in _WB:
            out[f"backbone.fpn_lateral{i + 2}.{n}"] = sd[f"neck.lateral_convs.{i}.conv.{n}"]
            out[f"backbone.fpn_output{i + 2}.{n}"] = sd[f"neck.fpn_convs.{i}.conv.{n}"]
    pairs = {
        "proposal_generator.rpn_head.conv": "rpn_head.rpn_conv",
        "proposal_generator.rpn_head.objectness_logits": "rpn_head.rpn_cls",
        "proposal_generator.rpn_head.anchor_deltas": "rpn_head.rpn_reg",
        "roi_heads.box_head.fc1": "roi_head.bbox_head.shared_fcs.0",
        "roi_heads.box_head.fc2": "roi_head.bbox_head.shared_fcs.1",
        "roi_heads.box_predictor.cls_score": "roi_head.bbox_head.fc_cls",
        "roi_heads.box_predictor.bbox_pred": "roi_head.bbox_head.fc_reg",
        "roi_heads.mask_head.deconv": "roi_head.mask_head.upsample",
        "roi_heads.mask_head.predictor": "roi_head.mask_head.conv_logits",
    }
    pairs.update(
        {
            f"roi_heads.mask_head.mask_fcn{i + 1}": f"roi_head.mask_head.convs.{i}.conv"
            for i in range(4)
        }
    )
    for theirs, ours in pairs.items():
        for n in _WB:
            out[f"{theirs}.{n}"] = sd[f"{ours}.{n}"]
    return out


def to_maskrcnn_benchmark(sd: dict[str, torch.Tensor], bg_seed: int = 7) -> dict[str, torch.Tensor]:
    """Our state dict with maskrcnn-benchmark names, background at index 0 of the predictors
    (its box-regression and mask rows are random: they are never used at test time)."""
    g = torch.Generator().manual_seed(bg_seed)
    out: dict[str, torch.Tensor] = {}
    body = "backbone.body"
    out[f"{body}.stem.conv1.weight"] = sd["backbone.conv1.weight"]
    for n in _BN:
        out[f"{body}.stem.bn1.{n}"] = sd[f"backbone.bn1.{n}"]
    for s in range(1, 5):
        for b in range(_blocks(sd, s)):
            p = f"backbone.layer{s}.{b}"
            q = f"{body}.layer{s}.{b}"
            for j in (1, 2, 3):
                out[f"{q}.conv{j}.weight"] = sd[f"{p}.conv{j}.weight"]
                for n in _BN:
                    out[f"{q}.bn{j}.{n}"] = sd[f"{p}.bn{j}.{n}"]
            if b == 0:
                out[f"{q}.downsample.0.weight"] = sd[f"{p}.downsample.0.weight"]
                for n in _BN:
                    out[f"{q}.downsample.1.{n}"] = sd[f"{p}.downsample.1.{n}"]
    for i in range(4):
        for n in _WB:
            out[f"backbone.fpn.fpn_inner{i + 1}.{n}"] = sd[f"neck.lateral_convs.{i}.conv.{n}"]
            out[f"backbone.fpn.fpn_layer{i + 1}.{n}"] = sd[f"neck.fpn_convs.{i}.conv.{n}"]
    pairs = {
        "rpn.head.conv": "rpn_head.rpn_conv",
        "rpn.head.cls_logits": "rpn_head.rpn_cls",
        "rpn.head.bbox_pred": "rpn_head.rpn_reg",
        "roi_heads.box.feature_extractor.fc6": "roi_head.bbox_head.shared_fcs.0",
        "roi_heads.box.feature_extractor.fc7": "roi_head.bbox_head.shared_fcs.1",
        "roi_heads.mask.predictor.conv5_mask": "roi_head.mask_head.upsample",
    }
    for i in range(4):
        pairs[f"roi_heads.mask.feature_extractor.mask_fcn{i + 1}"] = (
            f"roi_head.mask_head.convs.{i}.conv"
        )
    for theirs, ours in pairs.items():
        for n in _WB:
            out[f"{theirs}.{n}"] = sd[f"{ours}.{n}"]
    for n in _WB:
        cls = sd[f"roi_head.bbox_head.fc_cls.{n}"]  # ours: classes then background
        out[f"roi_heads.box.predictor.cls_score.{n}"] = torch.cat([cls[-1:], cls[:-1]])
        reg = sd[f"roi_head.bbox_head.fc_reg.{n}"]
        bg = torch.randn((4, *reg.shape[1:]), generator=g)
        out[f"roi_heads.box.predictor.bbox_pred.{n}"] = torch.cat([bg, reg])
        logits = sd[f"roi_head.mask_head.conv_logits.{n}"]
        bg = torch.randn((1, *logits.shape[1:]), generator=g)
        out[f"roi_heads.mask.predictor.mask_fcn_logits.{n}"] = torch.cat([bg, logits])
    return out


#: Detectron ``generate_anchors`` for FPN strides 4..64, sizes 32..512, ratios (0.5, 1, 2),
#: computed by hand from the algorithm in maskrcnn_benchmark/modeling/rpn/anchor_generator.py
#: (reference window (0, 0, s-1, s-1), rounded ratio sizes, inclusive corners). Stride 4 is the
#: ``rpn.anchor_generator.cell_anchors.0`` of every e2e_*_FPN checkpoint.
LEGACY_P2_ANCHORS = [
    [-22.0, -10.0, 25.0, 13.0],
    [-14.0, -14.0, 17.0, 17.0],
    [-10.0, -22.0, 13.0, 25.0],
]


def save_detectron2_pkl(sd: dict[str, torch.Tensor], path: Path, protocol: int = 4) -> Path:
    """A model-zoo style ``.pkl``: ``{"model": {name: ndarray}, "__author__": ...}``."""
    model = {k: v.numpy().copy() for k, v in sd.items()}
    obj = {"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=protocol)
    return path


def save_detectron2_pth(sd: dict[str, torch.Tensor], path: Path, legacy: bool = False) -> Path:
    """A training ``model_final.pth``: ``{"model", "optimizer", "scheduler", "iteration"}``."""
    obj = {
        "model": dict(sd),
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.02, "params": [0, 1]}]},
        "scheduler": {"last_epoch": 89999, "base_lrs": [0.02]},
        "iteration": 89999,
    }
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path


def save_maskrcnn_benchmark_pth(sd: dict[str, torch.Tensor], path: Path) -> Path:
    """A DataParallel-trained file: every key under ``module.``, plus the anchor buffers."""
    model = {f"module.{k}": v for k, v in sd.items()}
    anchors = _legacy_anchors()
    for i, a in enumerate(anchors):
        model[f"module.rpn.anchor_generator.cell_anchors.{i}"] = a
    torch.save({"model": model, "iteration": 90000}, path)
    return path


def _legacy_anchors() -> list[torch.Tensor]:
    # an independent numpy transcription of generate_anchors (sizes 32 * 2**i, strides 4 * 2**i)
    out = []
    for i in range(5):
        stride, size = 4 * 2**i, 32 * 2**i
        w = h = float(stride)
        ctr = (stride - 1) / 2.0
        rows = []
        for ratio in (0.5, 1.0, 2.0):
            ws = np.round(np.sqrt(w * h / ratio))
            hs = np.round(ws * ratio)
            ws, hs = ws * size / stride, hs * size / stride
            rows.append(
                [ctr - (ws - 1) / 2, ctr - (hs - 1) / 2, ctr + (ws - 1) / 2, ctr + (hs - 1) / 2]
            )
        out.append(torch.tensor(rows, dtype=torch.float32))
    return out
