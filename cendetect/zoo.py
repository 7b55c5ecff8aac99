"""Model names (CenDetect's ``--model`` values) and the mmdetection model configs they stand for.

A checkpoint that embeds its config (every mmdet 2.x/3.x training run writes one) needs no zoo
name; a bare state dict needs one. The configs below are mmdetection's own
(``configs/mask_rcnn/mask_rcnn_r{50,101}_fpn_2x_coco.py``,
``configs/dcn/cascade_mask_rcnn_r50_fpn_dconv_c3-c5_1x_coco.py``), reduced to the keys that
change test-time computation; the builder fills the rest with mmdetection's defaults.
"""

from __future__ import annotations

import copy
from pathlib import Path
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


def _cascade_mask_rcnn_dconv(num_classes: int) -> dict[str, Any]:
    """Cascade Mask R-CNN R50-FPN, deformable conv2 in ResNet stages c3-c5, 3 stages."""
    cfg = _mask_rcnn(50, num_classes)
    cfg["type"] = "CascadeRCNN"
    cfg["backbone"]["dcn"] = {"type": "DCN", "deform_groups": 1, "fallback_on_stride": False}
    cfg["backbone"]["stage_with_dcn"] = (False, True, True, True)
    roi = cfg["roi_head"]
    stage_stds = ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067])
    bbox_heads = []
    for stds in stage_stds:
        head = copy.deepcopy(roi["bbox_head"])
        head["bbox_coder"]["target_stds"] = stds
        head["reg_class_agnostic"] = True
        bbox_heads.append(head)
    cfg["roi_head"] = {
        "type": "CascadeRoIHead",
        "num_stages": 3,
        "bbox_roi_extractor": roi["bbox_roi_extractor"],
        "bbox_head": bbox_heads,
        "mask_roi_extractor": roi["mask_roi_extractor"],
        "mask_head": roi["mask_head"],
    }
    return cfg


def _mobilenet_v2_fpn(num_classes: int) -> dict[str, Any]:
    """cendetect's default model: MobileNetV2 (C2..C5 at strides 4..32) + 128-channel FPN,
    5 anchor ratios for long thin bars, a 512-wide box head and a 2-conv mask head; 500
    proposals at test time. Rationale and measurements: docs/default_model.md."""
    cfg = _mask_rcnn(50, num_classes)
    cfg["backbone"] = {
        "type": "MobileNetV2",
        "widen_factor": 1.0,
        "out_indices": (1, 2, 4, 6),
        "frozen_stages": 1,
        "norm_cfg": {"type": "BN", "requires_grad": True},
        "norm_eval": True,
        "act_cfg": {"type": "ReLU6"},
    }
    cfg["neck"].update(in_channels=[24, 32, 96, 320], out_channels=128)
    rpn = cfg["rpn_head"]
    rpn.update(in_channels=128, feat_channels=128)
    rpn["anchor_generator"]["ratios"] = [0.2, 0.5, 1.0, 2.0, 5.0]
    roi = cfg["roi_head"]
    for key in ("bbox_roi_extractor", "mask_roi_extractor"):
        roi[key]["out_channels"] = 128
    roi["bbox_head"].update(in_channels=128, fc_out_channels=512)
    roi["mask_head"].update(in_channels=128, conv_out_channels=128, num_convs=2)
    cfg["test_cfg"]["rpn"].update(nms_pre=1000, max_per_img=500)
    return cfg


def _point_rend_r50_fpn(num_classes: int) -> dict[str, Any]:
    """PointRend R50-FPN (``configs/point_rend/point_rend_r50_caffe_fpn_mstrain_1x_coco.py``):
    caffe-style ResNet with frozen BN (its image normalisation: :data:`ZOO_IMG_NORM`), the Mask
    R-CNN box stage, a 7x7 coarse mask head and 5 point-refinement steps of 784 points."""
    cfg = _mask_rcnn(50, num_classes)
    cfg["type"] = "PointRend"
    cfg["backbone"].update(style="caffe", norm_cfg={"type": "BN", "requires_grad": False})
    roi = cfg["roi_head"]
    roi["type"] = "PointRendRoIHead"
    roi["mask_roi_extractor"] = {
        "type": "GenericRoIExtractor",
        "roi_layer": {"type": "SimpleRoIAlign", "output_size": 14},
        "out_channels": 256,
        "featmap_strides": [4],
        "aggregation": "concat",
    }
    roi["mask_head"] = {
        "type": "CoarseMaskHead",
        "num_fcs": 2,
        "in_channels": 256,
        "conv_out_channels": 256,
        "fc_out_channels": 1024,
        "num_classes": num_classes,
    }
    roi["point_head"] = {
        "type": "MaskPointHead",
        "num_fcs": 3,
        "in_channels": 256,
        "fc_channels": 256,
        "num_classes": num_classes,
        "coarse_pred_each_layer": True,
    }
    cfg["test_cfg"]["rcnn"].update(subdivision_steps=5, subdivision_num_points=784, scale_factor=2)
    return cfg


#: zoo name -> builder of the mmdet ``model`` config for a number of classes
MODEL_ZOO = {
    "mobilenet_v2_fpn": _mobilenet_v2_fpn,
    "mask_rcnn_r50_fpn": lambda num_classes: _mask_rcnn(50, num_classes),
    "mask_rcnn_r101_fpn": lambda num_classes: _mask_rcnn(101, num_classes),
    "cascade_mask_rcnn_r50_fpn_dconv": _cascade_mask_rcnn_dconv,
    # the name CenDetect's det.py uses for the same network
    "mask_rcnn_r50_fpn_dconv": _cascade_mask_rcnn_dconv,
    "point_rend_r50_fpn": _point_rend_r50_fpn,
}

#: zoo names whose mmdet config normalises images otherwise than ``PreprocessConfig()``'s
#: default (mmdet's ``img_norm_cfg`` of the config the entry stands for)
ZOO_IMG_NORM: dict[str, dict[str, Any]] = {
    # caffe-style ResNet weights: BGR input, caffe means, unit std
    "point_rend_r50_fpn": {
        "mean": (103.53, 116.28, 123.675),
        "std": (1.0, 1.0, 1.0),
        "to_rgb": False,
    },
}


def zoo_model_config(name: str, num_classes: int) -> dict[str, Any]:
    """The mmdet ``model`` config dict of zoo model ``name`` with ``num_classes`` classes."""
    if name not in MODEL_ZOO:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(sorted(MODEL_ZOO))}")
    return copy.deepcopy(MODEL_ZOO[name](num_classes))


#: the model ``cendetect run`` uses when no model is named: trained by this project on its own
#: synthetic data (docs/default_model.md) and shipped inside the package
DEFAULT_MODEL = "mobilenet_v2_fpn"

#: where the package keeps the default model's checkpoint (mmdet 2.x layout, fp16 storage)
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / f"{DEFAULT_MODEL}.pth"


def default_checkpoint() -> Path | None:
    """The bundled checkpoint of :data:`DEFAULT_MODEL`, or None if this install has none."""
    return DEFAULT_CHECKPOINT if DEFAULT_CHECKPOINT.is_file() else None
