"""Cascade Mask R-CNN R50-FPN (DCN c3-c5): parity with real mmdetection 2.28.2 and 3.3.0.

Fixtures: ``tests/data/mmdet{,3}/cascade_mask_rcnn_r50_fpn_dconv`` (see the README there). The
same matching rule and tolerances as ``tests/test_parity_mmdet.py`` (``tests/matching.py``), one
test per image, all eight images asserted (``UNSTABLE`` would hold a measured exception).
Engine artifacts (TorchScript, AOTI, ONNX) are compared with eager, with the tiers of
``tests/compile``.

Every test here runs the real network, whose backbone has deformable convolutions: until
``torch.ops.cendetect.deform_conv2d`` and ``backbone.dcn`` in the model builder exist, they skip
with that reason. ``tests/models/test_cascade.py`` covers the cascade head without DCN.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch

import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.*)
from cendetect import Detector
from cendetect.config_text import ConfigError, parse_config_text
from cendetect.engine import preprocess, to_detections
from tests.compile.matching import match_detections
from tests.conftest import DATA
from tests.matching import match_to_reference, own_spread
from tests.tolerances import BOX_IOU_MIN, PROGRAM_TOL, SCORE_TOL
from tests.weights import inexact_fixture_weights, save_mmdet3_checkpoint

ARCH = "cascade_mask_rcnn_r50_fpn_dconv"
ARCHS = [f"mmdet/{ARCH}", f"mmdet3/{ARCH}"]
IMAGE = DATA / "mmdet" / "images" / "china_640x427.jpg"
SMALL = (320, 224)  # img_scale of the engine tests: network inputs up to 320 x 320


def _dcn_missing() -> str | None:
    """Why the DCN network cannot be built here, or None when it can."""
    if not hasattr(torch.ops.cendetect, "deform_conv2d"):
        return "torch.ops.cendetect.deform_conv2d (deformable convolution op) is not available"
    from cendetect.models import build_model

    cfg = parse_config_text((DATA / ARCHS[0] / "config.py").read_text())
    try:
        build_model(cfg["model"])
    except ConfigError as exc:
        if "dcn" in str(exc):
            return f"the model builder does not build backbone.dcn yet: {exc}"
        raise
    return None


_MISSING = _dcn_missing()
needs_dcn = pytest.mark.skipif(_MISSING is not None, reason=str(_MISSING))


@pytest.fixture(scope="module")
def cascade_ckpts(cascade_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The fixture weights as an mmdet 2.x and an mmdet 3.x checkpoint."""
    out = tmp_path_factory.mktemp("cascade")
    return {
        ARCHS[0]: cascade_ckpt,  # session-wide: the ONNX test builds from the same file
        ARCHS[1]: save_mmdet3_checkpoint(DATA / ARCHS[1], out / "cascade3.pth"),
    }


@pytest.fixture(scope="module")
def eager(cascade_ckpts: dict[str, Path]) -> Detector:
    return Detector.from_checkpoint(cascade_ckpts[ARCHS[0]], device="cpu", refine="off")


@needs_dcn
@pytest.mark.parametrize("arch", ARCHS)
def test_state_dict_names_and_shapes_equal_mmdetection(arch: str) -> None:
    from cendetect.models import build_model

    keys = json.loads((DATA / arch / "keys.json").read_text())
    cfg = parse_config_text((DATA / arch / "config.py").read_text())
    model = build_model(cfg["model"])
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert ours == keys


IMAGES = sorted(p.name for p in (DATA / "mmdet" / "images").iterdir())

# Images whose detections would hinge on float noise on this machine, with the reason; empty
# now. The 2.x kite and astronaut images used to fail here: the RPN's objectness saturates (87
# of 1000 proposals score exactly 1.0 on kite), and which tied box survives the RPN NMS depends
# on the order mmcv's ``torch.sort`` gives ties; our RPN now visits ties in that same order
# (``cendetect/models/rpn.py``) and both match.
UNSTABLE: dict[tuple[str, str], str] = {}
CASES = [
    pytest.param(
        arch,
        image,
        marks=[pytest.mark.xfail(reason=UNSTABLE[arch, image], strict=False)]
        if (arch, image) in UNSTABLE
        else [],
        id=f"{arch.split('/')[0]}-{image}",
    )
    for arch in ARCHS
    for image in IMAGES
]


@pytest.fixture(scope="module")
def detectors(cascade_ckpts: dict[str, Path]) -> dict[str, Detector]:
    return {
        arch: Detector.from_checkpoint(ckpt, device="cpu", refine="off")
        for arch, ckpt in cascade_ckpts.items()
    }


