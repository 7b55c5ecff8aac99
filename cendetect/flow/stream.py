"""Streaming detection: frames in, :class:`Detections` out, in order, with bounded look-ahead.

:func:`detect_stream` is what ``Detector`` uses for iterators of frames (paths or BGR arrays):
paths are decoded in worker threads while the model runs on the previous batch, at most
``lookahead`` frames are held ahead of the one being returned, and results come back in input
order. :func:`decoded_in_order` is the decoding stage alone, shared with the folder pipeline
(:mod:`cendetect.flow.images`), and :func:`select` applies the confidence and class filters.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

import numpy as np

from cendetect.engine.postprocess import Detections
from cendetect.io.decode import ImageDecodeError, read_image_file

__all__ = ["ImageDecodeError", "Predictor", "decoded_in_order", "detect_stream", "select"]


class Predictor(Protocol):
    """What the stream needs of a model: ``cendetect.Detector`` is one (the stream stage does
    not import it: the detector calls the stream, not the other way round)."""

    def predict(self, images: Sequence[np.ndarray]) -> list[Detections]: ...


T = TypeVar("T")


def select(
    det: Detections, confidence: float = 0.0, classes: Sequence[str] | None = None
) -> Detections:
    """The detections with ``score > confidence`` (strictly, as CenDetect) of the ``classes``.

    Args:
        det: one image's detections.
        confidence: keep scores strictly above this.
        classes: class names to keep; None keeps all. Unknown names raise ``ValueError``.
    """
    keep = det.scores > confidence
    if classes is not None:
        unknown = [c for c in classes if c not in det.class_names]
        if unknown:
            raise ValueError(
                f"unknown class {unknown[0]!r}; the model's classes are "
                f"{', '.join(det.class_names)}"
            )
        wanted = [det.class_names.index(c) for c in classes]
        keep &= np.isin(det.labels, wanted)
    if bool(keep.all()):
        return det
    return det.take(np.flatnonzero(keep))


def decoded_in_order(
    items: Iterable[T],
    decode: Callable[[T], Any],
    workers: int = 2,
    lookahead: int = 8,
) -> Iterator[tuple[T, Any]]:
    """``(item, decode(item))`` in input order; ``decode`` runs in ``workers`` threads.

    An exception raised by ``decode`` is returned in place of its result (the caller decides).
    At most ``lookahead`` items are being decoded or waiting to be taken, so memory is bounded
    whatever the length of ``items``. ``workers=0`` decodes in the calling thread.
    """
    lookahead = max(1, int(lookahead))
    it = iter(items)
    if workers <= 0:
        for item in it:
            try:
                yield item, decode(item)
            except Exception as exc:  # noqa: BLE001 - handed to the caller
                yield item, exc
        return
    pending: deque[tuple[T, Future[Any]]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cendetect-decode") as pool:
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < lookahead:
                    try:
                        item = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    pending.append((item, pool.submit(decode, item)))
                if not pending:
                    return
                item, fut = pending.popleft()
                exc = fut.exception()
                yield item, (exc if exc is not None else fut.result())
        finally:
            for _, fut in pending:
                fut.cancel()


def _as_frame(max_pixels: int | None) -> Callable[[Any], np.ndarray]:
    def decode(frame: Any) -> np.ndarray:
        if isinstance(frame, (str, os.PathLike)):
            return read_image_file(frame, max_pixels)
        if isinstance(frame, np.ndarray):
            return frame
        raise TypeError(f"expected a path or a BGR uint8 array, got {type(frame).__name__}")

    return decode


def detect_stream(
    detector: Predictor,
    frames: Iterable[np.ndarray | str | os.PathLike[str]],
    batch_size: int = 1,
    lookahead: int | None = None,
    workers: int = 2,
    max_pixels: int | None = None,
) -> Iterator[Detections]:
    """Detect in a stream of frames, yielding one :class:`Detections` per frame, in order.

    Args:
        detector: the model.
        frames: paths or BGR uint8 ``[H, W, 3]`` arrays (gray/BGRA arrays are converted);
            any iterable, including an endless generator of video frames.
        batch_size: frames per model call (larger batches pay off on GPUs).
        lookahead: frames pulled from ``frames`` ahead of the batch being run (decoding in
            the background); default ``2 * batch_size``. This bounds memory.
        workers: decoding threads for paths (0: decode in the calling thread).
        max_pixels: refuse decoded files above this many pixels (default Pillow's limit).

    Raises:
        ImageDecodeError: a path could not be read or decoded (after the results of the
            frames before it were yielded).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    ahead = 2 * batch_size if lookahead is None else max(int(lookahead), batch_size)
    batch: list[np.ndarray] = []
    for _, image in decoded_in_order(frames, _as_frame(max_pixels), workers, ahead):
        if isinstance(image, BaseException):
            yield from detector.predict(batch)
            raise image
        batch.append(image)
        if len(batch) == batch_size:
            yield from detector.predict(batch)
            batch = []
    if batch:
        yield from detector.predict(batch)
