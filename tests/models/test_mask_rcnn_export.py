"""The model scripts (torch.jit.script) and agrees with eager, after save and load too.

Tiers (STYLE.md): float outputs within 1e-4, integer outputs (labels, image ids) equal. The
model's ``torch.export`` program with dynamic H/W is checked at the same tier on four input
sizes in ``tests/compile/test_trt_engine.py`` (the program TensorRT is handed).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch

from cendetect import Detector
from cendetect.engine import preprocess
from tests.conftest import DATA


@pytest.fixture(scope="module")
def r50(mmdet2_r50_ckpt):
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


@pytest.fixture(scope="module")
def small_batch(r50):
    import cv2

    img = cv2.imread(str(DATA / "mmdet" / "images" / "china_640x427.jpg"))
    cfg = r50.preprocess_cfg.__class__(**{**r50.preprocess_cfg.__dict__, "img_scale": (320, 224)})
    return preprocess([img, np.ascontiguousarray(img[:300, :400])], cfg)


def _assert_same(a, b) -> None:
    # Same kernels on the same input in one process: floats can differ only where TorchScript
    # fuses or reorders an operation, which 1e-4 bounds (the scripted tiny R50 measured
    # bit-equal to eager on every ISA level).
    boxes_a, scores_a, labels_a, masks_a, ids_a = a
    boxes_b, scores_b, labels_b, masks_b, ids_b = b
    assert torch.equal(labels_a, labels_b)
    assert torch.equal(ids_a, ids_b)
    torch.testing.assert_close(boxes_a, boxes_b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores_a, scores_b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(masks_a, masks_b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_torchscript_matches_eager_after_save_and_load(r50, small_batch) -> None:
    model = r50.model
    args = (small_batch.images, small_batch.image_sizes, small_batch.scale_factors)
    with torch.inference_mode():
        eager = model(*args)
    assert eager[0].shape[0] > 0, "test needs detections to compare"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 warns that TorchScript is deprecated
        scripted = torch.jit.script(model)
        buf = io.BytesIO()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
    with torch.inference_mode():
        _assert_same(eager, scripted(*args))
        _assert_same(eager, loaded(*args))
