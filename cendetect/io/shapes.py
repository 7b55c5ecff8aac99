"""Per-instance shapes shared by the writers: one outline polygon and an integer box.

Coordinates are pixel indices (OpenCV's convention for contours): the box of a detection whose
continuous box is ``x1, y1, x2, y2`` is ``floor(x1), floor(y1), ceil(x2) - 1, ceil(y2) - 1``,
the first and last pixel it touches, clamped to the image.

:class:`ShapeOptions` carries the outline options of the mmdetection services' ``mmdet_predict``
(``--mask_nth``, ``--view_margin``, ``--fully_connected``, ``--output_minrect``,
``--fit_bbox_to_polygon``, ``--bbox_as_fallback``), with their meaning; :func:`instance_shapes`
applies them. One difference stays: their outlines are ``skimage.measure.find_contours``
iso-lines between pixel centres (sub-pixel points at the contour level), ours are the boundary
pixels OpenCV traces (integer points), as cendetect's outputs have always been.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from cendetect.engine.postprocess import Detections

__all__ = ["Shape", "ShapeOptions", "instance_shapes", "outline_polygons", "pixel_box"]


@dataclass(frozen=True)
class ShapeOptions:
    """How each detection's outline and box are made (mmdet_predict's options).

    Attributes:
        mask_nth: trace the outline on every n-th row and column of the mask only (rows and
            columns ``0, n, 2n, ...`` of the image), then scale it back: faster on large masks,
            coarser by up to ``n - 1`` pixels; 1 = every pixel.
        view_margin: trace only within the detection's pixel box grown by this many pixels
            (mask pixels farther out are ignored), as theirs crops a "view" around the box
            (their default is 2); None: the whole mask (cendetect's default: a refined mask
            may reach past its box).
        fully_connected: ``"high"``: mask pixels that touch only at a corner belong to one
            region (8-connected, OpenCV's tracing); ``"low"``: they do not (4-connected), so a
            diagonal isthmus splits a region and the largest part is kept.
        output_minrect: also give the width and height of the outline's minimal rotated
            rectangle (``cv2.minAreaRect``).
        fit_bbox_to_polygon: replace the box by the outline's bounding box.
        bbox_as_fallback: if >= 0, use the box's four corners as the outline when the outline
            has fewer than 3 points or its bounding box covers less than this fraction of the
            box's area (minrect is then the box's width and height).
    """

    mask_nth: int = 1
    view_margin: int | None = None
    fully_connected: str = "high"
    output_minrect: bool = False
    fit_bbox_to_polygon: bool = False
    bbox_as_fallback: float = -1.0

    def __post_init__(self) -> None:
        if self.mask_nth < 1:
            raise ValueError(f"mask_nth must be >= 1, got {self.mask_nth}")
        if self.view_margin is not None and self.view_margin < 0:
            raise ValueError(f"view_margin must be >= 0, got {self.view_margin}")
        if self.fully_connected not in ("high", "low"):
            raise ValueError(
                f"fully_connected must be 'high' or 'low', not {self.fully_connected!r}"
            )
        if self.fit_bbox_to_polygon and self.bbox_as_fallback >= 0:
            # theirs refuses the pair too: one moves the box to the outline, the other the
            # outline to the box
            raise ValueError("fit_bbox_to_polygon and bbox_as_fallback cannot be used together")


@dataclass(frozen=True)
class Shape:
    """One detection's written shape: inclusive pixel box, outline ``int32 [K, 2]`` (x, y),
    K >= 3, and the minimal rotated rectangle's (width, height) when asked for."""

    box: tuple[int, int, int, int]
    polygon: np.ndarray
    minrect: tuple[float, float] | None = None


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


