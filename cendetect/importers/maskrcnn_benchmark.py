"""maskrcnn-benchmark ``e2e_mask_rcnn_R_{50,101}_FPN`` checkpoints mapped onto our model.

Sources read (facebookresearch/maskrcnn-benchmark, master): ``modeling/backbone/resnet.py``
(``stem.conv1``/``stem.bn1``, ``layer{1..4}.{i}.conv{1..3}``/``bn{1..3}``, ``downsample.0/1``,
``STRIDE_IN_1X1``), ``layers/batch_norm.py`` (``FrozenBatchNorm2d``: ``weight *
running_var.rsqrt()``, **no epsilon**), ``modeling/backbone/fpn.py`` (``fpn_inner{1..4}``,
``fpn_layer{1..4}``), ``modeling/rpn/rpn.py`` (``head.conv``, ``cls_logits``, ``bbox_pred``),
``modeling/rpn/anchor_generator.py`` (``cell_anchors`` saved as buffers, Detectron's
``generate_anchors``), ``modeling/roi_heads/box_head/roi_box_feature_extractors.py``
(``fc6``, ``fc7``), ``roi_box_predictors.py`` (``FPNPredictor``: ``cls_score`` over
``num_classes`` including background at **index 0**, ``bbox_pred`` over all of them),
``modeling/roi_heads/mask_head/`` (``mask_fcn1..4``, ``conv5_mask``, ``mask_fcn_logits``),
``config/defaults.py`` + ``configs/e2e_mask_rcnn_R_50_FPN_1x.yaml`` (BGR 0-255, ``PIXEL_MEAN``
[102.9801, 115.9465, 122.7717], std 1, ``POOLER_SAMPLING_RATIO: 2``, ``MIN_SIZE_TEST`` 800,
``MAX_SIZE_TEST`` 1333, ``SIZE_DIVISIBILITY`` 32). The ``module.`` prefix of DataParallel
training is removed by :func:`cendetect.checkpoint.load_checkpoint`.
"""

from __future__ import annotations

import torch

from cendetect.config import PreprocessConfig
from cendetect.errors import CheckpointError
from cendetect.importers.common import (
    COCO_CLASSES,
    ImportedCheckpoint,
    KeyReader,
    count_blocks,
    mask_rcnn_config,
    resnet_depth,
)
from cendetect.models.conventions import BoxConvention, cell_anchors

FAMILY = "maskrcnn_benchmark"
PIXEL_MEAN = (102.9801, 115.9465, 122.7717)
DEFAULT_STRIDE_IN_1X1 = True
CONVENTION = BoxConvention(
    family=FAMILY, anchors="legacy", offset=1.0, legacy_levels=True, norm_eps=0.0,
    norm_affine=True,
)  # fmt: skip
_BN = ("weight", "bias", "running_mean", "running_var")


def looks_like(keys: list[str]) -> bool:
    """The key layout of a maskrcnn-benchmark GeneralizedRCNN (``module.`` already removed)."""
    return any(k.startswith("backbone.body.") for k in keys) and any(
        k.startswith("roi_heads.box.") for k in keys
    )


