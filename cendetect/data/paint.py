"""Painting primitives for synthetic data: shape masks, solid bars and pixelation mosaics.

Conventions: images are BGR uint8 ``[H, W, 3]``; masks are bool ``[H, W]`` (True = painted);
shape coordinates are float pixels with the origin at the top-left corner of the top-left pixel
(OpenCV drawing convention: a vertex at ``(x, y)`` lies on pixel column ``x``, row ``y``).
Every random choice comes from the ``numpy.random.Generator`` passed in, so a seed fixes the
result.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "BAR_SHAPES",
    "MOSAIC_SHAPES",
    "bar_colour",
    "bar_mask",
    "mosaic_mask",
    "paint_bar",
    "paint_mosaic",
    "pixelate",
]

BAR_SHAPES = ("eye_bar", "block", "strip", "polygon", "stroke", "rounded")
#: shape probabilities: v1 (the first datasets: no rounded bars) and v2
_BAR_P_V1 = [0.3, 0.25, 0.15, 0.15, 0.15]
_BAR_P_V2 = [0.26, 0.2, 0.14, 0.12, 0.14, 0.14]
MOSAIC_SHAPES = ("rect", "rotated_rect", "ellipse", "polygon", "blob")

_SHIFT = 4  # fixed-point bits for cv2 drawing: sub-pixel vertex positions
_ONE = 1 << _SHIFT


def _fill_poly(shape: tuple[int, int], pts: np.ndarray) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(pts * _ONE).astype(np.int32)], 1, cv2.LINE_8, _SHIFT)
    return m.astype(bool)


def _rect_pts(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    """Corners ``[4, 2]`` of a ``w x h`` rectangle centred at ``(cx, cy)``, rotated."""
    t = np.deg2rad(angle_deg)
    c, s = np.cos(t), np.sin(t)
    local = np.array([[-w, -h], [w, -h], [w, h], [-w, h]], np.float64) / 2.0
    rot = np.array([[c, -s], [s, c]])
    return local @ rot.T + np.array([cx, cy])


def _random_polygon(rng: np.random.Generator, cx: float, cy: float, r: float) -> np.ndarray:
    """A star-shaped irregular polygon ``[K, 2]`` with 3-9 vertices around ``(cx, cy)``."""
    k = int(rng.integers(3, 10))
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = r * rng.uniform(0.4, 1.0, k)
    return np.stack([cx + rad * np.cos(ang), cy + rad * np.sin(ang)], 1)


def _angle(rng: np.random.Generator, p_axis: float, spread: float = 90.0) -> float:
    return 0.0 if rng.random() < p_axis else float(rng.uniform(-spread, spread))


def _rounded_rect(
    shape: tuple[int, int], cx: float, cy: float, w: float, h: float, r: float, angle: float
) -> np.ndarray:
    """A ``w x h`` rectangle with corners rounded to radius ``r``, centred, rotated."""
    r = min(r, w / 2, h / 2)
    t = np.linspace(0, np.pi / 2, 8)
    arcs = []
    for (sx, sy), start in zip(((1, 1), (-1, 1), (-1, -1), (1, -1)), (0, 0.5, 1, 1.5)):
        ox, oy = sx * (w / 2 - r), sy * (h / 2 - r)
        a = t + start * np.pi
        arcs.append(np.stack([ox + r * np.cos(a), oy + r * np.sin(a)], 1))
    local = np.concatenate(arcs)
    th = np.deg2rad(angle)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    return _fill_poly(shape, local @ rot.T + np.array([cx, cy]))


def bar_mask(
    rng: np.random.Generator, h: int, w: int, s: float | None = None, v2: bool = False
) -> tuple[np.ndarray, str]:
    """A random bar shape: eye bar, large block, thin strip, irregular polygon, stroke and
    (``v2``) a rounded, possibly rotated rectangle.

    Sizes are fractions of ``s`` (default the short side): eye bars ``0.12-0.6 s`` by
    ``0.025-0.1 s``, blocks ``0.06-0.45 s`` a side, strips ``0.15-0.9 s`` long and 2-4 % thick
    (>= 2 px), polygons of radius ``0.04-0.25 s``, strokes ``1-5 %`` thick; rounded bars
    ``0.08-0.5 s`` by ``0.04-0.3 s`` with a corner radius of 15-50 % of the short edge. A small
    ``s`` gives small regions anywhere in the ``h x w`` image.

    Returns:
        (bool mask ``[h, w]``, shape name).
    """
    s = float(min(h, w)) if s is None else float(s)
    if v2:
        kind = BAR_SHAPES[int(rng.choice(6, p=_BAR_P_V2))]
    else:
        kind = BAR_SHAPES[int(rng.choice(5, p=_BAR_P_V1))]
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    if kind == "eye_bar":
        bw, bh = s * rng.uniform(0.12, 0.6), s * rng.uniform(0.025, 0.1)
        m = _fill_poly((h, w), _rect_pts(cx, cy, bw, bh, _angle(rng, 0.5, 35.0)))
    elif kind == "block":
        bw, bh = s * rng.uniform(0.06, 0.45), s * rng.uniform(0.06, 0.45)
        m = _fill_poly((h, w), _rect_pts(cx, cy, bw, bh, _angle(rng, 0.7)))
    elif kind == "strip":
        length, thick = s * rng.uniform(0.15, 0.9), max(2.0, s * rng.uniform(0.01, 0.04))
        m = _fill_poly((h, w), _rect_pts(cx, cy, length, thick, _angle(rng, 0.4)))
    elif kind == "polygon":
        m = _fill_poly((h, w), _random_polygon(rng, cx, cy, s * rng.uniform(0.04, 0.25)))
    elif kind == "rounded":
        bw, bh = s * rng.uniform(0.08, 0.5), s * rng.uniform(0.04, 0.3)
        r = min(bw, bh) * rng.uniform(0.15, 0.5)
        m = _rounded_rect((h, w), cx, cy, bw, bh, r, _angle(rng, 0.5, 45.0))
    else:  # stroke: a thick polyline, as drawn with a brush tool
        n = int(rng.integers(2, 6))
        step = s * rng.uniform(0.05, 0.2)
        pts = [np.array([cx, cy])]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(n - 1):
            heading += rng.uniform(-1.0, 1.0)
            pts.append(pts[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
        thick = max(3, round(s * rng.uniform(0.01, 0.05)))
        mm = np.zeros((h, w), np.uint8)
        p = np.round(np.stack(pts) * _ONE).astype(np.int32)
        cv2.polylines(mm, [p], False, 1, thick, cv2.LINE_8, _SHIFT)
        m = mm.astype(bool)
    return m, kind


def bar_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Black (45 %), white (20 %), grey (10 %) or a random flat colour (25 %), BGR."""
    u = rng.random()
    if u < 0.45:
        v = int(rng.integers(0, 12))  # "black" is not always exactly 0 after edits
        return (v, v, v)
    if u < 0.65:
        v = int(rng.integers(244, 256))
        return (v, v, v)
    if u < 0.75:
        v = int(rng.integers(40, 216))
        return (v, v, v)
    b, g, r = (int(x) for x in rng.integers(0, 256, 3))
    return (b, g, r)


