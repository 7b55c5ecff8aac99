"""Regions a person adds with one click or one box, grown by the exact-edge refinement's rules.

A click on a **bar** grows the flat colour under it: the colour is the (lower) median of the
5 x 5 pixels around the click, its tolerance the bar refinement's ``clip(1.5 spread + 6, 8,
40)`` from their spread; the 8-connected pixels within the tolerance that reach the click form
the region, which then goes through :func:`~cendetect.engine.refine.refine_masks` as a bar (the
anti-aliased edge pixels join, holes are filled), exactly as a model's bar would.

A click on a **mosaic** finds the cell grid around the click
(:func:`~cendetect.engine.refine_mosaic.estimate_grid` on windows of 97, 193 and 321 px; the
best contrast wins, and a person's click is trusted with less contrast than a model's mask),
then grows over whole cells from the clicked one. A cell joins when it is as flat inside as the
clicked cell (mean in-cell step, away from the seams, at most 2.5x the clicked cell's + 2) and
changes colour *at a seam* against a neighbour: the pixels 1.5 px either side of the seam
differ by at least half the two cells' median difference, and that difference is well above
the in-cell steps of both. A pixelation's cells change at once and are flat inside; a smooth
background changes gradually (its cells' medians differ, not the pixels across the seam), and
texture is as busy inside a cell as across a seam. The rim is then peeled once: a rim cell
with such a seam on only one side is a smooth cell beside the mosaic's edge. Holes are
filled, and the result goes through the mosaic refinement, which keeps the selection's edge
where it cuts cells. Cells under about 8 px after JPEG are often too noisy to grow: a box
works there (docs/studio.md has the measured accuracy).

A **box** around a bar takes the largest connected region of the box's most common colour
(when it fills a tenth of the box) and refines it as a bar; a box over a mosaic is refined as a
mosaic; where the refinement finds no evidence the rectangle stays.

Coordinates: ``x, y`` are image pixels (the pixel column and row clicked); windows are
``x0, y0, x1, y1`` half-open.
"""

from __future__ import annotations

import math
from collections import deque

import cv2
import numpy as np

from cendetect.engine.masks import InstanceMasks
from cendetect.engine.refine import (
    REFINE_BAR,
    REFINE_MOSAIC,
    REFINE_NONE,
    BarRefineParams,
    MosaicRefineParams,
    refine_masks,
)
from cendetect.engine.refine_mosaic import estimate_grid

__all__ = ["SeedError", "seed_region", "box_region"]

Window = tuple[int, int, int, int]
_MAX_SHARE = 0.6  #: a grown region covering more of the image is the background, not a bar
MIN_CONTRAST = 1.0  #: least grid contrast of a clicked mosaic


class SeedError(ValueError):
    """No region could be grown from the click (the message says why, for the page)."""


def _kind(class_name: str) -> int:
    return {"bar": REFINE_BAR, "mosaic": REFINE_MOSAIC}.get(class_name, REFINE_NONE)


def _refined(
    image: np.ndarray, window: Window, crop: np.ndarray, kind: int
) -> tuple[Window, np.ndarray]:
    """The refinement's result for one region, or the region itself when it keeps it."""
    if kind == REFINE_NONE or not crop.any():
        return window, crop
    masks = InstanceMasks.from_crops(image.shape[:2], np.asarray([window]), [crop])
    out, changed = refine_masks(image, masks, np.asarray([kind], np.uint8))
    if not changed[0]:
        return window, _fill_holes(crop)
    return tuple(int(v) for v in out.windows[0]), out.crop(0).astype(bool)  # type: ignore[return-value]


def _fill_holes(m: np.ndarray) -> np.ndarray:
    """``m`` with every background component that does not touch the border set."""
    pad = np.pad(m.astype(np.uint8), 1)
    flood = pad.copy()
    cv2.floodFill(flood, np.zeros((pad.shape[0] + 2, pad.shape[1] + 2), np.uint8), (0, 0), 1)
    return (pad | (1 - flood)).astype(bool)[1:-1, 1:-1]


