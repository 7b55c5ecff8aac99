"""Per-instance shapes shared by the writers: one outline polygon and an integer box.

Coordinates are pixel indices (OpenCV's convention for contours): the box of a detection whose
continuous box is ``x1, y1, x2, y2`` is ``floor(x1), floor(y1), ceil(x2) - 1, ceil(y2) - 1``,
the first and last pixel it touches, clamped to the image.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from cendetect.engine.postprocess import Detections

__all__ = ["pixel_box", "outline_polygons"]


def pixel_box(box: np.ndarray, image_size: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(left, top, right, bottom)`` inclusive pixel indices of a continuous x1, y1, x2, y2 box."""
    h, w = image_size
    x1, y1, x2, y2 = (float(v) for v in box)
    left = min(max(math.floor(x1), 0), w - 1)
    top = min(max(math.floor(y1), 0), h - 1)
    right = min(max(math.ceil(x2) - 1, left), w - 1)
    bottom = min(max(math.ceil(y2) - 1, top), h - 1)
    return left, top, right, bottom


def outline_polygons(det: Detections) -> list[np.ndarray]:
    """One ``int32 [K, 2]`` (x, y) outline per detection, K >= 3.

    The outline is the mask's largest outer contour; a mask that is empty, or whose contour
    has fewer than three vertices, gets the four corners of its pixel box instead.
    """
    out: list[np.ndarray] = []
    polys = det.instance_masks.to_polygons() if len(det) else []
    for i, contours in enumerate(polys):
        good = [c for c in contours if len(c) >= 3]
        if good:
            out.append(max(good, key=lambda c: abs(cv2.contourArea(c.astype(np.float32)))))
            continue
        left, top, right, bottom = pixel_box(det.boxes[i], det.image_size)
        out.append(np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.int32))
    return out
