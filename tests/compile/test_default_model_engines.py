"""The bundled default model (``mobilenet_v2_fpn``) as AOTInductor and ONNX engines, fp32.

Built once per session with the other architectures' export tests' sizes
(:data:`tests.conftest.EXPORT_SIZES`, one ``torch.export`` for both engines) and matched against
the same model in eager on the bundled samples at a small test scale (320x224 keep-ratio: three
network input sizes, 1-5 regions above 0.3 per sample). The default model is trained, so unlike
the random-weight fixtures its detections are real bars and mosaics, and the fp32 engines must
reproduce every one of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cendetect import Detector
from cendetect.engine.runners import load_engine, read_manifest
from cendetect.zoo import default_checkpoint
from tests.compile.matching import engine_parity

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.jpg"))
SMALL = (320, 224)

pytestmark = pytest.mark.skipif(
    default_checkpoint() is None and os.environ.get("CI") != "true",
    reason="no bundled default model in this checkout",
)


@pytest.fixture(scope="module")
def engines(export_engines: Callable[..., dict[str, Path]]) -> dict[str, Path]:
    ckpt = default_checkpoint()
    assert ckpt is not None, "the default model must ship with the package"
    return export_engines(Path(ckpt))


@pytest.fixture(scope="module")
def eager() -> Detector:
    ckpt = default_checkpoint()
    assert ckpt is not None
    return Detector.from_checkpoint(ckpt, device="cpu", refine="off")


@pytest.mark.slow
def test_aoti_matches_eager_on_the_samples(engines: dict[str, Path], eager: Detector) -> None:
    m = read_manifest(engines["aoti"])
    assert (m.engine, m.precision, m.model) == ("aoti", "fp32", "mobilenet_v2_fpn")
    assert m.classes == eager.class_names == ("bar", "mosaic")
    print(engine_parity(eager, load_engine(engines["aoti"]), SAMPLES, SMALL))


@pytest.mark.slow
def test_onnx_matches_eager_on_the_samples(engines: dict[str, Path], eager: Detector) -> None:
    if "onnx" not in engines:
        pytest.skip("the onnx extra is not installed (pip install 'cendetect[onnx]')")
    print(engine_parity(eager, load_engine(engines["onnx"]), SAMPLES, SMALL))


def test_the_tie_rule_takes_only_what_eager_itself_gives(eager: Detector) -> None:
    """engine_parity's tie rule (tests/compile/matching.py, ``_eager_reaches``) accepts the
    eager model's own answer and refuses one moved by a few pixels."""
    import dataclasses

    import cv2
    import torch

    from cendetect.engine import preprocess, to_detections
    from tests.compile.matching import _eager_reaches

    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    batch = preprocess([cv2.imread(str(SAMPLES[0]))], cfg)
    with torch.inference_mode():
        raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
    (own,) = to_detections(raw, batch, eager.class_names, eager.mask_threshold)
    assert len(own) > 0 and _eager_reaches(eager, batch, own)
    moved = dataclasses.replace(own, boxes=own.boxes + np.float32(3.0))
    assert not _eager_reaches(eager, batch, moved)
