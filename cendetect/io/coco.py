"""COCO JSON of detection results, loadable by pycocotools (``COCO(path)``).

A self-contained dataset-style file: ``images`` (id, file_name, width, height), ``categories``
(id = label + 1, name) and ``annotations`` (bbox as x, y, w, h in continuous pixels, RLE
``segmentation``, ``area``, ``score``, ``iscrowd = 0``). The ``annotations`` list alone is a
results list for ``COCO.loadRes``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from typing import Any

from cendetect.engine.postprocess import Detections
from cendetect.io.atomic import write_text_atomic

__all__ = ["detections_to_coco", "CocoWriter"]


def detections_to_coco(det: Detections, image_id: int) -> list[dict[str, Any]]:
    """Result dicts (``image_id``, ``category_id``, ``bbox``, ``score``, ``segmentation``...)."""
    out = []
    rles = det.instance_masks.to_rle() if len(det) else []
    areas = det.instance_masks.areas() if len(det) else []
    for i, rle in enumerate(rles):
        x1, y1, x2, y2 = (float(v) for v in det.boxes[i])
        out.append(
            {
                "image_id": image_id,
                "category_id": int(det.labels[i]) + 1,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(det.scores[i]),
                "segmentation": rle,
                "area": int(areas[i]),
                "iscrowd": 0,
            }
        )
    return out


def coco_file_names(path: str | os.PathLike[str]) -> frozenset[str]:
    """The ``file_name`` of every image of a COCO file (empty when it is missing or unreadable,
    as :class:`CocoWriter` treats it)."""
    try:
        with open(path, encoding="utf-8") as f:
            old = json.load(f)
    except (OSError, ValueError):
        return frozenset()
    return frozenset(im.get("file_name") for im in old.get("images", []))


class CocoWriter:
    """Collects images and their detections; :meth:`write` saves one COCO file atomically.

    Args:
        class_names: the model's classes (categories ``1..K``).
        keep: an earlier file's ``images``/``annotations`` whose ``file_name`` is in this set
            are carried over (images skipped on a re-run keep their results).
        previous: that earlier file, if any.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        previous: str | os.PathLike[str] | None = None,
        keep: set[str] | None = None,
    ) -> None:
        self.categories = [{"id": i + 1, "name": n} for i, n in enumerate(class_names)]
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        if previous is not None and keep and os.path.isfile(previous):
            self._carry_over(previous, keep)

    def _carry_over(self, previous: str | os.PathLike[str], keep: set[str]) -> None:
        try:
            with open(previous, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, ValueError):
            return
        images = {im["id"]: im for im in old.get("images", []) if im.get("file_name") in keep}
        for im in images.values():
            anns = [a for a in old.get("annotations", []) if a.get("image_id") == im["id"]]
            self._add(im["file_name"], im["width"], im["height"], anns)

    def _add(self, file_name: str, width: int, height: int, anns: list[dict[str, Any]]) -> None:
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": width, "height": height}
        )
        for a in anns:
            self.annotations.append({**a, "id": len(self.annotations) + 1, "image_id": image_id})

    def extend(self, image: dict[str, Any], annotations: list[dict[str, Any]]) -> None:
        """Append an image entry of another writer with its annotations (ids renumbered)."""
        with self._lock:
            self._add(image["file_name"], image["width"], image["height"], annotations)

    def add(self, file_name: str, det: Detections) -> None:
        """Add one image (``file_name`` relative to the input root); safe from any thread."""
        h, w = det.image_size
        anns = detections_to_coco(det, 0)
        with self._lock:
            self._add(file_name, w, h, anns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def write(self, path: str | os.PathLike[str]) -> None:
        """Save the file atomically."""
        with self._lock:
            write_text_atomic(path, json.dumps(self.to_dict()))