def _conv_bn(r: KeyReader, out: dict[str, torch.Tensor], conv: str, bn: str, dst: str) -> None:
    conv_dst, bn_dst = dst.split("|")
    out[f"{conv_dst}.weight"] = r.take(f"{conv}.weight")
    for name in _BN:
        out[f"{bn_dst}.{name}"] = r.take(f"{bn}.{name}")
    out[f"{bn_dst}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def _copy(r: KeyReader, out: dict[str, torch.Tensor], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = r.take(f"{src}.weight")
    out[f"{dst}.bias"] = r.take(f"{src}.bias")


def _check_cell_anchors(r: KeyReader) -> None:
    """``rpn.anchor_generator.cell_anchors.{i}`` must equal Detectron's ``generate_anchors``."""
    ours = cell_anchors(CONVENTION, [4, 8, 16, 32, 64])
    for i in range(len(ours)):
        key = f"rpn.anchor_generator.cell_anchors.{i}"
        if key not in r.source:
            continue
        theirs = r.take(key).float()
        r.ignored.append(key)
        if theirs.shape != ours[i].shape or not torch.equal(theirs, ours[i]):
            raise CheckpointError(
                f"checkpoint {r.path}: {key} = {theirs.tolist()} is not Detectron's "
                f"generate_anchors for stride {4 * 2**i} ({ours[i].tolist()}); checkpoints "
                "trained with other RPN.ANCHOR_SIZES / ASPECT_RATIOS are not supported",
                path=r.path,
            )


def convert(
    state_dict: dict[str, torch.Tensor], path: str, stride_in_1x1: bool | None = None
) -> ImportedCheckpoint:
    """Map a maskrcnn-benchmark Mask R-CNN state dict onto ours, moving background last.

    ``cls_score`` rows ``[bg, c1..cC]`` become ``[c1..cC, bg]``; the background's 4 rows of
    ``bbox_pred`` and channel 0 of ``mask_fcn_logits`` are dropped (never used at test time).
    ``stride_in_1x1``: ``MODEL.RESNETS.STRIDE_IN_1X1`` (not stored; None = True, the default).

    Raises:
        CheckpointError: a key is missing, left over, or the shapes describe another model.
    """
    r = KeyReader({k: v for k, v in state_dict.items()}, path, FAMILY)
    keys = list(r.source)
    body = "backbone.body."
    blocks = count_blocks(keys, body, ["layer1", "layer2", "layer3", "layer4"])
    depth = resnet_depth(blocks, path)
    out: dict[str, torch.Tensor] = {}
    _conv_bn(r, out, f"{body}stem.conv1", f"{body}stem.bn1", "backbone.conv1|backbone.bn1")
    for s, n in enumerate(blocks):
        for b in range(n):
            src, dst = f"{body}layer{s + 1}.{b}", f"backbone.layer{s + 1}.{b}"
            for j in (1, 2, 3):
                _conv_bn(r, out, f"{src}.conv{j}", f"{src}.bn{j}", f"{dst}.conv{j}|{dst}.bn{j}")
            if b == 0:
                d = f"{dst}.downsample"
                _conv_bn(r, out, f"{src}.downsample.0", f"{src}.downsample.1", f"{d}.0|{d}.1")
    for i in range(4):
        _copy(r, out, f"backbone.fpn.fpn_inner{i + 1}", f"neck.lateral_convs.{i}.conv")
        _copy(r, out, f"backbone.fpn.fpn_layer{i + 1}", f"neck.fpn_convs.{i}.conv")
    _copy(r, out, "rpn.head.conv", "rpn_head.rpn_conv")
    _copy(r, out, "rpn.head.cls_logits", "rpn_head.rpn_cls")
    _copy(r, out, "rpn.head.bbox_pred", "rpn_head.rpn_reg")
    _check_cell_anchors(r)
    box = "roi_heads.box."
    _copy(r, out, f"{box}feature_extractor.fc6", "roi_head.bbox_head.shared_fcs.0")
    _copy(r, out, f"{box}feature_extractor.fc7", "roi_head.bbox_head.shared_fcs.1")
    cls_w, cls_b = (
        r.take(f"{box}predictor.cls_score.weight"),
        r.take(f"{box}predictor.cls_score.bias"),
    )
    reg_w, reg_b = (
        r.take(f"{box}predictor.bbox_pred.weight"),
        r.take(f"{box}predictor.bbox_pred.bias"),
    )
    mask = "roi_heads.mask."
    for i in range(4):
        _copy(
            r, out, f"{mask}feature_extractor.mask_fcn{i + 1}", f"roi_head.mask_head.convs.{i}.conv"
        )
    _copy(r, out, f"{mask}predictor.conv5_mask", "roi_head.mask_head.upsample")
    logit_w = r.take(f"{mask}predictor.mask_fcn_logits.weight")
    logit_b = r.take(f"{mask}predictor.mask_fcn_logits.bias")
    r.finish()

    total = int(cls_w.shape[0])  # maskrcnn-benchmark NUM_CLASSES, background included
    num_classes = total - 1
    if num_classes < 1 or reg_w.shape[0] != 4 * total or logit_w.shape[0] != total:
        raise CheckpointError(
            f"checkpoint {path}: cls_score has {total} classes (background included) but "
            f"bbox_pred has {reg_w.shape[0]} rows (expected {4 * total}) and mask_fcn_logits "
            f"{logit_w.shape[0]} channels (expected {total}); class-agnostic heads are not "
            "supported",
            path=path,
        )
    order = list(range(1, total)) + [0]  # background from first to last
    out["roi_head.bbox_head.fc_cls.weight"] = cls_w[order]
    out["roi_head.bbox_head.fc_cls.bias"] = cls_b[order]
    out["roi_head.bbox_head.fc_reg.weight"] = reg_w[4:]
    out["roi_head.bbox_head.fc_reg.bias"] = reg_b[4:]
    out["roi_head.mask_head.conv_logits.weight"] = logit_w[1:]
    out["roi_head.mask_head.conv_logits.bias"] = logit_b[1:]
    out = {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
    ignored = [
        *r.ignored,
        f"{box}predictor.bbox_pred[0:4] (background)",
        f"{mask}predictor.mask_fcn_logits[0] (background)",
    ]
    s1x1 = DEFAULT_STRIDE_IN_1X1 if stride_in_1x1 is None else bool(stride_in_1x1)
    cfg = mask_rcnn_config(
        depth=depth,
        num_classes=num_classes,
        stride_in_1x1=s1x1,
        sampling_ratio=2,  # ROI_BOX_HEAD / ROI_MASK_HEAD.POOLER_SAMPLING_RATIO in the FPN configs
        aligned=False,  # maskrcnn-benchmark ROIAlign has no half-pixel offset
        # RPN.MIN_SIZE 0 with +1 sizes keeps every clipped box: no filter at all
        rpn_min_bbox_size=-1.0,
        convention=CONVENTION,
    )
    pre = PreprocessConfig(
        img_scale=(1333, 800),  # MAX_SIZE_TEST, MIN_SIZE_TEST of its defaults
        keep_ratio=True,
        mean=PIXEL_MEAN,
        std=(1.0, 1.0, 1.0),
        to_rgb=False,
        size_divisor=32,
        resize="maskrcnn_benchmark",
    )
    return ImportedCheckpoint(
        path=path,
        family=FAMILY,
        state_dict=out,
        model_config=cfg,
        preprocess=pre,
        num_classes=num_classes,
        classes=COCO_CLASSES if num_classes == len(COCO_CLASSES) else None,
        depth=depth,
        stride_in_1x1=s1x1,
        ignored=tuple(ignored),
    )