@needs_dcn
@pytest.mark.slow
@pytest.mark.parametrize(("arch", "image"), CASES)
def test_matches_mmdetection(
    arch: str, image: str, detectors: dict[str, Detector], fixture_threads: int
) -> None:
    if inexact_fixture_weights():
        pytest.skip(inexact_fixture_weights())
    expected = json.loads((DATA / arch / "expected.json").read_text())
    det = detectors[arch]
    assert det.class_names == tuple(expected["classes"])
    assert type(det.model.roi_head).__name__ == "CascadeRoIHead"
    reference = expected["images"][image]
    res = det(DATA / "mmdet" / "images" / image)
    allow = own_spread(arch, image)
    rep = match_to_reference(
        res.boxes, res.scores, res.labels, res.masks, reference, allowance=allow
    )
    print(f"{image}: {rep}")
    # up to 2 reference detections may be missing only at the 100-detection cut (ties there
    # swap on float noise; match_to_reference reports any other unmatched one as a problem),
    # and as many more as mmdetection itself leaves unmatched on this code path (own_spread)
    least = len(reference) - 2 - allow.unmatched
    assert rep.matched >= least, f"{image}: only {rep.matched} matched"
    assert not rep.problems, "\n".join(rep.problems[:20])


def _raw_close(a: tuple, b: tuple) -> None:
    """TorchScript tier (``tests.tolerances.PROGRAM_TOL``): floats within 1e-4, labels and
    image ids equal."""
    assert torch.equal(a[2], b[2])
    assert torch.equal(a[4], b[4])
    for x, y in ((a[0], b[0]), (a[1], b[1]), (a[3], b[3])):
        torch.testing.assert_close(x, y, atol=PROGRAM_TOL, rtol=PROGRAM_TOL)


@needs_dcn
@pytest.mark.slow
def test_torchscript_artifact_matches_eager(
    eager: Detector, cascade_ckpts: dict[str, Path], tmp_path: Path
) -> None:
    from cendetect.compile.build import compile_engine
    from cendetect.engine.runners import load_engine

    out = tmp_path / "cascade.ts"
    compile_engine(cascade_ckpts[ARCHS[0]], out, engine="torchscript")
    runner = load_engine(out)
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    batch = preprocess([cv2.imread(str(IMAGE))], cfg)
    with torch.inference_mode():
        ref = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
        got = runner(batch)
    assert ref[0].shape[0] > 0, "the test needs detections"
    _raw_close(ref, got)


@needs_dcn
@pytest.mark.slow
def test_aoti_artifact_matches_eager(
    eager: Detector,
    cascade_ckpts: dict[str, Path],
    export_engines: Callable[..., dict[str, Path]],
) -> None:
    from cendetect.engine.runners import load_engine

    # built with the ONNX engine of test_onnx_artifact_matches_eager, from one export
    runner = load_engine(export_engines(cascade_ckpts[ARCHS[0]])["aoti"])
    batch = preprocess(
        [cv2.imread(str(IMAGE))], dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    )
    with torch.inference_mode():
        ref_raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
        out_raw = runner(batch)
    assert ref_raw[0].shape[0] > 0, "the test needs detections"
    (ref,) = to_detections(ref_raw, batch, eager.class_names, eager.mask_threshold)
    (got,) = to_detections(out_raw, batch, eager.class_names, eager.mask_threshold)
    # compiled kernels reorder float operations: match by IoU (tests/compile/test_aoti_engine.py)
    rep = match_detections(ref, got, box_iou_thr=BOX_IOU_MIN)
    assert len(got) == len(ref)
    assert rep.matched == rep.total, f"{rep.matched}/{rep.total} matched"
    assert rep.max_score_diff <= SCORE_TOL
    # each mask within the pixels a threshold flip explains, and a mean over the image's
    # masks that flipped pixels cannot move
    assert all(ok for _, _, ok in rep.mask_diffs), rep.mask_diffs
    assert rep.mean_mask_iou >= 0.98


@needs_dcn
@pytest.mark.slow
def test_onnx_artifact_matches_eager(
    eager: Detector, cascade_ckpts: dict[str, Path], export_engines: Callable[..., dict[str, Path]]
) -> None:
    """The 3-stage cascade with deformable convolutions (GridSample in ONNX) in onnxruntime:
    every eager detection matched at box IoU 0.99 on two fixture images of different sizes."""
    from cendetect.engine.runners import load_engine
    from tests.compile.matching import engine_parity

    onnx = pytest.importorskip("onnx", reason="onnx is not installed (cendetect[onnx])")
    # built with the AOTI engine above, from one export
    out = export_engines(cascade_ckpts[ARCHS[0]]).get("onnx")
    if out is None:
        pytest.skip("the onnx extra is not installed (pip install 'cendetect[onnx]')")
    model = onnx.load(str(out), load_external_data=False)
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, "non-standard ops"
    assert any(n.op_type == "GridSample" for n in model.graph.node)
    images = [DATA / "mmdet" / "images" / n for n in ("astronaut_512.png", "kite_1024x576.png")]
    # A mask of a few dozen pixels loses ~3 % IoU per flipped pixel: the cascade's three stages
    # carry the float noise of the random weights furthest (measured min 0.969-0.972 on astronaut)
    print(engine_parity(eager, load_engine(out), images, SMALL, min_mask_iou=0.95))
