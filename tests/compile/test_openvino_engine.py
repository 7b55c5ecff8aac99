"""OpenVINO engine (our ``.onnx`` export compiled by OpenVINO's CPU plugin): parity with eager.

fp32 is held on the R50 fixture to the rule of onnxruntime's fused-kernel level
(``engine_parity`` at the small test scale, four input sizes: 95 % of the eager detections
matched at box IoU 0.99, scores within 1e-3, masks within the pixel rule; measured 98/100 on
kite and all on the other three, like onnxruntime's 'all' level): OpenVINO's blocked
convolutions sum in their own order, and the random-weight fixture amplifies that into two
re-ranked detections. bf16 (OpenVINO's inference precision hint, which puts every layer it
can in bf16, the stem and the mask head included) does NOT reach the compile issue's bar for bf16
engines (mean mask IoU >= 0.97 against fp32 on the trained default model's samples): measured
on an Intel Xeon with AMX 0.941 with version 3's weights (14 detections, lowest 0.776) and 0.959
with version 4's (15 detections), where our own bf16 engines, which keep the image and the
stride-2 stem in float32, give 0.979 and 0.988. Marking the stem's nodes as
precision-sensitive in their rt_info (``precise_0``, ``disable_fp16_compression_0``) changed
nothing on OpenVINO 2026.4's CPU plugin. The test holds the measured level so that a regression
shows; docs/engines.md recommends OpenVINO fp32, and our TorchScript/AOTI engines for bf16.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from cendetect import Detector
from cendetect.engine.runners import EngineError, load_engine, read_manifest
from cendetect.zoo import default_checkpoint
from tests.compile.matching import engine_parity, low_precision_agreement
from tests.conftest import DATA

pytest.importorskip("openvino", reason="openvino is not installed (cendetect[openvino])")
pytest.importorskip("onnx", reason="onnx is not installed (cendetect[openvino])")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (cendetect[openvino])")

IMAGES = sorted((DATA / "mmdet" / "images").iterdir())
SMALL = (320, 224)  # img_scale: network inputs up to 320 x 320 (EXPORT_SIZES)
SAMPLES = sorted((Path(__file__).resolve().parents[2] / "samples").glob("*.jpg"))


@pytest.fixture(scope="session")
def r50_openvino(mmdet2_r50_ckpt: Path, export_engines: Callable[..., dict[str, Path]]) -> Path:
    return export_engines(mmdet2_r50_ckpt, ("openvino",))["openvino"]


@pytest.fixture(scope="module")
def eager(mmdet2_r50_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


def test_manifest_and_refusals(r50_openvino: Path, mmdet2_r50_ckpt: Path, tmp_path: Path) -> None:
    from cendetect.compile import compile_engine

    m = read_manifest(r50_openvino)
    assert (m.engine, m.precision, m.device, m.layout) == ("openvino", "fp32", "cpu", "nchw")
    assert (m.input.min, m.input.max) == ((64, 64), (320, 320))
    with pytest.raises(EngineError, match="runs on the CPU"):  # before any CUDA check
        compile_engine(mmdet2_r50_ckpt, tmp_path / "x.onnx", engine="openvino", device="cuda")
    with pytest.raises(EngineError, match="fp16"):
        compile_engine(mmdet2_r50_ckpt, tmp_path / "x.onnx", engine="openvino", precision="fp16")
    with pytest.raises(EngineError, match="--fp32-stride does not apply"):
        compile_engine(
            mmdet2_r50_ckpt, tmp_path / "x.onnx", engine="openvino", precision="bf16",
            fp32_stride=2,
        )  # fmt: skip


@pytest.mark.slow
def test_openvino_matches_eager_at_several_sizes(
    eager: Detector, r50_openvino: Path, tmp_path: Path
) -> None:
    """The fused-kernel rule (module docstring), and OpenVINO's cache written on load."""
    from cendetect.engine.runners.openvino import load_openvino

    runner = load_engine(r50_openvino)
    assert runner.manifest.engine == "openvino"
    notes = engine_parity(eager, runner, IMAGES, SMALL, min_fraction=0.95)
    print("\n".join(notes))
    cache = tmp_path / "ov_cache"
    load_openvino(r50_openvino, torch.device("cpu"), cache_dir=cache)
    assert any(cache.iterdir()), "OpenVINO wrote no cache blob"