def paint_bar(
    img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], soften: float = 0.0
) -> None:
    """Fill ``mask`` with ``colour`` in place.

    ``soften > 0``: anti-aliased edges, as drawing tools make them: the coverage is the mask
    blurred by a Gaussian of that sigma (px), and each pixel becomes
    ``(1 - coverage) * pixel + coverage * colour``. Coverage is 0.5 on the mask's edge, so the
    label (the mask) stays the pixels at least half covered.
    """
    if soften <= 0:
        img[mask] = np.asarray(colour, np.uint8)
        return
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    pad = int(np.ceil(3 * soften)) + 1
    y0, x0 = max(0, int(ys.min()) - pad), max(0, int(xs.min()) - pad)
    y1, x1 = int(ys.max()) + pad + 1, int(xs.max()) + pad + 1
    cov = cv2.GaussianBlur(mask[y0:y1, x0:x1].astype(np.float32), (0, 0), soften)[..., None]
    patch = img[y0:y1, x0:x1].astype(np.float32)
    c = np.asarray(colour, np.float32)
    img[y0:y1, x0:x1] = np.round(patch * (1 - cov) + c * cov).clip(0, 255).astype(np.uint8)


def _blob(rng: np.random.Generator, h: int, w: int, cx: float, cy: float, r: float) -> np.ndarray:
    """A free-form blob: a union of 3-8 overlapping ellipses around ``(cx, cy)``."""
    m = np.zeros((h, w), np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        ox, oy = rng.normal(0, r * 0.45, 2)
        ax = max(2, round(r * rng.uniform(0.3, 0.7)))
        ay = max(2, round(r * rng.uniform(0.3, 0.7)))
        centre = (round((cx + ox) * _ONE), round((cy + oy) * _ONE))
        axes = (ax * _ONE, ay * _ONE)
        cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
    return m.astype(bool)


def mosaic_mask(
    rng: np.random.Generator, h: int, w: int, s: float | None = None
) -> tuple[np.ndarray, str]:
    """A random region to pixelate: rectangle, rotated rectangle, ellipse, polygon or blob,
    ``0.08-0.55`` of ``s`` (default the short side) across.

    Returns:
        (bool mask ``[h, w]``, shape name).
    """
    s = float(min(h, w)) if s is None else float(s)
    kind = MOSAIC_SHAPES[int(rng.choice(5, p=[0.3, 0.15, 0.25, 0.15, 0.15]))]
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    a, b = s * rng.uniform(0.08, 0.55), s * rng.uniform(0.08, 0.55)
    if kind == "rect":
        return _fill_poly((h, w), _rect_pts(cx, cy, a, b, 0.0)), kind
    if kind == "rotated_rect":
        return _fill_poly((h, w), _rect_pts(cx, cy, a, b, float(rng.uniform(-90, 90)))), kind
    if kind == "ellipse":
        m = np.zeros((h, w), np.uint8)
        centre = (round(cx * _ONE), round(cy * _ONE))
        axes = (max(1, round(a / 2 * _ONE)), max(1, round(b / 2 * _ONE)))
        cv2.ellipse(m, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1, cv2.LINE_8, _SHIFT)
        return m.astype(bool), kind
    if kind == "polygon":
        return _fill_poly((h, w), _random_polygon(rng, cx, cy, max(a, b) / 2)), kind
    return _blob(rng, h, w, cx, cy, max(a, b) / 2), kind


def pixelate(img: np.ndarray, block: int, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Block-average + nearest upscale of the whole image on a grid of ``block`` px cells whose
    corner is at ``origin = (x0, y0)`` (modulo ``block``); partial cells at the borders average
    the pixels they hold.

    Args:
        img: BGR uint8 ``[H, W, 3]``.
    Returns:
        uint8 ``[H, W, 3]``.
    """
    h, w = img.shape[:2]
    ox, oy = origin[0] % block, origin[1] % block
    # pad so that the grid starts at (0, 0) and covers everything, then average per cell
    # while counting only the real pixels (weights), so border cells are not darkened
    top, left = (block - oy) % block, (block - ox) % block
    hh = -(-(h + top) // block) * block
    ww = -(-(w + left) // block) * block
    acc = np.zeros((hh, ww, 3), np.float32)
    wt = np.zeros((hh, ww, 1), np.float32)
    acc[top : top + h, left : left + w] = img
    wt[top : top + h, left : left + w] = 1.0
    nh, nw = hh // block, ww // block
    sums = acc.reshape(nh, block, nw, block, 3).sum((1, 3))
    cnt = wt.reshape(nh, block, nw, block, 1).sum((1, 3))
    cells = np.round(sums / np.maximum(cnt, 1.0)).clip(0, 255).astype(np.uint8)
    up = np.repeat(np.repeat(cells, block, 0), block, 1)
    return np.ascontiguousarray(up[top : top + h, left : left + w])


def snap_to_grid(mask: np.ndarray, block: int, origin: tuple[int, int]) -> np.ndarray:
    """The cells of the ``block`` grid (corner ``origin``) whose centre pixel ``mask`` holds,
    as a pixel mask: what censoring tools that pixelate whole cells produce."""
    h, w = mask.shape
    ox, oy = origin[0] % block, origin[1] % block
    ys = np.arange(h)
    xs = np.arange(w)
    cy = (ys - oy) // block  # cell index per row / column (negative before the origin)
    cx = (xs - ox) // block
    # centre pixel of each cell, clipped into the image
    ccy = np.clip(cy * block + oy + block // 2, 0, h - 1)
    ccx = np.clip(cx * block + ox + block // 2, 0, w - 1)
    return mask[ccy[:, None], ccx[None, :]]


def paint_mosaic(
    rng: np.random.Generator, img: np.ndarray, mask: np.ndarray, max_block: float = 0.06
) -> tuple[np.ndarray, int]:
    """Pixelate ``img`` inside ``mask`` in place.

    The block size is ``0.6 %`` to ``max_block`` of the short side (>= 3 px), log-uniform, so
    both fine and coarse mosaics appear. The grid starts at the image corner (50 %) or at a random
    offset; 60 % of the time the region is snapped to whole cells first.

    Returns:
        (the painted mask, which may differ from ``mask`` by the snapping; the block size).
    """
    h, w = mask.shape
    s = min(h, w)
    block = max(3, round(s * float(np.exp(rng.uniform(np.log(0.006), np.log(max_block))))))
    origin = (0, 0) if rng.random() < 0.5 else tuple(int(v) for v in rng.integers(0, block, 2))
    if rng.random() < 0.6:
        mask = snap_to_grid(mask, block, origin)
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return mask, block
    # pixelate only the bounding box, extended to whole cells, to save time
    y0, x0 = int(ys.min()), int(xs.min())
    y0 -= (y0 - origin[1]) % block
    x0 -= (x0 - origin[0]) % block
    y0, x0 = max(0, y0), max(0, x0)
    y1, x1 = int(ys.max()) + block + 1, int(xs.max()) + block + 1
    patch = img[y0:y1, x0:x1]
    pix = pixelate(patch, block, (origin[0] - x0, origin[1] - y0))
    sub = mask[y0:y1, x0:x1]
    patch[sub] = pix[sub]
    return mask, block
