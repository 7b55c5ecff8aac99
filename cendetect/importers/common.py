"""What every importer produces, and the mmdet-style model config it writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from cendetect.config import PreprocessConfig
from cendetect.errors import CheckpointError
from cendetect.models.conventions import CONVENTION_KEY, BoxConvention
from cendetect.models.resnet import RESNET_STAGE_BLOCKS

#: the 80 COCO categories in contiguous-id order, which detectron2 and maskrcnn-benchmark share
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


@dataclass(frozen=True, eq=False)
class ImportedCheckpoint:
    """A detectron2 / maskrcnn-benchmark checkpoint converted to our model.

    Attributes:
        path: the file.
        family: ``"detectron2"`` or ``"maskrcnn_benchmark"``.
        state_dict: tensors under our (mmdet) names, class order ours (background last).
        model_config: mmdet ``model`` dict with a ``box_convention`` entry, for
            :func:`cendetect.models.build.build_model`.
        preprocess: the family's test-time resize / normalisation.
        num_classes: object classes (background excluded).
        classes: class names when known (COCO names for 80-class checkpoints), else None.
        depth: ResNet depth read from the number of blocks.
        stride_in_1x1: the value used (a checkpoint does not store it).
        ignored: source keys read but not needed by our model (buffers our model recomputes,
            the background rows of maskrcnn-benchmark's box regressor and mask predictor).
        sha256: hex digest of the file bytes.
    """

    path: str
    family: str
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    model_config: dict[str, Any] = field(repr=False)
    preprocess: PreprocessConfig
    num_classes: int
    classes: tuple[str, ...] | None
    depth: int
    stride_in_1x1: bool
    ignored: tuple[str, ...] = ()
    sha256: str = ""


class KeyReader:
    """Hands out source tensors by name and remembers which were taken, so that a converter can
    prove it consumed every key (:meth:`finish`)."""

    def __init__(self, state_dict: dict[str, torch.Tensor], path: str, family: str) -> None:
        self.source = state_dict
        self.path = path
        self.family = family
        self.used: set[str] = set()
        self.ignored: list[str] = []

    def take(self, key: str) -> torch.Tensor:
        if key not in self.source:
            raise CheckpointError(
                f"checkpoint {self.path}: {self.family} key {key!r} is missing", path=self.path
            )
        if key in self.used:
            raise CheckpointError(f"checkpoint {self.path}: {key!r} read twice", path=self.path)
        self.used.add(key)
        return self.source[key]

    def ignore(self, key: str) -> None:
        self.take(key)
        self.ignored.append(key)

    def finish(self) -> None:
        left = [k for k in self.source if k not in self.used]
        if left:
            shown = ", ".join(left[:20])
            raise CheckpointError(
                f"checkpoint {self.path}: {len(left)} {self.family} keys not understood "
                f"(first: {shown}); only Mask R-CNN R-50/R-101 FPN checkpoints are supported",
                path=self.path,
            )


def resnet_depth(blocks_per_stage: list[int], path: str) -> int:
    """50 / 101 / 152 from the number of bottleneck blocks found in each stage."""
    for depth, blocks in RESNET_STAGE_BLOCKS.items():
        if tuple(blocks_per_stage) == blocks:
            return depth
    raise CheckpointError(
        f"checkpoint {path}: ResNet stages with {blocks_per_stage} blocks match no supported "
        f"depth ({', '.join(f'{d}: {b}' for d, b in RESNET_STAGE_BLOCKS.items())})",
        path=path,
    )


def mask_rcnn_config(
    *,
    depth: int,
    num_classes: int,
    stride_in_1x1: bool,
    sampling_ratio: int,
    aligned: bool,
    rpn_min_bbox_size: float,
    convention: BoxConvention,
) -> dict[str, Any]:
    """The mmdet ``model`` dict of an R-50/101-FPN Mask R-CNN with ``convention``'s arithmetic.

    Test settings are the two codebases' shared defaults: RPN 1000 proposals per level before
    NMS (0.7), 1000 after; box score > 0.05, per-class NMS 0.5, 100 detections; masks 28 x 28.
    """

    def extractor(size: int) -> dict[str, Any]:
        layer = dict(type="RoIAlign", output_size=size, sampling_ratio=sampling_ratio)
        layer["aligned"] = aligned
        return dict(
            type="SingleRoIExtractor",
            roi_layer=layer,
            out_channels=256,
            featmap_strides=[4, 8, 16, 32],
        )

    return dict(
        type="MaskRCNN",
        backbone=dict(
            type="ResNet",
            depth=depth,
            num_stages=4,
            out_indices=(0, 1, 2, 3),
            frozen_stages=1,
            norm_cfg=dict(type="BN", requires_grad=False),
            norm_eval=True,
            style="caffe" if stride_in_1x1 else "pytorch",
        ),
        neck=dict(type="FPN", in_channels=[256, 512, 1024, 2048], out_channels=256, num_outs=5),
        rpn_head=dict(
            type="RPNHead",
            in_channels=256,
            feat_channels=256,
            anchor_generator=dict(
                type="AnchorGenerator",
                scales=[8],
                ratios=[0.5, 1.0, 2.0],
                strides=[4, 8, 16, 32, 64],
            ),
        ),
        roi_head=dict(
            type="StandardRoIHead",
            bbox_roi_extractor=extractor(7),
            bbox_head=dict(
                type="Shared2FCBBoxHead",
                in_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=num_classes,
                reg_class_agnostic=False,
            ),
            mask_roi_extractor=extractor(14),
            mask_head=dict(
                type="FCNMaskHead",
                num_convs=4,
                in_channels=256,
                conv_out_channels=256,
                num_classes=num_classes,
            ),
        ),
        test_cfg=dict(
            rpn=dict(
                nms_pre=1000,
                max_per_img=1000,
                nms=dict(type="nms", iou_threshold=0.7),
                min_bbox_size=rpn_min_bbox_size,
            ),
            rcnn=dict(
                score_thr=0.05,
                nms=dict(type="nms", iou_threshold=0.5),
                max_per_img=100,
                mask_thr_binary=0.5,
            ),
        ),
        **{CONVENTION_KEY: convention.to_config()},
    )


def count_blocks(keys: list[str], prefix: str, stages: list[str]) -> list[int]:
    """Blocks per stage: distinct ``{prefix}{stage}.{i}.`` indices among ``keys``."""
    counts = []
    for stage in stages:
        head = f"{prefix}{stage}."
        idx = {k[len(head) :].split(".", 1)[0] for k in keys if k.startswith(head)}
        counts.append(len([i for i in idx if i.isdigit()]))
    return counts