def _lower_median(values: np.ndarray) -> np.ndarray:
    return np.sort(values, axis=0)[(values.shape[0] - 1) // 2]


def seed_bar(image: np.ndarray, x: int, y: int) -> tuple[Window, np.ndarray]:
    """The flat-colour region under the click, refined as a bar.

    Grown in a 1024 px square around the click first (a very large picture is not scanned
    whole for a small bar), then in a square twice as large while the region touches the
    square's edge, up to the whole picture.
    """
    h, w = image.shape[:2]
    r = 512
    while True:
        x0, y0 = max(0, x - r), max(0, y - r)
        x1, y1 = min(w, x + r), min(h, y + r)
        window, crop = _grow_bar(image[y0:y1, x0:x1], x - x0, y - y0, (h, w))
        gx0, gy0, gx1, gy1 = window
        # the region reaches a side of the square that is not the picture's edge: grow on
        touches = ((gx0 == 0 and x0 > 0) or (gy0 == 0 and y0 > 0)
                   or (gx1 == x1 - x0 and x1 < w) or (gy1 == y1 - y0 and y1 < h))  # fmt: skip
        if not touches:
            break
        r *= 2
    window = (gx0 + x0, gy0 + y0, gx1 + x0, gy1 + y0)
    return _refined(image, window, crop, REFINE_BAR)


def _grow_bar(
    image: np.ndarray, x: int, y: int, full_size: tuple[int, int]
) -> tuple[Window, np.ndarray]:
    """The click's flat region in ``image`` (a part of the picture); window in its pixels,
    crop cut to it (touching ``image``'s edge where the region does)."""
    h, w = full_size
    p = BarRefineParams()
    patch = image[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].reshape(-1, 3).astype(np.int32)
    colour = _lower_median(patch)
    spread = float(np.percentile(np.abs(patch - colour).max(axis=1), 90, method="lower"))
    if spread > p.max_spread:
        raise SeedError("the colour under the click is not flat: not a bar (draw a box instead)")
    tol = min(max(p.tol_scale * spread + p.tol_offset, p.tol_min), p.tol_max)
    diff = cv2.absdiff(image, np.full_like(image, colour.astype(np.uint8)))
    near = (diff.max(axis=2) <= tol).astype(np.uint8)
    n, labels = cv2.connectedComponents(near, connectivity=8)
    region = labels == labels[y, x]
    if not near[y, x] or n < 2:
        raise SeedError("no flat region under the click")
    if region.sum() > _MAX_SHARE * h * w:
        raise SeedError(
            "the flat colour under the click covers most of the picture: it is the background "
            "(draw a box or use the brush instead)"
        )
    ys, xs = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    window = (int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1)
    return window, region[window[1] : window[3], window[0] : window[2]]


def _cell_edges(n: int, period: float, phase: float) -> list[int]:
    """Pixel boundaries ``t`` of the cells along an axis of ``n`` pixels (first 0, last n)."""
    k0 = math.floor(-phase / period)
    edges = [0]
    k = k0 + 1
    while True:
        t = int(round(phase + k * period))
        if t >= n:
            break
        if t > edges[-1]:
            edges.append(t)
        k += 1
    edges.append(n)
    return edges


def seed_mosaic(
    image: np.ndarray, x: int, y: int, max_cells: int = 40000
) -> tuple[Window, np.ndarray]:
    """The pixelated cells around the click, refined as a mosaic."""
    h, w = image.shape[:2]
    params = MosaicRefineParams()
    # The person says there is a mosaic here, so the grid needs less contrast than the
    # refinement asks of a model's mask (MIN_CONTRAST); the cell test below checks each cell.
    grid, px, py = None, 0.0, 0.0
    for r in (48, 96, 160):  # a window of several cells at any cell size
        x0, y0, x1, y1 = max(0, x - r), max(0, y - r), min(w, x + r + 1), min(h, y + r + 1)
        g = estimate_grid(
            image[y0:y1, x0:x1].astype(np.int32), np.ones((y1 - y0, x1 - x0), bool), params
        )
        if (
            g is not None
            and g.period >= params.min_period
            and (grid is None or g.contrast > grid.contrast)
        ):
            grid, px, py = g, x0 + g.phase_x, y0 + g.phase_y  # seams in image coordinates
    if grid is None or grid.contrast < MIN_CONTRAST:
        raise SeedError("no pixelation grid around the click: not a mosaic (draw a box instead)")
    xe, ye = _cell_edges(w, grid.period, px), _cell_edges(h, grid.period, py)
    nx, ny = len(xe) - 1, len(ye) - 1
    cx = int(np.searchsorted(xe, x, side="right")) - 1
    cy = int(np.searchsorted(ye, y, side="right")) - 1
    trim = 1 if grid.period < 8 else int(math.ceil(params.seam))
    img = image.astype(np.int16)
    stats: dict[tuple[int, int], tuple[np.ndarray, float]] = {}

    def cell(i: int, j: int) -> tuple[np.ndarray, float]:
        """The cell's (lower) median colour and mean in-cell step (max over channels) of
        its pixels away from the seams (they are blurred by resizing and JPEG)."""
        if (i, j) not in stats:
            a0, a1, b0, b1 = xe[i] + trim, xe[i + 1] - trim, ye[j] + trim, ye[j + 1] - trim
            if a1 - a0 < 2 or b1 - b0 < 2:
                a0, a1, b0, b1 = xe[i], xe[i + 1], ye[j], ye[j + 1]
            part = img[b0:b1, a0:a1]
            steps = [np.abs(np.diff(part, axis=k)).max(axis=2).reshape(-1) for k in (0, 1)]
            both = np.concatenate(steps)
            inner = float(both.mean()) if both.size else 0.0
            stats[(i, j)] = (_lower_median(part.reshape(-1, 3)), inner)
        return stats[(i, j)]

    def jump(i: int, j: int, a: int, b: int) -> float:
        """Mean max-channel difference across the seam between cells (i, j) and (a, b), from
        the pixels 1.5 px on either side of it (a resize blurs a seam over a pixel or two)."""
        if a != i:  # horizontal neighbours: a vertical seam at column t
            t = xe[max(i, a)]
            r0, r1 = ye[j] + trim, max(ye[j] + trim + 1, ye[j + 1] - trim)
            if t - 2 < 0 or t + 1 >= w:
                return 0.0
            d = np.abs(img[r0:r1, t - 2] - img[r0:r1, t + 1]).max(axis=1)
        else:
            t = ye[max(j, b)]
            c0, c1 = xe[i] + trim, max(xe[i] + trim + 1, xe[i + 1] - trim)
            if t - 2 < 0 or t + 1 >= h:
                return 0.0
            d = np.abs(img[t - 2, c0:c1] - img[t + 1, c0:c1]).max(axis=1)
        return float(d.mean()) if d.size else 0.0

    def evidence(i: int, j: int) -> int:
        """A step against a neighbouring cell that happens *at the seam* and stands well above
        the noise inside both cells: a pixelation's cells change colour at once; a smooth
        background changes gradually (its cell medians differ, the pixels across the seam
        hardly do), and texture is as busy inside a cell as across a seam."""
        med, inner = cell(i, j)
        seams = 0
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            a, b = i + di, j + dj
            if 0 <= a < nx and 0 <= b < ny:
                med_n, inner_n = cell(a, b)
                diff = float(np.abs(med - med_n).max())
                if diff >= 3.0 * max(inner, inner_n) + 3.0 and jump(i, j, a, b) >= 0.5 * diff:
                    seams += 1
        return seams

    if evidence(cx, cy) == 0:
        raise SeedError("no pixelation step at the clicked cell's seams: not inside a mosaic")
    # as flat inside as the clicked cell, give or take JPEG noise
    flat_tol = 2.5 * cell(cx, cy)[1] + 2.0
    taken = {(cx, cy)}
    todo = deque([(cx, cy)])
    while todo and len(taken) < max_cells:
        i, j = todo.popleft()
        for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
            a, b = i + di, j + dj
            if (
                0 <= a < nx
                and 0 <= b < ny
                and (a, b) not in taken
                and cell(a, b)[1] <= flat_tol
                and evidence(a, b) > 0
            ):
                taken.add((a, b))
                todo.append((a, b))
    # peel the rim once: a smooth cell beside the mosaic's edge has a step only on the side
    # facing it, a mosaic cell on the edge has steps along the edge too
    rim = [
        (i, j) for i, j in taken
        if any((i + di, j + dj) not in taken for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)))
        and evidence(i, j) < 2 and (i, j) != (cx, cy)
    ]  # fmt: skip
    taken.difference_update(rim)
    i0, i1 = min(i for i, _ in taken), max(i for i, _ in taken)
    j0, j1 = min(j for _, j in taken), max(j for _, j in taken)
    window = (xe[i0], ye[j0], xe[i1 + 1], ye[j1 + 1])
    crop = np.zeros((window[3] - window[1], window[2] - window[0]), bool)
    for i, j in taken:
        crop[
            ye[j] - window[1] : ye[j + 1] - window[1], xe[i] - window[0] : xe[i + 1] - window[0]
        ] = True
    if crop.sum() > _MAX_SHARE * h * w:
        raise SeedError("the grown mosaic covers most of the picture (draw a box instead)")
    return _refined(image, window, _fill_holes(crop), REFINE_MOSAIC)


