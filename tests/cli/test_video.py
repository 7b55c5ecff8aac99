"""Videos through ``cendetect run``: same frame rate and frame count, audio copied."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from cendetect.cli import main
from tests.cli.conftest import make_image

av = pytest.importorskip("av")


def _make_video(path: Path, n: int = 12, rate: int = 15) -> None:
    """``n`` frames of 64x48 h264 at ``rate`` fps plus one second of mono AAC audio."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=rate)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuv420p"
        aus = out.add_stream("aac", rate=16000, layout="mono")
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(make_image(i % 3), format="bgr24")
            for p in vs.encode(frame):
                out.mux(p)
        t = np.arange(1024, dtype=np.float32)
        for k in range(16):
            af = av.AudioFrame.from_ndarray(
                np.sin(t * 0.05 + k)[None], format="fltp", layout="mono"
            )
            af.sample_rate, af.pts = 16000, k * 1024
            for p in aus.encode(af):
                out.mux(p)
        for s in (vs, aus):
            for p in s.encode(None):
                out.mux(p)


def _probe(path: Path) -> tuple[Fraction, int, str | None, int, list[np.ndarray]]:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        audio = c.streams.audio[0].codec_context.name if c.streams.audio else None
        frames, audio_packets = [], 0
        for packet in c.demux():
            if packet.stream.type == "audio" and packet.size:
                audio_packets += 1
            elif packet.stream.type == "video":
                frames += [f.to_ndarray(format="bgr24") for f in packet.decode()]
        return v.average_rate, len(frames), audio, audio_packets, frames


def test_video_keeps_rate_frames_and_audio(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    src = tmp_path / "in" / "clips" / "clip.mp4"
    src.parent.mkdir(parents=True)
    _make_video(src)
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            "--no-progress",
            "--input_path",
            str(tmp_path / "in"),
            "--output_path",
            str(out),
            "--checkpoint",
            str(tiny_ckpt),
            "--batch-size",
            "4",
        ]
    )
    stdout = capsys.readouterr().out
    assert rc == 0 and "1 processed" in stdout
    dst = out / "clips" / "clip.mp4"
    rate_in, n_in, audio_in, packets_in, _ = _probe(src)
    rate_out, n_out, audio_out, packets_out, frames = _probe(dst)
    assert (rate_out, n_out) == (rate_in, n_in) == (15, 12)
    assert audio_out == audio_in == "aac" and packets_out == packets_in
    # detected regions are green in the re-encoded frames (allowing for lossy coding)
    green = [(np.abs(f.astype(int) - (0, 255, 0)).max(axis=2) < 60).mean() for f in frames]
    assert max(green) > 0.01
    assert [p.name for p in dst.parent.iterdir()] == ["clip.mp4"]  # no temporary left
    rc = main(
        [
            "run",
            "--no-progress",
            "--input_path",
            str(tmp_path / "in"),
            "--output_path",
            str(out),
            "--checkpoint",
            str(tiny_ckpt),
        ]
    )
    assert rc == 0 and "1 skipped (1 already done)" in capsys.readouterr().out


def test_broken_video_is_reported_and_the_run_goes_on(
    tiny_ckpt: Path, tmp_path: Path, capsys
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    rc = main(
        [
            "run",
            "--no-progress",
            "--input_path",
            str(tmp_path / "in"),
            "--output_path",
            str(tmp_path / "o"),
            "--checkpoint",
            str(tiny_ckpt),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "broken.mkv: cannot process the video" in err
