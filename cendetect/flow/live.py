"""Live sources for ``cendetect run --input_path``: a camera (``0``, ``/dev/video0``) or a stream
URL (``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``, ``srt://``), read by PyAV
(FFmpeg), as maskrcnn-benchmark's webcam demo reads its camera.

Frames are detected and composited as a video's are (:mod:`cendetect.flow.video`) and written either
to a video file (``--output_path out.mp4``: encoded as they come, into a hidden partial file
renamed when the run ends) or to a folder of frames (``frame_000000.png``, each written
atomically). The run ends when the source ends, after ``max_frames``, or on Ctrl-C: then the
encoder is flushed and the container closed, so the file up to that frame is complete and
playable.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cendetect.flow.images import OutputOptions, Summary
from cendetect.flow.stream import select
from cendetect.flow.video import encoder_for
from cendetect.io.atomic import write_image_atomic

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = ["LIVE_SCHEMES", "is_live_source", "live_open_args", "live_frames", "run_live"]

LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")
_VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")


def is_live_source(text: str) -> bool:
    """A camera index (``0``), a V4L2 device (``/dev/video0``) or a stream URL."""
    if re.fullmatch(r"\d+", text) or re.fullmatch(r"/dev/video\d+", text):
        return True
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    return scheme in LIVE_SCHEMES


def live_open_args(text: str) -> tuple[str, dict[str, Any]]:
    """``(file, keyword arguments of av.open)`` for a live source.

    A camera index N is ``/dev/videoN`` through FFmpeg's ``v4l2`` input; RTSP goes over TCP
    (fewer lost packets than UDP); every network source gets a 10 s read timeout, so a dead
    stream ends the run instead of hanging it.
    """
    if re.fullmatch(r"\d+", text):
        return f"/dev/video{int(text)}", {"format": "v4l2"}
    if text.startswith("/dev/video"):
        return text, {"format": "v4l2"}
    options = {"rw_timeout": "10000000"}  # microseconds
    if text.lower().startswith(("rtsp://", "rtsps://")):
        options = {"rtsp_transport": "tcp", "timeout": "10000000"}
    return text, {"options": options, "timeout": 10.0}


def live_frames(text: str) -> Iterator[tuple[np.ndarray, float]]:
    """BGR frames of a live source with their rate (frames per second, 25 when unknown).

    Raises:
        ValueError: no video stream.
        av.error.FFmpegError: the source cannot be opened or read.
    """
    import av

    file, kwargs = live_open_args(text)
    with av.open(file, **kwargs) as container:
        if not container.streams.video:
            raise ValueError(f"{text}: no video stream")
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="bgr24"), rate


def run_live(
    detector: Detector,
    source: str,
    output: Path,
    opts: OutputOptions,
    max_frames: int | None = None,
    frames: Iterator[tuple[np.ndarray, float]] | None = None,
) -> Summary:
    """Detect on every frame of ``source`` and write the result to ``output``.

    Args:
        detector: the model.
        source: camera index, ``/dev/videoN`` or stream URL (:func:`is_live_source`).
        output: a video file (its suffix one of .mp4 .mkv .mov .avi .webm) or a folder.
        opts: composite mode, dilation, confidence and classes, as ``cendetect run``.
        max_frames: stop after this many frames (None: until the source ends or Ctrl-C).
        frames: the frame source to use instead of opening ``source`` (tests, other readers).

    Returns the summary: frames processed; a source that cannot be read is one failure.
    """
    summary = Summary()
    t0 = time.perf_counter()
    to_video = output.suffix.lower() in _VIDEO_SUFFIXES
    stream = frames if frames is not None else live_frames(source)
    writer: Any = None
    tmp = output.with_name(f".{output.stem}.partial{output.suffix}")
    n = 0
    try:
        import av

        for image, rate in stream:
            det = select(detector(image), opts.confidence, opts.classes)
            if opts.mode == "mask":
                image = det.composite(image, mode="mask", dilate=opts.dilate)
            else:
                det.composite(image, mode=opts.mode, dilate=opts.dilate, inplace=True)
            if to_video:
                if writer is None:
                    output.parent.mkdir(parents=True, exist_ok=True)
                    container = av.open(str(tmp), "w")
                    vout = container.add_stream(encoder_for(output.suffix), rate=round(rate) or 25)
                    vout.width, vout.height = image.shape[1], image.shape[0]
                    vout.pix_fmt = "yuv420p"
                    writer = (container, vout)
                container, vout = writer
                vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
                vf.pts = n
                for p in vout.encode(vf):
                    container.mux(p)
            else:
                write_image_atomic(output / f"frame_{n:06d}.png", image)
            n += 1
            if max_frames is not None and n >= max_frames:
                break
    except KeyboardInterrupt:
        print(f"cendetect: {source}: stopped after {n} frames", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - reported; what was written is kept
        reason = f"cannot read the live source: {type(exc).__name__}: {exc}"
        summary.failed.append((source, reason))
        print(f"cendetect: {source}: {reason}", file=sys.stderr, flush=True)
    finally:
        with contextlib.suppress(Exception):
            stream.close()  # type: ignore[union-attr]  (a generator: its container closes)
        if writer is not None:
            container, vout = writer
            try:
                for p in vout.encode(None):
                    container.mux(p)
            finally:
                container.close()
            os.replace(tmp, output)
    summary.processed = n
    summary.seconds = time.perf_counter() - t0
    return summary
