"""Eager inference reproduces the real mmdetection 2.28.2 / 3.3.0 outputs on the fixtures."""

from __future__ import annotations

import json

import pytest

from cendetect import Detector
from tests.conftest import DATA
from tests.matching import match_to_reference, own_spread
from tests.weights import inexact_fixture_weights

CASES = [
    ("mmdet/mask_rcnn_r50_fpn", "mmdet2_r50_ckpt"),
    ("mmdet/mask_rcnn_r101_fpn", "mmdet2_r101_ckpt"),
    ("mmdet3/mask_rcnn_r50_fpn", "mmdet3_r50_ckpt"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "ckpt_fixture"), CASES, ids=[c[0] for c in CASES])
def test_matches_mmdetection(
    arch: str, ckpt_fixture: str, request: pytest.FixtureRequest, fixture_threads: int
) -> None:
    if inexact_fixture_weights():
        pytest.skip(inexact_fixture_weights())
    expected = json.loads((DATA / arch / "expected.json").read_text())
    # the model's masks as pasted: refinement is our post-processing (tests/engine/test_refine.py)
    ckpt = request.getfixturevalue(ckpt_fixture)
    det = Detector.from_checkpoint(ckpt, device="cpu", refine="off")
    assert det.class_names == tuple(expected["classes"])
    problems = []
    for name, reference in expected["images"].items():
        res = det(DATA / "mmdet" / "images" / name)
        allow = own_spread(arch, name)
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


@pytest.mark.parametrize(
    "arch", ["mmdet/mask_rcnn_r50_fpn", "mmdet/mask_rcnn_r101_fpn", "mmdet3/mask_rcnn_r50_fpn"]
)
def test_state_dict_names_and_shapes_equal_mmdetection(arch: str) -> None:
    from cendetect.config_text import parse_config_text
    from cendetect.models import build_model

    keys = json.loads((DATA / arch / "keys.json").read_text())
    cfg = parse_config_text((DATA / arch / "config.py").read_text())
    model = build_model(cfg["model"])
    ours = [[k, list(v.shape), str(v.dtype)] for k, v in model.state_dict().items()]
    assert ours == keys
