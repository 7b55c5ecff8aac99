"""One studio session: the opened folder, its records, the detection worker and the edits.

:class:`Studio` is what the web server (:mod:`cendetect.studio.server`) calls; it holds no web
code, so it can be driven and tested directly. One :class:`~cendetect.detector.Detector` is
loaded once (lazily, by ``load_detector``) and used by one background thread, which walks the
folder's images in order (an image the page asks for goes first), reading an image's saved
sidecar instead of running the model when the input has not changed since.

Thread safety: the worker and the server's request threads share the records; each record has
its own lock, held while it is read or changed and while its sidecar is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from cendetect.io.decode import DEFAULT_MAX_PIXELS, ImageDecodeError, read_image_file
from cendetect.io.discovery import IMAGE_EXTENSIONS, discover_inputs
from cendetect.studio.seed import SeedError, box_region, seed_region
from cendetect.studio.state import (
    STATE_DIR,
    Instance,
    Record,
    load_sidecar,
    record_from_detections,
    save_sidecar,
    stamp_of,
    summary,
)

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = ["Studio", "StudioError", "PathRefused"]

log = logging.getLogger("cendetect.studio")

THUMB_SIZE = 256  #: long side of a grid thumbnail (px)
VIEW_MAX = 4096  #: long side of the picture the page shows; edits stay at full resolution


class StudioError(ValueError):
    """A request the studio cannot do (the message is for the page)."""


class PathRefused(StudioError):
    """A path outside the opened folder and its output folder (403)."""


class Studio:
    """The state of one studio: a folder, its output folder, its records and its worker.

    Args:
        load_detector: returns the detector (called once, on the worker thread).
        class_names: the model's classes, if known before it loads (else read from it).
        threshold: the initial score threshold (``cendetect run``'s ``--confidence``).
        max_pixels: images with more pixels are refused (as ``cendetect run``).
    """

    def __init__(
        self,
        load_detector: Callable[[], Detector],
        threshold: float = 0.3,
        max_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self._load_detector = load_detector
        self._detector: Detector | None = None
        self._detector_lock = threading.Lock()
        self.threshold = threshold
        self.max_pixels = max_pixels
        self.root: Path | None = None
        self.output: Path | None = None
        self.names: list[str] = []
        self.records: dict[str, Record] = {}
        self.class_names: tuple[str, ...] = ()
        self._lock = threading.Condition()
        self._priority: deque[str] = deque()
        self._queue: deque[str] = deque()
        self._running = False
        self._cancel = False
        self._generation = 0
        self._closed = False
        self._worker: threading.Thread | None = None
        self.changes: list[str] = []  #: names whose summary changed, in order (the event log)
        self.done = 0
        self.started = 0.0
        self.rate = 0.0
        self.error = ""
        self._images: list[tuple[tuple[str, tuple[int, int]], np.ndarray]] = []
        self._images_lock = threading.Lock()

    # ---- the model -------------------------------------------------------------------

    @property
    def detector(self) -> Detector:
        with self._detector_lock:
            if self._detector is None:
                self._detector = self._load_detector()
                self.class_names = tuple(self._detector.class_names)
            return self._detector

    # ---- opening a folder --------------------------------------------------------------

    def open(self, folder: str | Path, output: str | Path | None = None) -> None:
        """Open ``folder`` (its images, recursively) with ``output`` for sidecars and exports
        (default: ``<folder>-cendetect`` beside it), and start detecting. Returns once the
        folder is listed: the model loads on the worker (the grid shows before it is ready).

        Raises:
            StudioError: the folder does not exist, or the output folder is inside it.
        """
        root = Path(folder).expanduser().resolve()
        if not root.is_dir():
            raise StudioError(f"{folder}: not a folder")
        out = (
            Path(output).expanduser().resolve()
            if output
            else root.with_name(root.name + "-cendetect")
        )
        if out == root or out.is_relative_to(root):
            raise StudioError(
                f"output folder {out} is inside the opened folder {root}: its exports would be "
                "read as inputs; choose a folder outside it"
            )
        errors: list[tuple[str, str]] = []
        files = discover_inputs(root, IMAGE_EXTENSIONS, errors)
        names = [p.relative_to(root).as_posix() for p in files]
        with self._lock:
            self._generation += 1
            self.root, self.output = root, out
            self.names = names
            self.records = {n: Record(name=n) for n in names}
            self.changes = list(names)
            self._priority.clear()
            self._queue = deque(names)
            self.done = 0
            self._cancel = False
            self.error = "; ".join(f"{p}: {r}" for p, r in errors)
            (out / STATE_DIR).mkdir(parents=True, exist_ok=True)
            self._lock.notify_all()
        self.run()

    def run(self) -> None:
        """Start (or resume) detecting the images not done yet."""
        with self._lock:
            if self._closed:
                raise StudioError("the studio is closed")
            self._cancel = False
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="cendetect-studio", daemon=True
                )
                self._worker.start()
            self._lock.notify_all()

    def close(self, timeout: float = 60.0) -> None:
        """Stop the worker after the image it is detecting (its sidecar is written) and wait
        for it; the studio answers questions about what it holds but detects nothing more."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join(timeout)

    def cancel(self) -> None:
        """Stop detecting after the current image (:meth:`run` resumes)."""
        with self._lock:
            self._cancel = True
            self._lock.notify_all()

    def prioritise(self, name: str) -> None:
        """Detect ``name`` next (the page is showing it)."""
        with self._lock:
            rec = self.records.get(name)
            if rec is not None and rec.status == "pending":
                self._priority.appendleft(name)
                self._lock.notify_all()

    def progress(self) -> dict[str, Any]:
        total = len(self.names)
        left = total - self.done
        return {
            "done": self.done, "total": total, "running": self._running,
            "cancelled": self._cancel and self.done < total,
            "rate": round(self.rate, 3),
            "eta": round(left / self.rate, 1) if self.rate > 0 and left else None,
            "folder": str(self.root or ""), "output": str(self.output or ""),
            "error": self.error, "classes": list(self.class_names),
        }  # fmt: skip

    def _next(self) -> tuple[str, int] | None:
        """The next image to detect and the folder's generation; None once closed."""
        with self._lock:
            while True:
                if self._closed:
                    self._running = False
                    return None
                if not self._cancel:
                    while self._priority or self._queue:
                        name = (self._priority or self._queue).popleft()
                        rec = self.records.get(name)
                        if rec is not None and rec.status == "pending":
                            self._running = True
                            return name, self._generation
                self._running = False
                self._lock.wait()

    def _work(self) -> None:
        from cendetect.flow.images import default_streams, stream_threads

        # loading the model and detecting yield the CPU to the page's requests (thumbnails,
        # edits): on Linux a thread's nice value is its own
        with contextlib.suppress(AttributeError, OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        try:
            detector = self.detector
        except Exception as exc:  # noqa: BLE001 - shown on the page
            self.error = f"the model could not be loaded: {exc}"
            log.error(self.error)
            return
        device = getattr(getattr(detector, "device", None), "type", "cpu")
        streams = default_streams(device)
        window: deque[float] = deque(maxlen=20)
        while (job := self._next()) is not None:
            name, gen = job
            t0 = time.perf_counter()
            rec = self.records[name]
            assert self.root is not None and self.output is not None
            root, out = self.root, self.output
            path = root / name
            new: Record | None = None
            try:
                stamp = stamp_of(path)
                new = load_sidecar(out, name, stamp, self.class_names)
                if new is None:
                    image = read_image_file(path, self.max_pixels)
                    # the kernel threads of one of cendetect run's streams, while it detects
                    # only (the process's thread counts are global; edits between pictures
                    # get them all): the same kernels sum in the same order, so an unedited
                    # image exports byte for byte what cendetect run writes
                    with stream_threads(streams):
                        det = detector.predict([image])[0]
                    new = record_from_detections(name, det, stamp)
                    window.append(time.perf_counter() - t0)
            except ImageDecodeError as exc:
                new = Record(name=name, status="broken", reason=exc.reason)
            except OSError as exc:
                new = Record(
                    name=name, status="broken", reason=f"cannot read: {exc.strerror or exc}"
                )
            except Exception as exc:  # noqa: BLE001 - one bad image fails alone
                new = Record(name=name, status="broken", reason=f"detection failed: {exc}")
            with self._lock:
                if gen != self._generation:  # another folder was opened meanwhile
                    continue
                with rec.lock:
                    rec.status, rec.reason, rec.size = new.status, new.reason, new.size
                    rec.instances, rec.confirmed, rec.stamp = (
                        new.instances,
                        new.confirmed,
                        new.stamp,
                    )
                    rec.version += 1
                    if new.status == "done":
                        save_sidecar(out, rec, self.class_names)
                if new.status == "broken":
                    log.warning("%s: %s", path, new.reason)
                self.done += 1
                self.rate = len(window) / sum(window) if window and sum(window) > 0 else 0.0
                self.changes.append(name)
                self._lock.notify_all()

    # ---- paths -------------------------------------------------------------------------

    def record(self, name: str) -> Record:
        rec = self.records.get(name)
        if rec is None:
            raise StudioError(f"{name}: not an image of the opened folder")
        return rec

    def input_path(self, name: str) -> Path:
        """The input file ``name`` (relative, ``/``-separated) of the opened folder.

        Raises:
            PathRefused: absolute, ``..`` components, or it resolves (symlinks) outside the
                folder.
        """
        if self.root is None:
            raise StudioError("no folder is open")
        return _inside(self.root, name)

    # ---- what the page shows -----------------------------------------------------------

    def image_info(self, name: str) -> dict[str, Any]:
        rec = self.record(name)
        with rec.lock:
            h, w = rec.size
            scale = min(1.0, VIEW_MAX / max(h, w, 1))
            return {
                **summary(rec), "width": w, "height": h, "view_scale": scale,
                "can_undo": bool(rec.history), "can_redo": bool(rec.future),
                "instances": [
                    {"id": i.id, "label": i.label, "score": round(i.score, 4), "kept": i.kept,
                     "source": i.source, "edited": i.edited, "box": [round(v, 2) for v in i.box],
                     "polys": i.outline()}
                    for i in rec.instances if i.area > 0
                ],
            }  # fmt: skip

    def image(self, name: str) -> np.ndarray:
        """The decoded input (BGR uint8 ``[H, W, 3]``, read-only); the last two are kept, so
        the edits of one picture decode it once."""
        path = self.input_path(name)
        key = (name, stamp_of(path))
        with self._images_lock:
            for k, im in self._images:
                if k == key:
                    return im
        image = read_image_file(path, self.max_pixels)
        image.flags.writeable = False
        with self._images_lock:
            self._images = [(key, image), *self._images[:1]]
        return image

    def _cache(self, kind: str, name: str, path: Path) -> Path:
        assert self.output is not None
        size, mtime = stamp_of(path)
        key = hashlib.sha1(f"{name}\0{size}\0{mtime}".encode()).hexdigest()
        return self.output / STATE_DIR / kind / f"{key}.jpg"

    def thumbnail(self, name: str) -> Path:
        """A JPEG thumbnail (long side ``THUMB_SIZE``), made on first use and cached on disk."""
        path = self.input_path(name)
        cached = self._cache("thumbs", name, path)
        if not cached.is_file():
            try:
                data = _jpeg_thumbnail(path, THUMB_SIZE, self.max_pixels)
            except ImageDecodeError:  # the tile says why; the picture is a grey cross
                image = np.full((THUMB_SIZE // 2, THUMB_SIZE // 2, 3), 60, np.uint8)
                cv2.line(image, (0, 0), (THUMB_SIZE // 2 - 1, THUMB_SIZE // 2 - 1), (0, 0, 200), 3)
                cv2.line(image, (THUMB_SIZE // 2 - 1, 0), (0, THUMB_SIZE // 2 - 1), (0, 0, 200), 3)
                data = _encode_jpeg(image)
            _write_file(cached, data)
        return cached

    def view(self, name: str) -> Path:
        """The picture as the page shows it: a JPEG with long side at most ``VIEW_MAX``
        (browsers cannot all show TIFF, and 8000 x 8000 pictures are slow to show)."""
        path = self.input_path(name)
        cached = self._cache("views", name, path)
        if not cached.is_file():  # decoded through the edits' cache: one decode for both
            _write_file(cached, _encode_jpeg(_downscale(self.image(name), VIEW_MAX), 92))
        return cached

    def result_jpeg(self, name: str) -> bytes:
        """The green-filled picture of the current state (downscaled like :meth:`view`)."""
        from cendetect.studio.state import to_detections

        rec = self.record(name)
        image = self.image(name).copy()
        with rec.lock:
            det = to_detections(rec, self.class_names, self.threshold)
        out = det.composite(image, mode="fill", inplace=True)
        return _encode_jpeg(_downscale(out, VIEW_MAX), 92)

    # ---- edits -------------------------------------------------------------------------

    def edit(self, name: str, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """Apply one edit to an image and save its sidecar before returning its new state.

        Ops: ``toggle`` (``id``: drop or keep), ``label`` (``id``, ``label``), ``brush``
        (``id`` or none for a new region of ``label``; ``points`` ``[[x, y], ...]`` in image
        pixels, ``radius``, ``erase``), ``seed`` (``x``, ``y``, ``label``: one click),
        ``box`` (``box`` ``[x0, y0, x1, y1]``, ``label``), ``confirm`` (``value``), ``undo``,
        ``redo``.

        Raises:
            StudioError: an unknown op, instance or class, or an image not detected yet.
        """
        rec = self.record(name)
        with rec.lock:
            if rec.status != "done":
                raise StudioError(f"{name}: not detected yet" if rec.status == "pending"
                                  else f"{name}: {rec.reason}")  # fmt: skip
            if op == "undo":
                rec.undo()
            elif op == "redo":
                rec.redo()
            elif op == "confirm":
                rec.change(list(rec.instances), confirmed=bool(args.get("value", True)))
            elif op in ("toggle", "label"):
                self._edit_instance(rec, op, args)
            elif op == "brush":
                self._brush(rec, args)
            elif op in ("seed", "box"):
                self._add(rec, op, args)
            else:
                raise StudioError(f"unknown edit {op!r}")
            assert self.output is not None
            save_sidecar(self.output, rec, self.class_names)
        with self._lock:
            self.changes.append(name)
            self._lock.notify_all()
        return self.image_info(name)

    def _label(self, args: dict[str, Any]) -> int:
        label = args.get("label")
        if not isinstance(label, int) or not 0 <= label < len(self.class_names):
            raise StudioError(f"unknown class {label!r}")
        return label

    def _edit_instance(self, rec: Record, op: str, args: dict[str, Any]) -> None:
        try:
            inst = rec.find(int(args["id"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise StudioError(f"{rec.name}: no such instance {args.get('id')!r}") from exc
        if op == "toggle":
            new = inst.evolve(kept=not inst.kept)
        else:
            new = inst.evolve(label=self._label(args), edited=True)
        rec.change([new if i is inst else i for i in rec.instances])

    def _brush(self, rec: Record, args: dict[str, Any]) -> None:
        h, w = rec.size
        try:
            pts = np.asarray(args["points"], np.float64).reshape(-1, 2)
            radius = float(args.get("radius", 8))
        except (KeyError, TypeError, ValueError) as exc:
            raise StudioError("a brush stroke needs points [[x, y], ...] and a radius") from exc
        if pts.shape[0] == 0 or not np.isfinite(pts).all() or not 0.5 <= radius <= 2000:
            raise StudioError("a brush stroke needs at least one point and a radius of 0.5-2000")
        erase = bool(args.get("erase", False))
        target = args.get("id")
        inst: Instance | None = None
        if target is not None:
            try:
                inst = rec.find(int(target))
            except (KeyError, TypeError, ValueError) as exc:
                raise StudioError(f"{rec.name}: no such instance {target!r}") from exc
        elif erase:
            raise StudioError("select the region to erase from first")
        r = int(math.ceil(radius))
        sx0 = max(0, int(math.floor(pts[:, 0].min())) - r - 1)
        sy0 = max(0, int(math.floor(pts[:, 1].min())) - r - 1)
        sx1 = min(w, int(math.ceil(pts[:, 0].max())) + r + 2)
        sy1 = min(h, int(math.ceil(pts[:, 1].max())) + r + 2)
        if sx1 <= sx0 or sy1 <= sy0:
            raise StudioError("the stroke is outside the picture")
        # the stroke and the instance's window, on one canvas covering both
        wx0, wy0, wx1, wy1 = (
            inst.window if inst is not None and inst.crop.size else (sx0, sy0, sx0, sy0)
        )
        cx0, cy0 = min(sx0, wx0), min(sy0, wy0)
        cx1, cy1 = max(sx1, wx1), max(sy1, wy1)
        canvas = np.zeros((cy1 - cy0, cx1 - cx0), np.uint8)
        if inst is not None and inst.crop.size:
            canvas[wy0 - cy0 : wy1 - cy0, wx0 - cx0 : wx1 - cx0] = inst.crop
        stroke = np.zeros_like(canvas)
        # pixel (i, j) is covered when its centre (j + 0.5, i + 0.5) is within the radius of
        # the stroke's polyline: OpenCV draws on integer centres, so shift by 8 fractional bits
        shift = 8
        q = np.round((pts - [cx0 + 0.5, cy0 + 0.5]) * (1 << shift)).astype(np.int32)
        thick = max(1, int(round(2 * radius)))
        if len(q) == 1:
            cv2.circle(
                stroke, tuple(q[0]), int(round(radius * (1 << shift))), 1, -1, cv2.LINE_8, shift
            )
        else:
            cv2.polylines(stroke, [q.reshape(-1, 1, 2)], False, 1, thick, cv2.LINE_8, shift)
            for p in (q[0], q[-1]):
                cv2.circle(
                    stroke, tuple(p), int(round(radius * (1 << shift))), 1, -1, cv2.LINE_8, shift
                )
        canvas = (canvas & ~stroke) if erase else (canvas | stroke)
        window = (cx0, cy0, cx1, cy1)
        if inst is None:
            label = self._label(args)
            new = _new_instance(rec, label).with_mask(window, canvas.astype(bool))
            rec.change([*rec.instances, new])
        else:
            new = inst.with_mask(window, canvas.astype(bool))
            rec.change([new if i is inst else i for i in rec.instances])

    def _add(self, rec: Record, op: str, args: dict[str, Any]) -> None:
        label = self._label(args)
        image = self.image(rec.name)
        try:
            if op == "seed":
                window, crop = seed_region(image, int(args["x"]), int(args["y"]),
                                           self.class_names[label])  # fmt: skip
            else:
                window, crop = box_region(image, tuple(int(v) for v in args["box"]),  # type: ignore[arg-type]
                                          self.class_names[label])  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SeedError):
                raise StudioError(str(exc)) from exc
            raise StudioError(f"{op}: needs x, y (seed) or box [x0, y0, x1, y1]") from exc
        rec.change([*rec.instances, _new_instance(rec, label).with_mask(window, crop)])


def _new_instance(rec: Record, label: int) -> Instance:
    """An empty region a person adds (score 1.0), to be given its mask by ``with_mask``."""
    return Instance(
        id=rec.next_id(), label=label, score=1.0, window=(0, 0, 0, 0), crop=np.zeros((0, 0), bool),
        box=(0.0, 0.0, 0.0, 0.0), source="user",
    )  # fmt: skip


def _inside(base: Path, name: str) -> Path:
    """``base / name`` if it stays inside ``base`` once resolved, else :class:`PathRefused`."""
    if not name or "\\" in name or "\0" in name or name.startswith("/") or Path(name).is_absolute():
        raise PathRefused(f"{name!r}: not a path inside the opened folder")
    if any(part in ("..", "") for part in name.split("/")):
        raise PathRefused(f"{name!r}: '..' and empty path parts are refused")
    target = (base / name).resolve()
    if not target.is_relative_to(base.resolve()):
        raise PathRefused(f"{name!r}: leads outside the opened folder (a symbolic link?)")
    return target


def _downscale(image: np.ndarray, long_side: int) -> np.ndarray:
    """``image`` with its long side at most ``long_side`` (area-averaged; as it is if smaller)."""
    h, w = image.shape[:2]
    scale = min(1.0, long_side / max(h, w))
    if scale < 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def _jpeg_thumbnail(path: Path, long_side: int, max_pixels: int) -> bytes:
    """A JPEG of the picture with its long side at most ``long_side``. A JPEG input is decoded
    at a reduced scale (Pillow's ``draft``: the DCT is scaled by 1/2, 1/4 or 1/8, several
    times faster than a full decode); other formats, and anything Pillow cannot read, go
    through the same decoder as detection."""
    from PIL import Image

    from cendetect.io.decode import _header, is_complete

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageDecodeError(str(path), f"cannot read: {exc.strerror or exc}") from exc
    if data[:3] == b"\xff\xd8\xff" and is_complete(data):
        _header(data, str(path), max_pixels)  # the pixel limit, as for detection
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (long_side, long_side))
                im = im.convert("RGB")
                im.thumbnail((long_side, long_side), Image.Resampling.BILINEAR)
                out = io.BytesIO()
                im.save(out, "JPEG", quality=85)
                return out.getvalue()
        except (OSError, ValueError, SyntaxError):
            pass  # OpenCV may still decode it
    return _encode_jpeg(_downscale(read_image_file(path, max_pixels), long_side))


def _encode_jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise StudioError("could not encode a JPEG")
    return buf.tobytes()


def _write_file(path: Path, data: bytes) -> None:
    from cendetect.io.atomic import write_bytes_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, data)
