"""AOTInductor engine (``.pt2``, dynamic H/W): one compile per test session, small max size.

The compiled kernels fuse and reorder float operations, so raw tensors differ from eager by
float noise that the random-weight fixture amplifies; detections are therefore matched by IoU
(STYLE.md, ``engine_parity``): same label, box IoU >= 0.99, score within 1e-3, each mask within
the pixels ``tests.tolerances.masks_agree`` allows or at IoU >= 0.98, mean mask IoU >= 0.99.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import pytest
import torch

from cendetect import Detector
from cendetect.engine import preprocess
from cendetect.engine.runners import EngineError, load_engine, read_manifest
from tests.compile.matching import engine_parity
from tests.conftest import DATA

IMAGES = sorted((DATA / "mmdet" / "images").iterdir())
SMALL = (320, 224)  # img_scale for the test: network inputs up to 320 x 320


@pytest.fixture(scope="session")
def r50_pt2(mmdet2_r50_ckpt: Path, export_engines: Callable[..., dict[str, Path]]) -> Path:
    return export_engines(mmdet2_r50_ckpt, ("aoti",))["aoti"]


@pytest.fixture(scope="module")
def eager(mmdet2_r50_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


@pytest.mark.slow
def test_manifest_of_pt2(r50_pt2: Path) -> None:
    from torch.export.pt2_archive._package import load_pt2

    m = read_manifest(r50_pt2)
    assert (m.engine, m.precision, m.device) == ("aoti", "fp32", "cpu")
    # 64 was asked for; the exported program takes sides from 96 (the stride-64 level would be
    # 1 pixel at 64), and the manifest records what the program takes
    assert (m.input.min, m.input.opt, m.input.max) == ((96, 96), (224, 320), (320, 320))
    assert not m.input.any_size
    # torch's own reader sees the same file as an extra file of the package
    assert "cendetect_manifest.json" in load_pt2(r50_pt2).extra_files


@pytest.mark.slow
def test_aoti_matches_eager_at_several_sizes(eager: Detector, r50_pt2: Path) -> None:
    print(engine_parity(eager, load_engine(r50_pt2), IMAGES, SMALL))


@pytest.mark.slow
def test_batch_runs_image_by_image(eager: Detector, r50_pt2: Path) -> None:
    runner = load_engine(r50_pt2)
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    imgs = [cv2.imread(str(p)) for p in IMAGES[:2]]
    both = runner(preprocess(imgs, cfg))
    for i, img in enumerate(imgs):
        alone = runner(preprocess([img], cfg))
        sel = both[4] == i
        # exact: the runner crops each image of the batch to its own padded size, so the
        # program runs on the very tensor it gets alone (as the two-thread test below relies on)
        torch.testing.assert_close(both[0][sel], alone[0], rtol=0, atol=0)
        assert torch.equal(both[2][sel], alone[2])


@pytest.mark.slow
def test_too_large_input_is_refused_with_the_fix(r50_pt2: Path) -> None:
    det = Detector.from_engine(r50_pt2, refine="off")
    with pytest.raises(EngineError, match="exceeds the largest size .* --max-size"):
        det(IMAGES[0])


_TWO_THREADS = """
import dataclasses, sys, threading
import cv2
import numpy as np
from cendetect import Detector
det = Detector.from_engine(sys.argv[1], refine="off")
det.preprocess_cfg = dataclasses.replace(det.preprocess_cfg, img_scale=(320, 224))
img = cv2.imread(sys.argv[2])
alone = det.predict([img])[0]
out = {}
def call(k):
    out[k] = det.predict([img])[0]
threads = [threading.Thread(target=call, args=(k,)) for k in range(2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
for k in range(2):
    assert np.array_equal(out[k].boxes, alone.boxes), k
print("ok", len(alone), det.concurrent)
"""


@pytest.mark.slow
def test_calls_from_two_threads_finish(r50_pt2: Path, tmp_path: Path) -> None:
    """Two threads calling one AOTI engine at once (``cendetect run --streams 2``, a user's
    thread pool) deadlocked in torch 2.13's package runner until calls were serialised
    (``engine.runners.aoti.OneCallAtATime``). In a subprocess, so a regression times out here
    instead of hanging the suite."""
    import subprocess
    import sys

    script = tmp_path / "two_threads.py"
    script.write_text(_TWO_THREADS)
    repo = Path(__file__).resolve().parents[2]
    limit = 240
    try:
        proc = subprocess.run(
            [sys.executable, str(script), str(r50_pt2), str(IMAGES[0])],
            capture_output=True,
            text=True,
            timeout=limit,
            cwd=repo,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"two threads calling one AOTI engine did not finish in {limit} s (deadlock)")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[::2] == ["ok", "False"], proc.stdout  # ok, concurrent=False
