"""Reduced precision: bf16 (CPU) and fp16 (CUDA) keep box decoding, NMS and scores in fp32.

Parity with fp32 on the seeded random-weight fixtures is limited by the fixtures, not by the
precision policy: rounding the features of an untrained ResNet-50 to bf16 moves its FPN outputs
by 19-35 % (relative L2), with ``torch.autocast`` exactly as with our weight casting, so the
detection sets differ. The tests therefore check (1) the policy itself, (2) that a bf16
artifact computes what the in-memory bf16 model computes, and (3) that our bf16 agrees with
fp32 as well as torch's reference mixed precision (``torch.autocast``) does. docs/engines.md
records the measured numbers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from cendetect import Detector
from cendetect.compile.build import compile_engine
from cendetect.compile.precision import LowPrecision, with_precision
from cendetect.config import PreprocessConfig
from cendetect.engine import preprocess, to_detections
from cendetect.engine.runners import load_engine, read_manifest
from cendetect.models.layers import FrozenBatchNorm2d
from tests.compile.matching import match_detections
from tests.compile.test_torchscript_engine import assert_raw_close
from tests.conftest import DATA

IMAGES = sorted((DATA / "mmdet" / "images").iterdir())
SMALL = (320, 224)


@pytest.fixture(scope="module")
def eager(mmdet2_r50_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


def _batch(det: Detector, path: Path):
    cfg = dataclasses.replace(det.preprocess_cfg, img_scale=SMALL)
    return preprocess([cv2.imread(str(path))], cfg)


@pytest.mark.slow
def test_policy_low_precision_layers_fp32_outputs(eager: Detector) -> None:
    low = with_precision(eager.model, "bf16")
    assert isinstance(low, LowPrecision)
    assert with_precision(eager.model, "fp32") is eager.model
    assert low.fp32_stages == ["conv1"]  # ResNet's stem: the only stage at stride 2
    stem = {id(m) for m in low.model.backbone.conv1.modules()}
    for module in low.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            dtype = torch.float32 if id(module) in stem else torch.bfloat16
            assert module.weight.dtype == dtype
        if isinstance(module, FrozenBatchNorm2d):
            assert module.running_var.dtype == torch.float32
    # the original model is untouched
    assert all(p.dtype == torch.float32 for p in eager.model.parameters())
    batch = _batch(eager, IMAGES[1])
    with torch.inference_mode():
        boxes, scores, labels, masks, ids = low(
            batch.images, batch.image_sizes, batch.scale_factors
        )
    assert boxes.dtype == scores.dtype == masks.dtype == torch.float32
    assert labels.dtype == ids.dtype == torch.int64
    assert boxes.shape[0] > 0


@pytest.mark.slow
def test_bf16_torchscript_artifact_equals_bf16_model(
    eager: Detector, mmdet2_r50_ckpt: Path, engine_dir: Path
) -> None:
    out = engine_dir / "r50_bf16.ts"
    compile_engine(mmdet2_r50_ckpt, out, precision="bf16")
    assert read_manifest(out).precision == "bf16"
    runner = load_engine(out)
    low = with_precision(eager.model, "bf16")
    batch = _batch(eager, IMAGES[1])
    with torch.inference_mode():
        # the TorchScript tier: the artifact runs the in-memory bf16 model's own bf16 kernels
        # in this process, so the two round alike and differ only where TorchScript reorders
        assert_raw_close(low(batch.images, batch.image_sizes, batch.scale_factors), runner(batch))


def _mean_mask_iou(ref_raw, out_raw, batch, det: Detector) -> float:
    (ref,) = to_detections(ref_raw, batch, det.class_names, det.mask_threshold)
    (out,) = to_detections(out_raw, batch, det.class_names, det.mask_threshold)
    rep = match_detections(ref, out, box_iou_thr=0.5)
    # unmatched reference detections count as IoU 0: a missing detection is a wrong mask
    return float(np.sum(rep.mask_ious) / max(rep.total, 1))


@pytest.mark.slow
def test_bf16_agrees_with_fp32_as_well_as_autocast(eager: Detector) -> None:
    low = with_precision(eager.model, "bf16")
    ours, autocast = [], []
    for path in IMAGES[1:3]:
        batch = _batch(eager, path)
        args = (batch.images, batch.image_sizes, batch.scale_factors)
        with torch.inference_mode():
            ref = eager.model(*args)
            mine = low(*args)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                amp = eager.model(*args)
        ours.append(_mean_mask_iou(ref, mine, batch, eager))
        autocast.append(_mean_mask_iou(ref, amp, batch, eager))
    print(f"bf16 vs fp32 mean mask IoU: ours {np.mean(ours):.3f}, autocast {np.mean(autocast):.3f}")
    # reduced precision on purpose: both schemes round the same convolutions to bf16, and
    # measured the same (0.354 both at this scale, docs/engines.md); 0.05 (not derived, the
    # test's original margin) leaves room for the casts they place differently (the float32
    # stem, the outputs) while catching a policy that loses detections
    assert np.mean(ours) >= np.mean(autocast) - 0.05, (ours, autocast)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="fp16 engines need a CUDA device")
@pytest.mark.slow
def test_fp16_cuda_torchscript_runs_and_keeps_fp32_outputs(
    mmdet2_r50_ckpt: Path, engine_dir: Path
) -> None:
    out = engine_dir / "r50_fp16_cuda.ts"
    compile_engine(mmdet2_r50_ckpt, out, precision="fp16", device="cuda")
    det = Detector.from_engine(out, refine="off")
    fp32 = Detector.from_checkpoint(mmdet2_r50_ckpt, device="cuda", refine="off")
    batch = _batch(fp32, IMAGES[1])
    with torch.inference_mode():
        boxes, scores, labels, masks, _ = det.model(batch)
    assert boxes.dtype == scores.dtype == masks.dtype == torch.float32
    assert boxes.device.type == "cuda"
    res = det(IMAGES[1])
    assert len(res) > 0


@pytest.mark.parametrize(
    ("arch", "heads"),
    [("mask_rcnn_r50_fpn", 1), ("point_rend_r50_fpn", 1), ("cascade_mask_rcnn_r50_fpn_dconv", 3)],
)
def test_nchw_mask_heads_in_a_channels_last_model(arch: str, heads: int) -> None:
    """What the AOTI bf16 build uses: every mask head's 4-D weights NCHW, the rest channels-last
    (tests/compile/test_precision_default_model.py checks the built engine)."""
    from cendetect.compile.precision import mask_heads
    from cendetect.config_text import parse_config_text
    from cendetect.models import build_model

    cfg = parse_config_text((DATA / "mmdet" / arch / "config.py").read_text())
    low = with_precision(
        build_model(cfg["model"]).eval(), "bf16", channels_last=True, nchw_mask_heads=True
    )
    found = mask_heads(low)
    convs = [m for head in found for m in head.modules() if isinstance(m, nn.Conv2d)]
    assert sum(len(h) if isinstance(h, nn.ModuleList) else 1 for h in found) == heads
    assert convs and all(c.weight.is_contiguous() for c in convs)
    inside = {id(c) for c in convs}
    rest = [
        m for m in low.modules() if isinstance(m, nn.Conv2d) and id(m) not in inside
    ]  # backbone, neck, RPN head (and PointRend's coarse head convs are mask-head ones)
    assert rest and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in rest)


def _arch_model(arch: str) -> nn.Module:
    from cendetect.models import build_model
    from cendetect.zoo import zoo_model_config

    return build_model(zoo_model_config(arch, num_classes=2)).eval()


@pytest.mark.parametrize(
    ("arch", "stride", "stages", "first_low", "neck_cast"),
    [
        ("mask_rcnn_r50_fpn", None, ["conv1"], "layer1", False),
        ("mask_rcnn_r50_fpn", 4, ["conv1", "layer1"], "layer2", True),
        ("mask_rcnn_r50_fpn", 0, [], None, False),
        ("mobilenet_v2_fpn", None, ["conv1", "layer1"], "layer2", False),
        ("mobilenet_v2_fpn", 8, ["conv1", "layer1", "layer2", "layer3"], "layer4", True),
        (
            "mobilenet_v2_fpn",
            64,
            ["conv1"] + [f"layer{i}" for i in range(1, 8)] + ["conv2"],
            None,
            True,
        ),
    ],
)
def test_float32_stages(
    arch: str, stride: int | None, stages: list[str], first_low: str | None, neck_cast: bool
) -> None:
    """fp16/bf16 keep the image and the backbone stages up to ``fp32_stride`` in float32 with
    their float32 weights; the stage after them and the neck read the low dtype."""
    from cendetect.compile import precision as P

    model = _arch_model(arch)
    low = with_precision(model, "bf16", fp32_stride=stride)
    assert low.fp32_stages == stages
    backbone = low.model.backbone
    kept = {id(m) for name in stages for m in getattr(backbone, name).modules()}
    for name, module in low.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            want = torch.float32 if id(module) in kept else torch.bfloat16
            assert module.weight.dtype == want, name
    if first_low is not None:
        assert isinstance(getattr(backbone, first_low), P._CastInput)
    assert isinstance(low.model.neck, P._CastInputs) == neck_cast
    assert low.fp32_input == bool(stages)
    # what each part is fed: the float32 image and float32 activations up to the last kept
    # stage, the low dtype after it
    seen: dict[str, torch.dtype] = {}
    hooks = [
        getattr(backbone, name).register_forward_pre_hook(
            lambda _m, args, name=name: seen.__setitem__(name, args[0].dtype)
        )
        for name, _ in P.backbone_stages(backbone)
        if name in ("conv1", "layer1", "layer2", "layer3", "layer4")
    ]
    image = np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    batch = preprocess([image], PreprocessConfig(img_scale=(128, 96), size_divisor=32))
    with torch.inference_mode():
        low(batch.images, batch.image_sizes, batch.scale_factors)
    for h in hooks:
        h.remove()
    assert len(seen) == len(hooks)  # every hooked stage ran
    for name, dtype in seen.items():
        # a kept stage reads float32; the first low stage's wrapper is handed float32 and casts,
        # so the stages after it read the low dtype
        handed_fp32 = name in stages or name == first_low
        assert dtype == (torch.float32 if handed_fp32 else torch.bfloat16), (name, dtype)


def test_float32_stages_refused_where_they_mean_nothing() -> None:
    from cendetect.compile.build import _fp32_stride
    from cendetect.engine.runners import EngineError

    assert _fp32_stride("bf16", None) == 2
    assert _fp32_stride("fp16", 0) == 0
    assert _fp32_stride("fp32", None) == 0
    with pytest.raises(EngineError, match="--fp32-stride 4 applies to --bf16/--fp16"):
        _fp32_stride("fp32", 4)
    with pytest.raises(EngineError, match="0 or more"):
        _fp32_stride("bf16", -1)