@pytest.mark.slow
def test_detector_api_and_batch(eager: Detector, r50_openvino: Path) -> None:
    import cv2

    det = Detector.from_engine(r50_openvino, refine="off")
    assert det.engine == "openvino" and det.class_names == eager.class_names
    assert not det.concurrent  # one OpenVINO stream: the pipeline runs one call at a time
    small = dataclasses.replace(det.preprocess_cfg, img_scale=SMALL)
    det.preprocess_cfg = small
    imgs = [cv2.imread(str(p)) for p in IMAGES[:2]]
    both = det.predict(imgs)
    for img, res in zip(imgs, both, strict=True):
        alone = det(img)
        # the runner feeds images one by one, each cropped to its own padded size: exact
        assert np.array_equal(res.boxes, alone.boxes) and np.array_equal(res.scores, alone.scores)


@pytest.mark.slow
@pytest.mark.skipif(
    default_checkpoint() is None and os.environ.get("CI") != "true",
    reason="no bundled default model in this checkout",
)
def test_bf16_hint_agreement_with_fp32_on_the_default_model(tmp_path: Path) -> None:
    """Mean mask IoU against fp32 on the samples with OpenVINO's bf16 hint: measured 0.941 and
    0.959 (two versions of the weights; below the 0.97 bar of our bf16 engines, module
    docstring); held at >= 0.92 and every detection found. On a CPU without AVX-512 BF16 or
    AMX the hint falls back to f32."""
    from cendetect.compile import compile_engine

    ckpt = default_checkpoint()
    assert ckpt is not None
    fp32 = Detector.from_checkpoint(ckpt, refine="off")
    path = tmp_path / "default.openvino.bf16.onnx"
    m = compile_engine(ckpt, path, engine="openvino", precision="bf16")
    assert (m.precision, m.fp32_stride) == ("bf16", 0)
    runner = load_engine(path)
    ious = low_precision_agreement(fp32, runner.program, SAMPLES, 0.3)
    assert len(ious) >= 4, f"the default model found only {len(ious)} regions on the samples"
    mean = float(np.mean(ious))
    print(f"openvino bf16 vs fp32 on {len(SAMPLES)} samples: {len(ious)} detections, {mean:.4f}")
    assert mean >= 0.92, ious  # measured 0.941-0.959 (Xeon, AMX); the 0.97 bf16 bar is not met
    assert min(ious) > 0, ious


@pytest.mark.skipif(
    default_checkpoint() is None and os.environ.get("CI") != "true",
    reason="no bundled default model in this checkout",
)
def test_fp32_openvino_and_onnx_share_one_export(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An fp32 ``.onnx`` and an OpenVINO artifact of one ``compile_engines`` call come from one
    ``torch.export`` (the export is about half of each build), in either order, and both run."""
    from cendetect.compile import export as export_mod
    from cendetect.compile.build import compile_engines

    ckpt = default_checkpoint()
    assert ckpt is not None
    real = export_mod.export_program
    calls: list[int] = []

    def counting(*args: object, **kwargs: object) -> torch.export.ExportedProgram:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(export_mod, "export_program", counting)
    outputs = {"openvino": tmp_path / "m.openvino.onnx", "onnx": tmp_path / "m.onnx"}
    manifests = compile_engines(ckpt, outputs)
    assert len(calls) == 1
    assert {m.layout for m in manifests.values()} == {"nchw"}
    eager = Detector.from_checkpoint(ckpt, refine="off")(str(SAMPLES[0]))
    assert len(eager) > 0
    for path in outputs.values():
        got = Detector.from_engine(path, refine="off")(str(SAMPLES[0]))
        assert len(got) > 0, path
