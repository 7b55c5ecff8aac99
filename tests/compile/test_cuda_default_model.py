"""CUDA checks on the trained default model (the random-weight fixtures cannot carry fp16
agreement, test_precision.py says why): fp16 eager against fp32, and the CUDA TorchScript fp16
artifact and the onnxruntime CUDA provider against eager. For the GPU device
(tools/gpu_check.sh); each test skips without CUDA."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cendetect import Detector
from cendetect.flow.stream import select
from cendetect.zoo import default_checkpoint
from tests.compile.matching import match_detections

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.jpg"))
NO_CUDA = "needs a CUDA device"
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)


def _agreement(ref: Detector, other: Detector) -> list[float]:
    """Mask IoU of every reference detection above 0.3 with its match (0 if unmatched)."""
    ious: list[float] = []
    for path in SAMPLES:
        image = cv2.imread(str(path))
        rep = match_detections(select(ref(image), 0.3), other(image), box_iou_thr=0.5)
        ious += rep.mask_ious + [0.0] * (rep.total - rep.matched)
    return ious


@pytest.fixture(scope="module")
def fp32() -> Detector:
    ckpt = default_checkpoint()
    assert ckpt is not None
    return Detector.from_checkpoint(ckpt, device="cpu", refine="off")


def test_fp16_eager_agrees_with_fp32(fp32: Detector) -> None:
    """The issue's bar: mean mask IoU >= 0.97, every detection found."""
    fp16 = Detector.from_checkpoint(default_checkpoint(), device="cuda", fp16=True, refine="off")
    ious = _agreement(fp32, fp16)
    assert len(ious) >= 4 and float(np.mean(ious)) >= 0.97 and min(ious) > 0, ious


def test_cuda_torchscript_fp16_equals_eager_fp16(tmp_path: Path) -> None:
    from cendetect.compile import compile_engine

    ckpt = default_checkpoint()
    compile_engine(ckpt, tmp_path / "d.ts", engine="torchscript", precision="fp16", device="cuda")
    eager = Detector.from_checkpoint(ckpt, device="cuda", fp16=True, refine="off")
    engine = Detector.from_engine(tmp_path / "d.ts", refine="off")
    ious = _agreement(eager, engine)
    assert len(ious) >= 4 and float(np.mean(ious)) >= 0.99, ious


def test_onnxruntime_cuda_provider_matches_cpu_eager(fp32: Detector, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDAExecutionProvider")
    from cendetect.compile import compile_engine

    compile_engine(default_checkpoint(), tmp_path / "d.onnx", engine="onnx", device="cuda")
    engine = Detector.from_engine(tmp_path / "d.onnx", refine="off")
    ious = _agreement(fp32, engine)
    assert len(ious) >= 4 and float(np.mean(ious)) >= 0.99, ious
