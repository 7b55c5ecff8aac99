"""Videos: every frame detected and composited, same frame rate, audio copied (PyAV).

A reader thread demuxes and decodes into a bounded queue while the main thread runs the model
on batches of frames and encodes the results, so memory stays at a few batches whatever the
video's length. Frames keep their timestamps (and so the frame rate, constant or not); audio
packets are copied into the output without re-encoding. The output is written to a hidden
temporary file beside the destination and renamed when complete.
"""

from __future__ import annotations

import contextlib
import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cendetect.flow.images import OutputOptions, Summary
from cendetect.flow.stream import select
from cendetect.io.discovery import output_paths

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = ["process_video", "run_videos"]

#: video encoder per container (the first one this PyAV build has is used)
ENCODERS = {
    ".mp4": ("libx264", "h264", "mpeg4"),
    ".mov": ("libx264", "h264", "mpeg4"),
    ".mkv": ("libx264", "h264", "mpeg4"),
    ".webm": ("libvpx", "libvpx-vp9"),
    ".avi": ("mpeg4", "libx264"),
}
_END = object()


def encoder_for(suffix: str) -> str:
    """The first PyAV encoder this build has for a video file suffix (``.mp4`` ...)."""
    import av

    for name in ENCODERS.get(suffix.lower(), ("libx264", "mpeg4")):
        if name in av.codecs_available:
            return name
    raise ValueError(f"no video encoder for {suffix} in this PyAV build")


def _reader(
    container: Any, streams: list[Any], out: queue.Queue[Any], stop: threading.Event
) -> None:
    """Demux and decode into ``out``: ("audio", packet) and ("video", pts, BGR array) items."""

    def put(item: Any) -> None:
        while not stop.is_set():  # never block forever on a consumer that has given up
            with contextlib.suppress(queue.Full):
                out.put(item, timeout=0.1)
                return

    try:
        video = streams[0]
        for packet in container.demux(*streams):
            if stop.is_set():
                break
            if packet.stream.index != video.index:
                if packet.dts is not None:
                    put(("audio", packet))
                continue
            # demux ends with an empty packet per stream, whose decode() flushes the decoder
            for frame in packet.decode():
                put(("video", frame.pts, frame.to_ndarray(format="bgr24")))
        put(_END)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer
        put(exc)


def process_video(
    detector: Detector,
    src: Path,
    dst: Path,
    opts: OutputOptions,
    batch_size: int = 4,
    progress: bool = False,
) -> int:
    """Write ``dst``: ``src`` with every frame composited; returns the number of frames.

    Raises:
        ValueError: no video stream, or no encoder for ``dst``'s container.
        av.error.FFmpegError: the file cannot be demuxed, decoded or encoded.
    """
    import av
    from tqdm import tqdm

    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.stem}.partial{dst.suffix}")
    frames = 0
    with av.open(str(src)) as inp:
        if not inp.streams.video:
            raise ValueError("no video stream")
        vin = inp.streams.video[0]
        ain = inp.streams.audio[0] if inp.streams.audio else None
        vin.thread_type = "AUTO"
        rate = vin.average_rate or vin.guessed_rate or 25
        items: queue.Queue[Any] = queue.Queue(maxsize=2 * batch_size + 2)
        stop = threading.Event()
        streams = [vin] + ([ain] if ain is not None else [])
        reader = threading.Thread(target=_reader, args=(inp, streams, items, stop), daemon=True)
        bar = tqdm(total=vin.frames or None, unit="frame", disable=not progress, leave=False,
                   desc=src.name, file=sys.stderr)  # fmt: skip
        try:
            with av.open(str(tmp), "w") as out:
                vout = out.add_stream(encoder_for(dst.suffix), rate=rate)
                vout.width, vout.height = vin.codec_context.width, vin.codec_context.height
                vout.pix_fmt = "yuv420p"
                aout = out.add_stream_from_template(ain) if ain is not None else None
                batch: list[tuple[int | None, np.ndarray]] = []

                def flush() -> None:
                    nonlocal frames
                    if not batch:
                        return
                    dets = detector.predict([im for _, im in batch])
                    for (pts, image), det in zip(batch, dets, strict=True):
                        det = select(det, opts.confidence, opts.classes)
                        if opts.mode == "mask":
                            image = det.composite(image, mode="mask", dilate=opts.dilate)
                        else:
                            det.composite(image, mode=opts.mode, dilate=opts.dilate, inplace=True)
                        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
                        if pts is None:  # no timestamp: number the frames at the frame rate
                            vf.pts, vf.time_base = frames, 1 / rate
                        else:
                            vf.pts, vf.time_base = pts, vin.time_base
                        for p in vout.encode(vf):
                            out.mux(p)
                        frames += 1
                    bar.update(len(batch))
                    batch.clear()

                reader.start()
                while (item := items.get()) is not _END:
                    if isinstance(item, BaseException):
                        raise item
                    if item[0] == "audio":
                        item[1].stream = aout
                        out.mux(item[1])
                        continue
                    batch.append((item[1], item[2]))
                    if len(batch) >= batch_size:
                        flush()
                flush()
                for p in vout.encode(None):
                    out.mux(p)
            os.replace(tmp, dst)
        finally:
            bar.close()
            stop.set()  # the reader notices within 0.1 s
            if reader.is_alive():
                reader.join(timeout=10)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return frames


def run_videos(
    detector: Detector,
    videos: Sequence[Path],
    input_root: Path,
    output_root: Path,
    opts: OutputOptions,
    batch_size: int = 4,
    overwrite: bool = False,
    progress: bool | None = None,
) -> Summary:
    """Process ``videos`` one after the other; outputs keep sub-folders and the container."""
    summary = Summary()
    t0 = time.perf_counter()
    show = sys.stderr.isatty() if progress is None else progress
    by_suffix: dict[str, list[Path]] = {}
    for v in videos:
        by_suffix.setdefault(v.suffix.lower(), []).append(v)
    targets: dict[Path, Path] = {}
    for suffix, group in by_suffix.items():
        targets.update(output_paths(group, input_root, output_root, suffix=suffix))
    for src in videos:
        dst = targets[src]
        if dst.exists() and not overwrite:
            summary.skip("already done")
            continue
        try:
            process_video(detector, src, dst, opts, batch_size=batch_size, progress=show)
        except Exception as exc:  # noqa: BLE001 - one bad video must not stop the run
            reason = f"cannot process the video: {type(exc).__name__}: {exc}"
            summary.failed.append((str(src), reason))
            print(f"cendetect: {src}: {reason}", file=sys.stderr, flush=True)
            continue
        summary.processed += 1
    summary.seconds = time.perf_counter() - t0
    return summary
