"""Live sources (``cendetect run --input_path 0 | /dev/videoN | URL``): a stream the test
serves itself over loopback HTTP, a camera that is not there, and Ctrl-C through the frame
source interface (no camera device can be made on this machine)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cendetect.cli import main
from cendetect.flow.images import OutputOptions
from cendetect.flow.live import is_live_source, live_open_args, run_live
from tests.cli.conftest import make_image

av = pytest.importorskip("av")


def _clip(path: Path, n: int = 10) -> None:
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=10)
        vs.width, vs.height, vs.pix_fmt = 128, 96, "yuv420p"
        for i in range(n):
            for p in vs.encode(av.VideoFrame.from_ndarray(make_image(i % 3, 96, 128), "bgr24")):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)


def _frames(path: Path) -> int:
    with av.open(str(path)) as inp:
        return sum(1 for _ in inp.decode(video=0))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """``http://127.0.0.1:PORT/clip.mp4``, served from a thread for the test's duration."""
    root = tmp_path / "www"
    root.mkdir()
    _clip(root / "clip.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    finally:
        server.shutdown()
        thread.join(10)


def test_live_source_names() -> None:
    assert is_live_source("0") and is_live_source("/dev/video2")
    assert is_live_source("rtsp://cam/stream") and is_live_source("HTTP://x/y.mp4")
    assert not is_live_source("input") and not is_live_source("a/0.png")
    assert live_open_args("0") == ("/dev/video0", {"format": "v4l2"})
    file, kw = live_open_args("rtsp://cam/s")
    assert file == "rtsp://cam/s" and kw["options"]["rtsp_transport"] == "tcp"


def test_stream_url_to_video_file(served: str, tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.mp4"
    rc = main(
        ["run", "--input_path", served, "--output_path", str(out), "--checkpoint", str(tiny_ckpt),
         "--no-progress"]
    )  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert _frames(out) == 10 and "10 processed" in capsys.readouterr().out
    assert not list(tmp_path.glob(".out.partial*"))


def test_stream_url_to_frames_with_max_frames(served: str, tiny_ckpt: Path, tmp_path: Path) -> None:  # noqa: E501
    out = tmp_path / "frames"
    rc = main(
        ["run", "--input_path", served, "--output_path", str(out), "--checkpoint", str(tiny_ckpt),
         "--max-frames", "4", "--mode", "overlay"]
    )  # fmt: skip
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == [f"frame_{i:06d}.png" for i in range(4)]


def test_missing_camera_is_one_failure(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    rc = main(
        ["run", "--input_path", "9", "--output_path", str(tmp_path / "o.mp4"),
         "--checkpoint", str(tiny_ckpt)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "cannot read the live source" in err and "9" in err
    assert not (tmp_path / "o.mp4").exists()


def test_ctrl_c_leaves_a_playable_file(tiny_detector, tmp_path: Path) -> None:
    """Ctrl-C mid-stream (KeyboardInterrupt from the source, as a camera read would raise it):
    the frames so far are encoded, the container closed, the file renamed into place."""

    def camera() -> Iterator[tuple[np.ndarray, float]]:
        for i in range(1000):
            if i == 6:
                raise KeyboardInterrupt
            yield make_image(i % 3, 96, 128), 30.0

    out = tmp_path / "cam.mp4"
    summary = run_live(tiny_detector, "0", out, OutputOptions(), frames=camera())
    assert summary.processed == 6 and not summary.failed
    assert _frames(out) == 6
