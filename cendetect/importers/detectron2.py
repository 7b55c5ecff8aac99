"""detectron2 Mask R-CNN R-50/R-101 FPN checkpoints (``model_final_*.pkl`` or a training
``model_final.pth``) mapped onto our mmdet-named model.

Sources read (facebookresearch/detectron2): ``modeling/backbone/resnet.py`` (``BasicStem``,
``BottleneckBlock``: ``conv1..3`` each with a ``norm``, ``shortcut``, ``stride_in_1x1``),
``modeling/backbone/fpn.py`` (``fpn_lateral{2..5}``, ``fpn_output{2..5}``, ``LastLevelMaxPool``),
``modeling/proposal_generator/rpn.py`` (``StandardRPNHead``: ``conv``, ``objectness_logits``,
``anchor_deltas``), ``modeling/roi_heads/box_head.py`` (``fc1``, ``fc2``),
``modeling/roi_heads/fast_rcnn.py`` (``cls_score`` with background **last**, class-specific
``bbox_pred``), ``modeling/roi_heads/mask_head.py`` (``mask_fcn1..4``, ``deconv``,
``predictor``), ``config/defaults.py`` (BGR input, ``PIXEL_MEAN`` [103.530, 116.280, 123.675],
``PIXEL_STD`` [1, 1, 1], ``STRIDE_IN_1X1 = True``, ``ANCHOR_GENERATOR.OFFSET = 0.0``).
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

FAMILY = "detectron2"
#: detectron2 ``_C.MODEL.PIXEL_MEAN`` (BGR, MSRA weights) and ``PIXEL_STD``
PIXEL_MEAN = (103.530, 116.280, 123.675)
PIXEL_STD = (1.0, 1.0, 1.0)
#: ``_C.MODEL.RESNETS.STRIDE_IN_1X1``: True for the MSRA-initialised model-zoo R-50/R-101
DEFAULT_STRIDE_IN_1X1 = True
CONVENTION = BoxConvention(family=FAMILY, anchors="detectron2", offset=0.0, norm_eps=1e-5)
_BN = ("weight", "bias", "running_mean", "running_var")


def looks_like(keys: list[str]) -> bool:
    """The key layout of a detectron2 GeneralizedRCNN with a ResNet-FPN backbone."""
    return any(k.startswith("backbone.bottom_up.") for k in keys) and any(
        k.startswith("roi_heads.box_predictor.") for k in keys
    )


def _conv_bn(r: KeyReader, out: dict[str, torch.Tensor], src: str, conv: str, bn: str) -> None:
    out[f"{conv}.weight"] = r.take(f"{src}.weight")
    for name in _BN:
        out[f"{bn}.{name}"] = r.take(f"{src}.norm.{name}")
    out[f"{bn}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)


def _copy(r: KeyReader, out: dict[str, torch.Tensor], src: str, dst: str) -> None:
    out[f"{dst}.weight"] = r.take(f"{src}.weight")
    out[f"{dst}.bias"] = r.take(f"{src}.bias")


def _preprocess(r: KeyReader) -> PreprocessConfig:
    mean, std = PIXEL_MEAN, PIXEL_STD
    # old checkpoints stored the model's pixel_mean / pixel_std buffers ([3, 1, 1], BGR)
    if "pixel_mean" in r.source:
        mean = tuple(float(v) for v in r.take("pixel_mean").reshape(-1).tolist())
    if "pixel_std" in r.source:
        std = tuple(float(v) for v in r.take("pixel_std").reshape(-1).tolist())
    if len(mean) != 3 or len(std) != 3:
        raise CheckpointError(f"checkpoint {r.path}: pixel_mean/pixel_std are not 3 values")
    return PreprocessConfig(
        img_scale=(1333, 800),  # MAX_SIZE_TEST, MIN_SIZE_TEST of detectron2's defaults
        keep_ratio=True,
        mean=mean,
        std=std,
        to_rgb=False,
        size_divisor=32,
        resize="detectron2",
    )


def _check_cell_anchors(r: KeyReader, prefix: str, convention: BoxConvention) -> None:
    """Old checkpoints saved ``anchor_generator.cell_anchors.{i}``: they must equal ours."""
    keys = sorted(k for k in r.source if k.startswith(prefix))
    if not keys:
        return
    ours = cell_anchors(convention, [4, 8, 16, 32, 64])
    for i, key in enumerate(keys):
        theirs = r.take(key).float()
        r.ignored.append(key)
        if i >= len(ours) or theirs.shape != ours[i].shape or not torch.allclose(theirs, ours[i]):
            raise CheckpointError(
                f"checkpoint {r.path}: {key} = {theirs.tolist()} differs from the default "
                f"anchors {ours[min(i, len(ours) - 1)].tolist()}; checkpoints trained with other "
                "ANCHOR_GENERATOR sizes or ratios are not supported",
                path=r.path,
            )


def convert(
    state_dict: dict[str, torch.Tensor], path: str, stride_in_1x1: bool | None = None
) -> ImportedCheckpoint:
    """Map a detectron2 Mask R-CNN state dict (numpy arrays already tensors) onto ours.

    Args:
        state_dict: the checkpoint's ``model`` entry.
        path: the file, for messages.
        stride_in_1x1: ``MODEL.RESNETS.STRIDE_IN_1X1`` of the training config (not stored in
            the checkpoint); None takes the model zoo's value, True (our ``style='caffe'``).

    Raises:
        CheckpointError: a key is missing, left over, or the shapes describe another model.
    """
    r = KeyReader({k: v for k, v in state_dict.items()}, path, FAMILY)
    keys = list(r.source)
    bu = "backbone.bottom_up."
    depth = resnet_depth(count_blocks(keys, bu, ["res2", "res3", "res4", "res5"]), path)
    out: dict[str, torch.Tensor] = {}
    _conv_bn(r, out, f"{bu}stem.conv1", "backbone.conv1", "backbone.bn1")
    for s, n in enumerate(count_blocks(keys, bu, ["res2", "res3", "res4", "res5"])):
        for b in range(n):
            src, dst = f"{bu}res{s + 2}.{b}", f"backbone.layer{s + 1}.{b}"
            for j in (1, 2, 3):
                _conv_bn(r, out, f"{src}.conv{j}", f"{dst}.conv{j}", f"{dst}.bn{j}")
            if b == 0:
                _conv_bn(r, out, f"{src}.shortcut", f"{dst}.downsample.0", f"{dst}.downsample.1")
    for i in range(4):
        _copy(r, out, f"backbone.fpn_lateral{i + 2}", f"neck.lateral_convs.{i}.conv")
        _copy(r, out, f"backbone.fpn_output{i + 2}", f"neck.fpn_convs.{i}.conv")
    rpn = "proposal_generator.rpn_head."
    _copy(r, out, f"{rpn}conv", "rpn_head.rpn_conv")
    _copy(r, out, f"{rpn}objectness_logits", "rpn_head.rpn_cls")
    _copy(r, out, f"{rpn}anchor_deltas", "rpn_head.rpn_reg")
    _check_cell_anchors(r, "proposal_generator.anchor_generator.cell_anchors.", CONVENTION)
    _copy(r, out, "roi_heads.box_head.fc1", "roi_head.bbox_head.shared_fcs.0")
    _copy(r, out, "roi_heads.box_head.fc2", "roi_head.bbox_head.shared_fcs.1")
    # background is the last row of cls_score in detectron2, as in mmdet: no permutation
    _copy(r, out, "roi_heads.box_predictor.cls_score", "roi_head.bbox_head.fc_cls")
    _copy(r, out, "roi_heads.box_predictor.bbox_pred", "roi_head.bbox_head.fc_reg")
    for i in range(4):
        _copy(r, out, f"roi_heads.mask_head.mask_fcn{i + 1}", f"roi_head.mask_head.convs.{i}.conv")
    _copy(r, out, "roi_heads.mask_head.deconv", "roi_head.mask_head.upsample")
    _copy(r, out, "roi_heads.mask_head.predictor", "roi_head.mask_head.conv_logits")
    pre = _preprocess(r)
    r.finish()

    num_classes = int(out["roi_head.bbox_head.fc_cls.weight"].shape[0]) - 1
    reg, mask = (
        out["roi_head.bbox_head.fc_reg.weight"],
        out["roi_head.mask_head.conv_logits.weight"],
    )
    if reg.shape[0] != 4 * num_classes or mask.shape[0] != num_classes:
        raise CheckpointError(
            f"checkpoint {path}: cls_score has {num_classes} + 1 classes but bbox_pred has "
            f"{reg.shape[0]} rows and the mask predictor {mask.shape[0]} channels; class-agnostic "
            "box or mask heads are not supported",
            path=path,
        )
    out = {k: (v.float() if v.is_floating_point() else v) for k, v in out.items()}
    s1x1 = DEFAULT_STRIDE_IN_1X1 if stride_in_1x1 is None else bool(stride_in_1x1)
    cfg = mask_rcnn_config(
        depth=depth,
        num_classes=num_classes,
        stride_in_1x1=s1x1,
        sampling_ratio=0,  # ROIAlignV2, POOLER_SAMPLING_RATIO 0
        aligned=True,
        rpn_min_bbox_size=0.0,  # PROPOSAL_GENERATOR.MIN_SIZE 0: keep w > 0 and h > 0
        convention=CONVENTION,
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
        ignored=tuple(r.ignored),
    )
