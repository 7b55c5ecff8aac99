"""PointRend R50-FPN: eager inference reproduces the real mmdetection 2.28.2 outputs, and the
TorchScript / AOTInductor / ONNX (onnxruntime) paths reproduce eager.

The checkpoint is the ``point_rend_r50_fpn`` parity fixture rebuilt by the seeded-weight rule
(``tests/data/mmdet/README.md``) and saved in mmdetection 2.x layout, so the whole normal path
runs: checkpoint loading, the embedded config (caffe-style ResNet, BGR caffe normalisation),
the builder, pre-processing, the model, and pasting the 224 x 224 masks at full resolution.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch

from cendetect import Detector
from cendetect.config import preprocess_config_from
from cendetect.config_text import parse_config_text
from cendetect.engine import preprocess, to_detections
from tests.conftest import DATA
from tests.matching import match_to_reference, own_spread
from tests.tolerances import BOX_IOU_MIN, PROGRAM_TOL, SCORE_TOL
from tests.weights import inexact_fixture_weights

ARCH = DATA / "mmdet" / "point_rend_r50_fpn"
IMAGES = DATA / "mmdet" / "images"
SMALL = (320, 224)  # reduced img_scale for the TorchScript / AOTI comparisons (2 slow cores)


@pytest.fixture(scope="module")
def eager(point_rend_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(point_rend_ckpt, device="cpu", refine="off")


def _assert_raw_close(a: tuple, b: tuple) -> None:
    """TorchScript tier (``tests.tolerances.PROGRAM_TOL``): floats within 1e-4, labels and
    image ids equal."""
    boxes_a, scores_a, labels_a, masks_a, ids_a = a
    boxes_b, scores_b, labels_b, masks_b, ids_b = b
    assert torch.equal(labels_a, labels_b)
    assert torch.equal(ids_a, ids_b)
    for x, y in ((boxes_a, boxes_b), (scores_a, scores_b), (masks_a, masks_b)):
        torch.testing.assert_close(x, y, atol=PROGRAM_TOL, rtol=PROGRAM_TOL)


def test_state_dict_names_and_shapes_equal_mmdetection() -> None:
    from cendetect.models import build_model

    keys = json.loads((ARCH / "keys.json").read_text())
    cfg = parse_config_text((ARCH / "config.py").read_text())
    model = build_model(cfg["model"])
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert ours == keys


def test_zoo_entry_is_the_fixture_architecture() -> None:
    from cendetect.models import build_model
    from cendetect.zoo import ZOO_IMG_NORM, zoo_model_config

    keys = json.loads((ARCH / "keys.json").read_text())
    model = build_model(zoo_model_config("point_rend_r50_fpn", 2))
    assert [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()] == keys
    head = model.roi_head
    assert (head.subdivision_steps, head.num_points, head.scale_factor) == (5, 784, 2)
    # caffe style: a bottleneck's stride sits on its first 1x1 convolution
    assert model.backbone.layer2[0].conv1.stride == (2, 2)
    pre = preprocess_config_from(parse_config_text((ARCH / "config.py").read_text()))
    norm = ZOO_IMG_NORM["point_rend_r50_fpn"]
    assert (pre.mean, pre.std, pre.to_rgb) == (norm["mean"], norm["std"], norm["to_rgb"])


@pytest.mark.slow
def test_matches_mmdetection(eager: Detector, fixture_threads: int) -> None:
    if inexact_fixture_weights():
        pytest.skip(inexact_fixture_weights())
    expected = json.loads((ARCH / "expected.json").read_text())
    assert eager.class_names == tuple(expected["classes"])
    pre = eager.preprocess_cfg
    assert (pre.mean, pre.std, pre.to_rgb) == ((103.53, 116.28, 123.675), (1.0, 1.0, 1.0), False)
    assert len(expected["images"]) == 4
    problems = []
    for name, reference in expected["images"].items():
        res = eager(IMAGES / name)
        assert res.masks.shape[1:] == cv2.imread(str(IMAGES / name)).shape[:2]
        allow = own_spread("mmdet/point_rend_r50_fpn", name)
        rep = match_to_reference(
            res.boxes, res.scores, res.labels, res.masks, reference, allowance=allow
        )
        print(f"{name}: {rep}")
        problems += [f"{name}: {p}" for p in rep.problems]
        # only detections at the 100-detection cut may go unmatched (ties, tests/matching.py),
        # and as many more as mmdetection itself leaves unmatched on this code path
        least = len(reference) - 2 - allow.unmatched
        assert rep.matched >= least, f"{name}: only {rep.matched} matched"
    assert not problems, "\n".join(problems[:20])


def _small_batch(det: Detector, name: str = "china_640x427.jpg"):
    cfg = dataclasses.replace(det.preprocess_cfg, img_scale=SMALL)
    return preprocess([cv2.imread(str(IMAGES / name))], cfg)


@pytest.mark.slow
def test_torchscript_matches_eager(eager: Detector) -> None:
    batch = _small_batch(eager)
    args = (batch.images, batch.image_sizes, batch.scale_factors)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.13 warns that TorchScript is deprecated
        scripted = torch.jit.script(eager.model)
    with torch.inference_mode():
        ref = eager.model(*args)
        out = scripted(*args)
    assert ref[0].shape[0] > 0 and ref[3].shape[1:] == (224, 224)
    _assert_raw_close(ref, out)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["torchscript", "aoti"])
def test_compiled_artifact_matches_eager(
    eager: Detector,
    point_rend_ckpt: Path,
    export_engines: Callable[..., dict[str, Path]],
    tmp_path: Path,
    engine: str,
) -> None:
    from cendetect.compile.build import compile_engine
    from cendetect.engine.runners import load_engine
    from tests.compile.matching import match_detections

    if engine == "torchscript":
        out = tmp_path / "pr.ts"
        compile_engine(point_rend_ckpt, out)
    else:  # built with the ONNX engine of test_onnx_artifact_matches_eager, one export
        out = export_engines(point_rend_ckpt)["aoti"]
    runner = load_engine(out)
    batch = _small_batch(eager)
    with torch.inference_mode():
        ref_raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
        out_raw = runner(batch)
    assert ref_raw[0].shape[0] > 0, "the test needs detections"
    if engine == "torchscript":
        _assert_raw_close(ref_raw, out_raw)
        return
    # Inductor fuses and reorders float operations: match by IoU (tests/compile tier)
    names = eager.class_names
    (ref,) = to_detections(ref_raw, batch, names, eager.mask_threshold)
    (got,) = to_detections(out_raw, batch, names, eager.mask_threshold)
    rep = match_detections(ref, got, box_iou_thr=BOX_IOU_MIN)
    assert len(got) == len(ref)
    assert rep.matched == rep.total, f"{rep.matched}/{rep.total} matched"
    assert rep.max_score_diff <= SCORE_TOL
    # each mask within the pixels a threshold flip explains; the mean over the image's masks
    assert all(ok for _, _, ok in rep.mask_diffs), rep.mask_diffs
    assert rep.mean_mask_iou >= 0.98, f"mean mask IoU {rep.mean_mask_iou:.4f}"


@pytest.mark.slow
def test_onnx_artifact_matches_eager(
    eager: Detector, point_rend_ckpt: Path, export_engines: Callable[..., dict[str, Path]]
) -> None:
    """PointRend (point sampling on top-k uncertainty, data-dependent) in onnxruntime: every
    eager detection matched at box IoU 0.99 on two fixture images of different network sizes
    (224x224, 192x320; two, not four, to keep the suite's time: eager PointRend with 100
    refined masks takes ~5 s per image)."""
    from cendetect.engine.runners import load_engine
    from tests.compile.matching import engine_parity

    onnx = pytest.importorskip("onnx", reason="onnx is not installed (cendetect[onnx])")
    # built with the AOTI engine above, from one export
    out = export_engines(point_rend_ckpt).get("onnx")
    if out is None:
        pytest.skip("the onnx extra is not installed (pip install 'cendetect[onnx]')")
    model = onnx.load(str(out), load_external_data=False)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, "non-standard ops"
    images = [DATA / "mmdet" / "images" / n for n in ("astronaut_512.png", "kite_1024x576.png")]
    print(engine_parity(eager, load_engine(out), images, SMALL, min_mask_iou=0.95))
