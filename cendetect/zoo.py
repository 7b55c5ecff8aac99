"""Model names (CenDetect's ``--model`` values) and the mmdetection model configs they stand for.

A checkpoint that embeds its config (every mmdet 2.x/3.x training run writes one) needs no zoo
name; a bare state dict needs one. The configs below are mmdetection's own
(``configs/mask_rcnn/mask_rcnn_r{50,101}_fpn_2x_coco.py``), reduced to the keys that change
test-time computation; the builder fills the rest with mmdetection's defaults.
"""

from __future__ import annotations

import copy
from typing import Any

#: CenDetect's class names, in label order
CENDETECT_CLASSES: tuple[str, ...] = ("bar", "mosaic")


def _mask_rcnn(depth: int, num_classes: int) -> dict[str, Any]:
    roi = {"type": "RoIAlign", "sampling_ratio": 0}
    return {
        "type": "MaskRCNN",
        "backbone": {
            "type": "ResNet",
            "depth": depth,
            "num_stages": 4,
            "out_indices": (0, 1, 2, 3),
            "frozen_stages": 1,
            "norm_cfg": {"type": "BN", "requires_grad": True},
            "norm_eval": True,
            "style": "pytorch",
        },
        "neck": {
            "type": "FPN",
            "in_channels": [256, 512, 1024, 2048],
            "out_channels": 256,
            "num_outs": 5,
        },
        "rpn_head": {
            "type": "RPNHead",
            "in_channels": 256,
            "feat_channels": 256,
            "anchor_generator": {
                "type": "AnchorGenerator",
                "scales": [8],
                "ratios": [0.5, 1.0, 2.0],
                "strides": [4, 8, 16, 32, 64],
            },
            "bbox_coder": {
                "type": "DeltaXYWHBBoxCoder",
                "target_means": [0.0, 0.0, 0.0, 0.0],
                "target_stds": [1.0, 1.0, 1.0, 1.0],
            },
        },
        "roi_head": {
            "type": "StandardRoIHead",
            "bbox_roi_extractor": {
                "type": "SingleRoIExtractor",
                "roi_layer": {**roi, "output_size": 7},
                "out_channels": 256,
                "featmap_strides": [4, 8, 16, 32],
            },
            "bbox_head": {
                "type": "Shared2FCBBoxHead",
                "in_channels": 256,
                "fc_out_channels": 1024,
                "roi_feat_size": 7,
                "num_classes": num_classes,
                "bbox_coder": {
                    "type": "DeltaXYWHBBoxCoder",
                    "target_means": [0.0, 0.0, 0.0, 0.0],
                    "target_stds": [0.1, 0.1, 0.2, 0.2],
                },
                "reg_class_agnostic": False,
            },
            "mask_roi_extractor": {
                "type": "SingleRoIExtractor",
                "roi_layer": {**roi, "output_size": 14},
                "out_channels": 256,
                "featmap_strides": [4, 8, 16, 32],
            },
            "mask_head": {
                "type": "FCNMaskHead",
                "num_convs": 4,
                "in_channels": 256,
                "conv_out_channels": 256,
                "num_classes": num_classes,
            },
        },
        "test_cfg": {
            "rpn": {
                "nms_pre": 1000,
                "max_per_img": 1000,
                "nms": {"type": "nms", "iou_threshold": 0.7},
                "min_bbox_size": 0,
            },
            "rcnn": {
                "score_thr": 0.05,
                "nms": {"type": "nms", "iou_threshold": 0.5},
                "max_per_img": 100,
                "mask_thr_binary": 0.5,
            },
        },
    }


#: zoo name -> builder of the mmdet ``model`` config for a number of classes
MODEL_ZOO = {
    "mask_rcnn_r50_fpn": lambda num_classes: _mask_rcnn(50, num_classes),
    "mask_rcnn_r101_fpn": lambda num_classes: _mask_rcnn(101, num_classes),
}


def zoo_model_config(name: str, num_classes: int) -> dict[str, Any]:
    """The mmdet ``model`` config dict of zoo model ``name`` with ``num_classes`` classes."""
    if name not in MODEL_ZOO:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_ZOO))}")
    return copy.deepcopy(MODEL_ZOO[name](num_classes))
