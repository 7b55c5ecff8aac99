"""The reviewed state of one folder: every image's instances, the person's edits, and the
sidecar files that keep them.

Each image has a :class:`Record`: its detection status (``pending``, ``done``, ``broken`` with
the reason) and its :class:`Instance` list, the model's detections (all of them, down to the
model's own score threshold, so the page's threshold slider never re-runs the model) plus the
regions a person added. An instance is never deleted: dropping one sets ``kept = False``, so it
can be restored and undone.

Every change is written at once, atomically, to the image's **sidecar**
``OUT/.cendetect-studio/review/<relative path>.json``: a COCO file of that one image (``images``,
``categories``, ``annotations`` with compressed-RLE full-resolution masks), with the studio's
fields in a ``cendetect_studio`` object on the file and on each annotation (``kept``,
``source``, ``edited``, ``window``; on the file ``status``, ``confirmed`` and the input's
size and modification time, so a changed input is detected again). One small file per image
keeps a save O(1) on a folder of thousands; reopening the folder reads them back instead of
running the model again.

Coordinates: a window is ``x0, y0, x1, y1`` half-open in image pixels (as
:class:`~cendetect.engine.masks.InstanceMasks`); a crop is ``bool [y1 - y0, x1 - x0]``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cendetect.engine.masks import InstanceMasks
from cendetect.engine.postprocess import Detections
from cendetect.io.atomic import write_text_atomic

__all__ = [
    "STATE_DIR",
    "Instance",
    "Record",
    "sidecar_path",
    "load_sidecar",
    "save_sidecar",
    "record_from_detections",
    "to_detections",
    "polygons",
]

#: the studio's folder inside the output folder (hidden: ``cendetect run`` never lists it)
STATE_DIR = ".cendetect-studio"
_FORMAT = 1
_HISTORY = 100  #: undo steps kept per image


@dataclass(frozen=True, eq=False)
class Instance:
    """One region of one image.

    Attributes:
        id: unique within the image (the model's rank for its detections, then counting up).
        label: class index into the model's class names.
        score: the model's score; 1.0 for a region a person added.
        window: ``(x0, y0, x1, y1)`` of ``crop`` in image pixels.
        crop: ``bool [y1 - y0, x1 - x0]`` (never modified in place: edits make a new one).
        box: ``(x1, y1, x2, y2)`` float box in continuous pixels (the model's box, or the
            mask's tight box once edited).
        kept: False once a person dropped it.
        source: ``"model"`` or ``"user"``.
        edited: its mask or class was changed by a person.
    """

    id: int
    label: int
    score: float
    window: tuple[int, int, int, int]
    crop: np.ndarray
    box: tuple[float, float, float, float]
    kept: bool = True
    source: str = "model"
    edited: bool = False
    #: what is computed from the mask (area, RLE, outline), once: a mask never changes
    _cache: dict = field(default_factory=dict, init=False, repr=False)

    @property
    def area(self) -> int:
        if "area" not in self._cache:
            self._cache["area"] = int(np.count_nonzero(self.crop))
        return self._cache["area"]

    def rle(self, size: tuple[int, int]) -> dict:
        """COCO compressed RLE of the mask on an ``(H, W)`` picture."""
        key = ("rle", size)
        if key not in self._cache:
            self._cache[key] = _rle(size, self.window, self.crop)
        return self._cache[key]

    def outline(self) -> list[list[float]]:
        """:func:`polygons` of the mask."""
        if "polys" not in self._cache:
            self._cache["polys"] = polygons(self)
        return self._cache["polys"]

    def evolve(self, **changes: Any) -> Instance:
        """This instance with other fields (not the mask: see :meth:`with_mask`), sharing
        what was computed from the mask."""
        new = replace(self, **changes)
        new._cache.update(self._cache)
        return new

    def with_mask(self, window: tuple[int, int, int, int], crop: np.ndarray) -> Instance:
        """This instance with a new mask, trimmed to its tight window (marked edited)."""
        window, crop = tight(window, crop)
        x0, y0, x1, y1 = window
        return replace(
            self, window=window, crop=crop, box=(float(x0), float(y0), float(x1), float(y1)),
            edited=True,
        )  # fmt: skip


def tight(
    window: tuple[int, int, int, int], crop: np.ndarray
) -> tuple[tuple[int, int, int, int], np.ndarray]:
    """The smallest window holding every set pixel of ``crop`` (an empty mask: a 0x0 window)."""
    crop = np.asarray(crop, bool)
    ys = np.flatnonzero(crop.any(axis=1))
    xs = np.flatnonzero(crop.any(axis=0))
    if ys.size == 0:
        return (window[0], window[1], window[0], window[1]), np.zeros((0, 0), bool)
    x0, y0 = window[0] + int(xs[0]), window[1] + int(ys[0])
    sub = crop[ys[0] : ys[-1] + 1, xs[0] : xs[-1] + 1]
    return (x0, y0, x0 + sub.shape[1], y0 + sub.shape[0]), np.ascontiguousarray(sub)


@dataclass
class Record:
    """One input image's state (guarded by ``lock``; the server and the worker share it).

    Attributes:
        name: path relative to the opened folder, with ``/`` (the key everywhere).
        status: ``pending`` (not detected yet), ``done`` or ``broken``.
        reason: why a broken image could not be read or detected.
        size: ``(H, W)`` once known.
        instances: every instance (dropped ones too).
        confirmed: a person marked the image as reviewed.
        history / future: undo and redo stacks of earlier instance lists (in memory only).
    """

    name: str
    status: str = "pending"
    reason: str = ""
    size: tuple[int, int] = (0, 0)
    instances: list[Instance] = field(default_factory=list)
    confirmed: bool = False
    stamp: tuple[int, int] = (0, 0)  #: the input's (size in bytes, mtime in ns) when detected
    version: int = 0
    history: list[tuple[list[Instance], bool]] = field(default_factory=list)
    future: list[tuple[list[Instance], bool]] = field(default_factory=list)
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def edited(self) -> bool:
        return any(i.edited or i.source == "user" or not i.kept for i in self.instances)

    def next_id(self) -> int:
        return max((i.id for i in self.instances), default=-1) + 1

    def find(self, instance_id: int) -> Instance:
        for inst in self.instances:
            if inst.id == instance_id:
                return inst
        raise KeyError(f"{self.name}: no instance {instance_id}")

    def change(self, instances: list[Instance], confirmed: bool | None = None) -> None:
        """Replace the instance list (and the confirmed flag), keeping the old one for undo."""
        self.history.append((self.instances, self.confirmed))
        del self.history[:-_HISTORY]
        self.future.clear()
        self.instances = instances
        if confirmed is not None:
            self.confirmed = confirmed
        self.version += 1

    def undo(self) -> bool:
        if not self.history:
            return False
        self.future.append((self.instances, self.confirmed))
        self.instances, self.confirmed = self.history.pop()
        self.version += 1
        return True

    def redo(self) -> bool:
        if not self.future:
            return False
        self.history.append((self.instances, self.confirmed))
        self.instances, self.confirmed = self.future.pop()
        self.version += 1
        return True

    def visible(self, threshold: float) -> list[Instance]:
        """The instances an export writes: kept, and above ``threshold`` (strictly, as
        ``cendetect run --confidence``) unless a person added or edited them."""
        return [
            i for i in self.instances
            if i.kept and i.area > 0 and (i.score > threshold or i.source == "user" or i.edited)
        ]  # fmt: skip


def sidecar_path(output_root: Path, name: str) -> Path:
    """``OUT/.cendetect-studio/review/<name>.json``."""
    return output_root / STATE_DIR / "review" / (name + ".json")


def stamp_of(path: Path) -> tuple[int, int]:
    st = path.stat()
    return int(st.st_size), int(st.st_mtime_ns)


def record_from_detections(name: str, det: Detections, stamp: tuple[int, int]) -> Record:
    """A fresh record of the model's detections (every one the model returned)."""
    insts = []
    for i in range(len(det)):
        x0, y0, x1, y1 = (int(v) for v in det.instance_masks.windows[i])
        insts.append(
            Instance(
                id=i, label=int(det.labels[i]), score=float(det.scores[i]),
                window=(x0, y0, x1, y1), crop=det.instance_masks.crop(i).astype(bool),
                box=tuple(float(v) for v in det.boxes[i]),  # type: ignore[arg-type]
            )
        )  # fmt: skip
    return Record(name=name, status="done", size=tuple(det.image_size), instances=insts,
                  stamp=stamp)  # fmt: skip


def to_detections(record: Record, class_names: tuple[str, ...], threshold: float) -> Detections:
    """The record's visible instances as :class:`Detections` (model order; user regions last).

    For an image nobody edited this is exactly what ``cendetect run --confidence threshold``
    keeps of the same model's output: same boxes, scores, labels and mask bitmaps.
    """
    insts = record.visible(threshold)
    h, w = record.size
    if not insts:
        z = np.zeros(0, np.float32)
        return Detections(
            np.zeros((0, 4), np.float32), z, np.zeros(0, np.int64),
            InstanceMasks.empty((h, w)), class_names, (h, w),
        )  # fmt: skip
    masks = InstanceMasks.from_crops(
        (h, w), np.asarray([i.window for i in insts], np.int64), [i.crop for i in insts]
    )
    return Detections(
        boxes=np.asarray([i.box for i in insts], np.float32),
        scores=np.asarray([i.score for i in insts], np.float32),
        labels=np.asarray([i.label for i in insts], np.int64),
        instance_masks=masks, class_names=class_names, image_size=(h, w),
    )  # fmt: skip


def _rle(size: tuple[int, int], window: tuple[int, int, int, int], crop: np.ndarray) -> dict:
    """COCO compressed RLE of the full-size mask, from the crop alone: the column-major runs
    are counted over the window's columns only (an 8000 x 8000 picture never gets a full-size
    bitmap per instance), then compressed by pycocotools."""
    from pycocotools import mask as mask_utils

    h, w = size
    x0, y0, x1, y1 = window
    if crop.size == 0 or not crop.any():
        counts = [h * w]
    else:
        cols = np.zeros((x1 - x0, h), np.uint8)  # column-major: one row per image column
        cols[:, y0:y1] = np.asarray(crop, np.uint8).T
        flat = cols.reshape(-1)
        change = np.flatnonzero(np.diff(flat)) + 1
        edges = np.concatenate([[0], change, [flat.size]])
        runs = np.diff(edges)
        if flat[0]:  # COCO RLE starts with a run of zeros
            runs = np.concatenate([[0], runs])
        runs[0] += h * x0
        if flat[-1]:
            if x1 < w:
                runs = np.concatenate([runs, [h * (w - x1)]])
        else:
            runs[-1] += h * (w - x1)
        counts = [int(v) for v in runs]
    rle = mask_utils.frPyObjects({"counts": counts, "size": [h, w]}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def _unrle(rle: dict, window: tuple[int, int, int, int]) -> np.ndarray:
    from pycocotools import mask as mask_utils

    x0, y0, x1, y1 = window
    full = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")})
    return np.ascontiguousarray(full[y0:y1, x0:x1].astype(bool))


def save_sidecar(output_root: Path, record: Record, class_names: tuple[str, ...]) -> None:
    """Write the record's sidecar atomically (a COCO file of the one image)."""
    h, w = record.size
    anns = []
    for inst in record.instances:
        x1, y1, x2, y2 = inst.box
        anns.append({
            "id": inst.id + 1, "image_id": 1, "category_id": inst.label + 1,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": inst.score,
            "segmentation": inst.rle(record.size), "area": inst.area,
            "iscrowd": 0,
            "cendetect_studio": {
                "kept": inst.kept, "source": inst.source, "edited": inst.edited,
                "window": list(inst.window),
            },
        })  # fmt: skip
    doc = {
        "images": [{"id": 1, "file_name": record.name, "width": w, "height": h}],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(class_names)],
        "annotations": anns,
        "cendetect_studio": {
            "format": _FORMAT, "status": record.status, "reason": record.reason,
            "confirmed": record.confirmed, "input_size": record.stamp[0],
            "input_mtime_ns": record.stamp[1],
        },
    }  # fmt: skip
    path = sidecar_path(output_root, record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(doc, separators=(",", ":")))


def load_sidecar(
    output_root: Path, name: str, stamp: tuple[int, int], class_names: tuple[str, ...]
) -> Record | None:
    """The saved record of ``name``, or None when there is none, it is unreadable, it was made
    for another version of the input (size or modification time differ) or another model's
    classes."""
    path = sidecar_path(output_root, name)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        meta = doc["cendetect_studio"]
        if meta.get("format") != _FORMAT or (meta["input_size"], meta["input_mtime_ns"]) != stamp:
            return None
        if [c["name"] for c in doc["categories"]] != list(class_names):
            return None
        im = doc["images"][0]
        rec = Record(name=name, status=meta["status"], reason=meta.get("reason", ""),
                     size=(int(im["height"]), int(im["width"])), confirmed=bool(meta["confirmed"]),
                     stamp=stamp)  # fmt: skip
        for a in doc["annotations"]:
            extra = a["cendetect_studio"]
            window = tuple(int(v) for v in extra["window"])
            x, y, bw, bh = a["bbox"]
            rec.instances.append(Instance(
                id=int(a["id"]) - 1, label=int(a["category_id"]) - 1, score=float(a["score"]),
                window=window, crop=_unrle(a["segmentation"], window),  # type: ignore[arg-type]
                box=(float(x), float(y), float(x + bw), float(y + bh)), kept=bool(extra["kept"]),
                source=str(extra["source"]), edited=bool(extra["edited"]),
            ))  # fmt: skip
        return rec
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


def polygons(inst: Instance) -> list[list[float]]:
    """The outline of an instance's mask as flat ``[x0, y0, x1, y1, ...]`` rings in image
    pixels (pixel edges: a one-pixel mask at (x, y) is the square x..x+1, y..y+1), outer rings
    and holes alike (draw with the even-odd rule)."""
    if inst.crop.size == 0:
        return []
    # traced at 2x so that a one-pixel-wide mask is a ring, not a line; the ring runs through
    # the boundary's half-pixel centres, 0.25 px inside the pixel edges. Masks of over a
    # million pixels are traced at 1x (the half-pixel offset is invisible at their scale), and
    # staircases are straightened to within half a pixel (an outline is for the eye only).
    scale = 1 if inst.crop.size > 1_000_000 else 2
    m = np.pad(inst.crop, 1).astype(np.uint8)
    if scale == 2:
        m = cv2.resize(m, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    x0, y0 = inst.window[0], inst.window[1]
    out = []
    for c in contours:
        if len(c) > 8:
            c = cv2.approxPolyDP(c, 0.5 * scale, True)
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / scale
        pts[:, 0] += x0 - 1
        pts[:, 1] += y0 - 1
        out.append(np.round(pts.reshape(-1), 2).tolist())
    return out


def summary(record: Record) -> dict[str, Any]:
    """What the grid shows of an image: ``inst`` lists ``[label, score, always]`` of every
    kept, non-empty instance (``always``: a person added or edited it, so no threshold hides
    it), from which the page counts regions per class at any threshold."""
    inst = [
        [i.label, round(i.score, 4), int(i.source == "user" or i.edited)]
        for i in record.instances if i.kept and i.area > 0
    ]  # fmt: skip
    return {
        "name": record.name, "status": record.status, "reason": record.reason, "inst": inst,
        "edited": record.edited, "confirmed": record.confirmed, "version": record.version,
    }  # fmt: skip