def _largest_contour(mask: np.ndarray, connectivity: int) -> np.ndarray | None:
    """The largest outer contour ``int32 [K, 2]`` (x, y) of ``mask`` (bool [H, W]), in its own
    pixel indices; 4-connectivity splits the mask into its 4-connected parts first."""
    if not mask.any():
        return None
    padded = np.pad(mask.view(np.uint8), 1)
    if connectivity == 8:
        parts = [padded]
    else:
        n, labels = cv2.connectedComponents(padded, connectivity=4)
        parts = [(labels == k).astype(np.uint8) for k in range(1, n)]
    best, best_area = None, -1.0
    for part in parts:
        contours, _ = cv2.findContours(part, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:
            c = c.reshape(-1, 2)
            area = abs(cv2.contourArea(c.astype(np.float32)))
            if len(c) >= 3 and area > best_area:  # the first of equal areas, as before
                best, best_area = c, area
    return None if best is None else (best - 1).astype(np.int32)


def _outline(det: Detections, i: int, box: tuple[int, int, int, int], o: ShapeOptions):
    masks = det.instance_masks
    wx0, wy0, wx1, wy1 = (int(v) for v in masks.windows[i])
    if wx1 <= wx0 or wy1 <= wy0:
        return None
    n = o.mask_nth
    # the view: the pixel box grown by the margin, on the (sub-sampled) image grid
    left, top, right, bottom = box
    if o.view_margin is None:
        vx0, vy0, vx1, vy1 = 0, 0, (wx1 - 1) // n, (wy1 - 1) // n
    else:
        m = o.view_margin
        vx0, vy0 = max(0, left // n - m), max(0, top // n - m)
        vx1, vy1 = right // n + m, bottom // n + m  # inclusive
    # rows/columns k * n of the image that fall inside both the window and the view
    gx0, gy0 = max(vx0, -(-wx0 // n)), max(vy0, -(-wy0 // n))
    gx1, gy1 = min(vx1, (wx1 - 1) // n), min(vy1, (wy1 - 1) // n)
    if gx1 < gx0 or gy1 < gy0:
        return None
    crop = masks.crop(i)
    grid = crop[gy0 * n - wy0 : gy1 * n - wy0 + 1 : n, gx0 * n - wx0 : gx1 * n - wx0 + 1 : n]
    contour = _largest_contour(np.ascontiguousarray(grid), 8 if o.fully_connected == "high" else 4)
    if contour is None:
        return None
    return ((contour + np.array([gx0, gy0])) * n).astype(np.int32)


def _corners(box: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = box
    return np.array([[left, top], [right, top], [right, bottom], [left, bottom]], np.int32)


def instance_shapes(det: Detections, options: ShapeOptions | None = None) -> list[Shape]:
    """Each detection's box, outline and (optionally) minimal rectangle under ``options``.

    Without options, the outline is the mask's largest outer contour, exactly as
    :func:`outline_polygons` gives it. A mask with no outline of 3 points gets its box corners.
    """
    o = options or ShapeOptions()
    out: list[Shape] = []
    for i in range(len(det)):
        box = pixel_box(det.boxes[i], det.image_size)
        poly = _outline(det, i, box, o)
        minrect: tuple[float, float] | None = None
        fallback = poly is None or len(poly) < 3
        if not fallback and o.bbox_as_fallback >= 0:
            (px0, py0), (px1, py1) = poly.min(0), poly.max(0)
            poly_area = float(px1 - px0 + 1) * float(py1 - py0 + 1)
            box_area = float(box[2] - box[0] + 1) * float(box[3] - box[1] + 1)
            fallback = poly_area / box_area < o.bbox_as_fallback
        if fallback:
            poly = _corners(box)
            if o.output_minrect:
                minrect = (float(box[2] - box[0] + 1), float(box[3] - box[1] + 1))
        else:
            if o.output_minrect:
                (_, (w, h), _) = cv2.minAreaRect(poly.astype(np.float32))
                minrect = (float(w), float(h))
            if o.fit_bbox_to_polygon:
                (px0, py0), (px1, py1) = poly.min(0), poly.max(0)
                box = (int(px0), int(py0), int(px1), int(py1))
        out.append(Shape(box=box, polygon=poly, minrect=minrect))
    return out
