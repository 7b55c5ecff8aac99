"""TorchScript engine: eager vs scripted vs saved-and-loaded artifact on the fixture images.

Tier (STYLE.md): raw detections within 1e-4, labels and image ids equal; the images go through
the normal pre-processing and the results through the normal post-processing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from cendetect import Detector
from cendetect.compile.torchscript import script_model
from cendetect.engine import preprocess
from cendetect.engine.runners import load_engine
from tests.conftest import DATA
from tests.tolerances import SCORE_TOL, masks_agree

IMAGES = sorted((DATA / "mmdet" / "images").iterdir())


@pytest.fixture(scope="module")
def eager(mmdet2_r50_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


def assert_raw_close(a: tuple, b: tuple) -> None:
    """The TorchScript tier (STYLE.md): the artifact runs eager's kernels on the same input in
    one process, so floats differ only where TorchScript fuses or reorders an operation (the
    tiny R50 engine measured bit-equal to eager on every ISA level), which 1e-4 bounds; labels
    and image ids are equal."""
    boxes_a, scores_a, labels_a, masks_a, ids_a = a
    boxes_b, scores_b, labels_b, masks_b, ids_b = b
    assert torch.equal(labels_a, labels_b)
    assert torch.equal(ids_a, ids_b)
    torch.testing.assert_close(boxes_a, boxes_b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores_a, scores_b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(masks_a, masks_b, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_loaded_artifact_matches_eager_on_fixture_images(eager: Detector, r50_ts: Path) -> None:
    import cv2

    runner = load_engine(r50_ts)
    for path in IMAGES:
        batch = preprocess([cv2.imread(str(path))], eager.preprocess_cfg)
        with torch.inference_mode():
            ref = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
            out = runner(batch)
        assert ref[0].shape[0] > 0, f"{path.name}: the test needs detections"
        assert_raw_close(ref, out)


@pytest.mark.slow
def test_scripted_in_memory_matches_eager(eager: Detector) -> None:
    import cv2

    scripted = script_model(eager.model)
    # two images of different sizes in one batch, at a reduced scale to keep the test short
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=(480, 320))
    batch = preprocess([cv2.imread(str(p)) for p in IMAGES[:2]], cfg)
    with torch.inference_mode():
        ref = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
        assert_raw_close(ref, scripted(batch.images, batch.image_sizes, batch.scale_factors))


@pytest.mark.slow
def test_detector_from_engine_gives_eager_results(eager: Detector, r50_ts: Path) -> None:
    det = Detector.from_engine(r50_ts, refine="off")
    assert det.preprocess_cfg == eager.preprocess_cfg
    assert det.mask_threshold == eager.mask_threshold
    # the public API end to end (decode, pre-process, engine, paste); a reduced scale keeps
    # the test short, on both sides alike
    small = dataclasses.replace(eager.preprocess_cfg, img_scale=(480, 320))
    det.preprocess_cfg = small
    ref_det = Detector(eager.model, eager.class_names, small, refine="off")
    path = DATA / "mmdet" / "images" / "astronaut_512.png"
    ref, out = ref_det(path), det(path)
    assert len(ref) > 0
    assert out.class_names == ref.class_names
    assert (out.labels == ref.labels).all()
    torch.testing.assert_close(
        torch.from_numpy(out.boxes), torch.from_numpy(ref.boxes), atol=1e-4, rtol=1e-4
    )
    # probabilities within 1e-4 (the tier) may still put a full-resolution pixel on the other
    # side of the 0.5 threshold: counted per mask (reason 2 of tests/tolerances.py)
    for a, b in zip(out.masks, ref.masks, strict=True):
        ok, diff, union = masks_agree(a, b)
        assert ok, f"masks differ in {diff} of {union} pixels"


@pytest.mark.slow
def test_channels_last_fp32_engine_matches_eager(
    eager: Detector, mmdet2_r50_ckpt: Path, tmp_path: Path
) -> None:
    # fp32 in channels-last memory with BatchNorm folded: equal to eager up to float rounding,
    # so matched by IoU as the AOTI engine is (test_aoti_engine.py), not compared at 1e-4.
    import cv2

    from cendetect.compile.build import compile_engine
    from cendetect.engine import to_detections
    from cendetect.engine.runners import EngineError, read_manifest
    from cendetect.models.layers import FrozenBatchNorm2d
    from tests.compile.matching import match_detections

    out = tmp_path / "r50_nhwc.ts"
    manifest = compile_engine(mmdet2_r50_ckpt, out, channels_last=True)
    assert (manifest.precision, manifest.layout) == ("fp32", "channels_last")
    assert read_manifest(out).layout == "channels_last"
    runner = load_engine(out)
    # the eager model keeps its BatchNorms (the engine folded a copy)
    assert any(isinstance(m, FrozenBatchNorm2d) for m in eager.model.modules())
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=(320, 224))
    for path in IMAGES:
        batch = preprocess([cv2.imread(str(path))], cfg)
        with torch.inference_mode():
            ref_raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
            out_raw = runner(batch)
        assert out_raw[0].dtype == torch.float32
        names = eager.class_names
        (ref,) = to_detections(ref_raw, batch, names, eager.mask_threshold)
        (got,) = to_detections(out_raw, batch, names, eager.mask_threshold)
        # the compiled-engine bars (STYLE.md): folded BatchNorm and NHWC convolutions sum in
        # other orders, so a detection at an NMS near-tie or at the 100-detection cut may trade
        # places (reason 3 of tests/tolerances.py; onnxruntime's fused 'all' level lost 2 of 100
        # that way, test_onnx_engine.py), scores carry network noise (SCORE_TOL), mask edges
        # flip (mean IoU, the engine_parity bar)
        rep = match_detections(ref, got, box_iou_thr=0.99)
        assert rep.matched >= 0.97 * rep.total, f"{path.name}: {rep.matched}/{rep.total}"
        assert rep.max_score_diff <= SCORE_TOL, path.name
        assert rep.mean_mask_iou >= 0.98, f"{path.name}: mean mask IoU {rep.mean_mask_iou:.4f}"
    with pytest.raises(EngineError, match="--channels-last is for TorchScript"):
        compile_engine(mmdet2_r50_ckpt, tmp_path / "x.pt2", engine="aoti", channels_last=True)
    # the default TorchScript fp32 engine stays NCHW (bit-equal to eager)
    assert compile_engine(mmdet2_r50_ckpt, tmp_path / "n.ts").layout == "nchw"
