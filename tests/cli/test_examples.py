"""The examples run as documented (on the tests' tiny checkpoint)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2

from tests.cli.conftest import make_image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_video_opencv_example(tiny_ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "in.avi"
    writer = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    assert writer.isOpened(), "this OpenCV build cannot write MJPG/AVI"
    for i in range(5):
        writer.write(make_image(i))
    writer.release()
    dst = tmp_path / "out.mp4"
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "video_opencv.py"), str(src), str(dst),
         "--checkpoint", str(tiny_ckpt), "--batch-size", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "5 frames written" in proc.stdout and "OPEX" in proc.stdout
    capture = cv2.VideoCapture(str(dst))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 5 and capture.get(cv2.CAP_PROP_FPS) == 10