def seed_region(image: np.ndarray, x: int, y: int, class_name: str) -> tuple[Window, np.ndarray]:
    """One click's region for a class (``bar`` and ``mosaic`` grow; other classes cannot).

    Args:
        image: BGR uint8 ``[H, W, 3]``.
        x, y: the clicked pixel.
    Raises:
        SeedError: the click is outside the image, or nothing can be grown from it.
    """
    h, w = image.shape[:2]
    if not (0 <= x < w and 0 <= y < h):
        raise SeedError(f"the click ({x}, {y}) is outside the {w}x{h} picture")
    if class_name == "bar":
        return seed_bar(image, x, y)
    if class_name == "mosaic":
        return seed_mosaic(image, x, y)
    raise SeedError(f"one-click regions grow bars and mosaics; draw a box for {class_name!r}")


def box_region(image: np.ndarray, box: Window, class_name: str) -> tuple[Window, np.ndarray]:
    """A dragged box, refined as ``class_name`` (kept as the rectangle without evidence)."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (int(v) for v in box)
    x0, x1 = sorted((min(max(x0, 0), w), min(max(x1, 0), w)))
    y0, y1 = sorted((min(max(y0, 0), h), min(max(y1, 0), h)))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise SeedError("the box is too small (at least 2 x 2 pixels inside the picture)")
    crop = np.ones((y1 - y0, x1 - x0), bool)
    if class_name == "bar":
        crop = _dominant_flat(image[y0:y1, x0:x1], crop)
    return _refined(image, (x0, y0, x1, y1), crop, _kind(class_name))


def _dominant_flat(patch: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """The largest connected region of the patch's most common colour (a bar inside a box),
    or ``fallback`` when that region is under a tenth of the box."""
    p = BarRefineParams()
    q = (patch.astype(np.int32) // 8).reshape(-1, 3)
    keys = (q[:, 0] << 10) | (q[:, 1] << 5) | q[:, 2]
    mode = np.bincount(keys).argmax()
    colour = _lower_median(patch.reshape(-1, 3)[keys == mode].astype(np.int32))
    near = (np.abs(patch.astype(np.int32) - colour).max(axis=2) <= p.tol_min * 2).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(near, connectivity=8)
    if n < 2:
        return fallback
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if stats[best, cv2.CC_STAT_AREA] < 0.1 * patch.shape[0] * patch.shape[1]:
        return fallback
    return _fill_holes(labels == best)
