"""A polled folder (mmdetection's ``mmdet_predict`` service): images in, predictions out.

Every ``poll_wait`` seconds the input folder is listed. An image is taken only once it is
complete: JPEG, PNG, WebP and BMP files must end with their format's end marker, and every file
must keep the same size and modification time over one poll, so a file that is still being
copied in is never read half-written. A file that stays incomplete for ``stale_polls`` polls is
set aside as truncated. Predictions (OPEX ``{stem}.json`` or ROI CSV ``{stem}-rois.csv``) are
written into ``prediction_tmp`` (or a hidden temporary file) and then moved into
``prediction_out``; only after that is the input moved to ``prediction_out`` or deleted. An
input that cannot be decoded is reported and moved to ``prediction_out/failed``, and the loop
goes on.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cendetect.engine.postprocess import Detections
from cendetect.flow.images import Summary
from cendetect.flow.stream import select
from cendetect.io.atomic import write_text_atomic
from cendetect.io.decode import ImageDecodeError, decode_image, is_complete
from cendetect.io.discovery import IMAGE_EXTENSIONS
from cendetect.io.mask_image import mask_image_name, write_mask_image
from cendetect.io.opex import to_opex
from cendetect.io.roi_csv import roi_csv_name, to_roi_csv
from cendetect.io.shapes import ShapeOptions

if TYPE_CHECKING:
    import numpy as np

    from cendetect.detector import Detector

__all__ = ["FolderWatcher", "WatchOptions"]

FAILED_DIR = "failed"


@dataclass(frozen=True)
class WatchOptions:
    """Settings of :class:`FolderWatcher` (the mmdet_predict flags).

    Attributes:
        prediction_in: folder polled for images (not recursive).
        prediction_out: folder for predictions and, unless ``delete_input``, the inputs.
        prediction_tmp: folder where predictions are written before being moved (optional).
        poll_wait: seconds between polls.
        continuous: keep polling when the folder is empty (else stop when all is done).
        delete_input: delete inputs when done instead of moving them to ``prediction_out``.
        score: keep detections with a score strictly above this.
        prediction_format: ``"roi"`` (ROI CSV) or ``"opex"`` (OPEX JSON).
        batch_size: images per model call.
        stale_polls: polls an incomplete file may stay unchanged before it is set aside.
        max_pixels: refuse larger images (None: Pillow's limit).
        shapes: how outlines and boxes are written (mmdet_predict's --mask_nth, --view_margin,
            --fully_connected, --output_minrect, --fit_bbox_to_polygon, --bbox_as_fallback).
        output_mask_image: also write ``{stem}-mask.png`` (:mod:`cendetect.io.mask_image`).
    """

    prediction_in: Path
    prediction_out: Path
    prediction_tmp: Path | None = None
    poll_wait: float = 1.0
    continuous: bool = False
    delete_input: bool = False
    score: float = 0.0
    prediction_format: str = "roi"
    batch_size: int = 1
    stale_polls: int = 3
    max_pixels: int | None = None
    shapes: ShapeOptions | None = None
    output_mask_image: bool = False


class FolderWatcher:
    """Runs the polling loop; :meth:`stop` (from any thread) ends it after the current poll."""

    def __init__(
        self, detector: Detector, opts: WatchOptions, report: Callable[[str], None] = print
    ) -> None:
        if opts.prediction_format not in ("roi", "opex"):
            raise ValueError(f"prediction_format must be roi or opex, not {opts.prediction_format}")
        self.detector = detector
        self.opts = opts
        self.report = report
        self.summary = Summary()
        self._stop = threading.Event()
        # path -> (size, mtime_ns, polls seen unchanged while incomplete)
        self._seen: dict[Path, tuple[int, int, int]] = {}

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> Summary:
        """Poll until stopped (``continuous``) or until the folder is done; return the tally."""
        o = self.opts
        for d in (o.prediction_out, o.prediction_tmp):
            if d is not None:
                d.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        while not self._stop.is_set():
            waiting = self.poll_once()
            if not o.continuous and waiting == 0:
                break
            self._stop.wait(o.poll_wait)
        self.summary.seconds = time.perf_counter() - t0
        return self.summary

    def _candidates(self) -> list[Path]:
        try:
            names = sorted(os.listdir(self.opts.prediction_in))
        except OSError as exc:
            self.report(f"cendetect: {self.opts.prediction_in}: cannot list: {exc.strerror}")
            return []
        return [
            self.opts.prediction_in / n
            for n in names
            if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_EXTENSIONS
        ]

    def _ready(self, path: Path) -> tuple[bytes | None, bool]:
        """``(data, stale)``: the bytes when the file is complete and settled, else None."""
        try:
            st = path.stat()
        except OSError:
            self._seen.pop(path, None)
            return None, False
        key = (st.st_size, st.st_mtime_ns)
        before = self._seen.get(path)
        unchanged = before is not None and before[:2] == key
        try:
            data = path.read_bytes() if unchanged else b""
        except OSError as exc:
            self.report(f"cendetect: {path}: cannot read: {exc.strerror}")
            return None, False
        if unchanged and data and is_complete(data) is not False:
            self._seen.pop(path, None)
            return data, False
        polls = before[2] + 1 if unchanged else 0
        self._seen[path] = (*key, polls)
        return None, unchanged and polls >= self.opts.stale_polls

    def poll_once(self) -> int:
        """Process every ready image once; returns how many files are still waiting."""
        ready: list[tuple[Path, bytes]] = []
        waiting = 0
        for path in self._candidates():
            data, stale = self._ready(path)
            if data is not None:
                ready.append((path, data))
            elif stale:
                self._seen.pop(path, None)
                size = path.stat().st_size if path.exists() else 0
                reason = "file is empty (0 bytes)" if size == 0 else "file is truncated"
                self._set_aside(path, f"{reason}; unchanged for {self.opts.stale_polls} polls")
            else:
                waiting += 1
        bs = max(1, self.opts.batch_size)
        for i in range(0, len(ready), bs):
            if self._stop.is_set() and self.opts.continuous:
                break
            self._process(ready[i : i + bs])
        return waiting

    def _set_aside(self, path: Path, reason: str) -> None:
        self.summary.failed.append((str(path), reason))
        self.report(f"cendetect: {path}: {reason} (moved to {FAILED_DIR}/)")
        dest = self.opts.prediction_out / FAILED_DIR
        dest.mkdir(parents=True, exist_ok=True)
        try:
            shutil.move(path, dest / path.name)
        except OSError as exc:
            self.report(f"cendetect: {path}: cannot move it aside: {exc}")

    def _process(self, items: list[tuple[Path, bytes]]) -> None:
        images: list[tuple[Path, np.ndarray]] = []
        for path, data in items:
            try:
                images.append((path, decode_image(data, str(path), self.opts.max_pixels)))
            except ImageDecodeError as exc:
                self._set_aside(path, exc.reason)
        if not images:
            return
        try:
            dets = self.detector.predict([im for _, im in images])
        except Exception as exc:  # noqa: BLE001 - reported; the loop goes on
            for path, _ in images:
                self._set_aside(path, f"inference failed: {type(exc).__name__}: {exc}")
            return
        for (path, _), det in zip(images, dets, strict=True):
            det = select(det, self.opts.score)
            try:
                self._deliver(path, det)
            except OSError as exc:
                self.summary.failed.append((str(path), f"cannot write the prediction: {exc}"))
                self.report(f"cendetect: {path}: cannot write the prediction: {exc}")
                continue
            self.summary.processed += 1

    def _deliver(self, path: Path, det: Detections) -> None:
        o = self.opts
        if o.prediction_format == "opex":
            name = path.stem + ".json"
            text = to_opex(det, path.stem, shapes=o.shapes).to_json_string()
        else:
            name, text = roi_csv_name(path.name), to_roi_csv(det, path.name, o.shapes)
        if o.output_mask_image:
            mask_name = mask_image_name(path.name)
            where = o.prediction_tmp if o.prediction_tmp is not None else o.prediction_out
            write_mask_image(where / mask_name, det)
            if o.prediction_tmp is not None:
                shutil.move(where / mask_name, o.prediction_out / mask_name)
        final = o.prediction_out / name
        if o.prediction_tmp is not None:
            tmp = o.prediction_tmp / name
            write_text_atomic(tmp, text)
            shutil.move(tmp, final)
        else:
            write_text_atomic(final, text)
        # the prediction exists: only now may the input go
        if o.delete_input:
            path.unlink()
        else:
            shutil.move(path, o.prediction_out / path.name)
