"""Mosaic mask refinement: the reference implementation (NumPy + OpenCV, plain Python loops
where the C++ kernel must be matched bit for bit).

A pixelation mosaic is a grid of flat square cells. After a resize the cell size is not an
integer, and a censor's selection is often freeform (a lasso or a brush over the grid), so its
edge cuts through cells: snapping the model's mask to whole cells is wrong (docs/refinement.md).
This refinement instead finds the grid, then decides per cell and, in cells that the selection
cuts, per pixel:

1. **Core and band** as for bars: the model's mask eroded by ``core_frac sqrt(area)`` (the
   core, always kept) and dilated by ``band_frac sqrt(area)`` (2-32 px; nothing outside it can
   join).
2. **The grid** (:func:`estimate_grid`), from the core only. The step profile of each axis is
   the mean max-channel step between horizontally (vertically) adjacent core pixels, per
   column (row) boundary. A mosaic's steps sit on its cell seams, so the profile is a comb of
   period ``s``. Candidate periods are the peaks of the profiles' summed Fourier magnitude over
   ``s`` in ``[2.5, L/2]`` (``L``: the core's shorter extent); each peak is refined on a finer
   frequency grid and its phase read off the Fourier coefficient. A divisor ``s/k`` of the
   period scores as high in Fourier terms, so the candidate kept is the one whose predicted
   seams hold the most step per seam against the rest (the *contrast*: mean profile within
   1 px of a predicted seam over the mean farther than 1.5 px, plus 1). A grid with a contrast
   below ``min_contrast`` or a period below ``min_period`` is not trusted: the model's mask is
   kept.
3. **Flat pixels.** A pixel is flat when it differs from each of its 4-neighbours *in the same
   cell* by at most ``tol`` (max over channels). ``tol`` comes from the core: the lower 90th
   percentile of those differences over core pixels away from the seams (JPEG noise), as
   ``clip(1.5 spread + 4, 6, 30)``; a core spread above ``max_spread`` is not a mosaic we can
   read and the model's mask is kept. Pixels within ``seam`` px of a cell seam (blurred by the
   resize and by JPEG) are not judged.
4. **Cells.** With ``f`` the share of a cell's non-seam pixels that are flat and ``cov`` the
   share of its pixels in the model's mask: a cell with ``f >= whole_frac`` and
   ``cov >= cover`` is taken whole (the selection covers it; the model's edge cut it); a cell
   with ``f <= cut_frac`` is dropped (texture: not pixelated); in between, the selection's edge
   cuts the cell and its non-seam pixels are kept where they are flat *and* in the model's
   mask. Other pixels (seams, flat cells the model barely touches: a mosaic cell and a smooth
   background look alike there) keep the model's decision.
5. The result is clipped to the band, the core added; the 8-connected components touching the
   core are kept and holes filled; it replaces the model's mask only if its area is
   ``min_ratio`` to ``max_ratio`` times the model's.

Coordinates: a window is ``x0, y0, x1, y1`` half-open in image pixels; inside the refinement's
region, pixel ``(x, y)`` spans ``[x, x + 1)``, its centre is ``x + 0.5``, and the boundary
between columns ``x`` and ``x + 1`` is at ``t = x + 1``; the grid's seams are at
``t = phase + k s``.

The C++ kernel (csrc/refine_mosaic.cpp) equals :func:`refine_mosaic_reference` pixel for pixel:
integer arithmetic where possible, and every floating-point expression evaluated in double in
the same order (the Fourier sums by the same phasor recurrence, not by ``numpy.exp``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

__all__ = ["Grid", "MosaicRefineParams", "estimate_grid", "refine_mosaic_reference", "region_of"]

_TWO_PI = 2.0 * math.pi


@dataclass(frozen=True)
class MosaicRefineParams:
    """Settings of the mosaic refinement (chosen on the synthetic val parts)."""

    band_frac: float = 0.1  #: band width as a fraction of sqrt(model mask area)
    band_min: int = 2
    band_max: int = 32
    core_frac: float = 0.1  #: core erosion as a fraction of sqrt(area)
    min_area: int = 64  #: smaller model masks are kept as they are
    min_core: int = 16  #: a smaller core cannot show a grid
    search_min: float = 2.5  #: shortest period searched (px)
    min_period: float = 3.0  #: a grid finer than this is not trusted (px)
    min_contrast: float = 1.5  #: a grid with less contrast is not trusted
    max_candidates: int = 6  #: Fourier peaks tried
    seam: float = 1.5  #: pixels nearer a seam than this (px) are not judged
    tol_scale: float = 1.5
    tol_offset: float = 4.0
    tol_min: float = 6.0
    tol_max: float = 30.0
    max_spread: float = 24.0  #: core flatness spread above which nothing is changed
    whole_frac: float = 0.8  #: a cell this flat (share of flat pixels) ...
    cover: float = 0.5  #: ... and this much in the model's mask is taken whole
    cut_frac: float = 0.2  #: a cell at most this flat is dropped
    min_ratio: float = 0.7  #: accept the result if its area is in [min_ratio, max_ratio] x
    max_ratio: float = 1.4


class RegionParams(Protocol):
    """What :func:`region_of` reads from a refinement's settings (bars' and mosaics')."""

    band_frac: float
    band_min: int
    band_max: int
    min_area: int


@dataclass(frozen=True)
class Grid:
    """A mosaic grid: seams at ``t = phase + k * period`` on each axis (region pixel edges)."""

    period: float
    phase_x: float
    phase_y: float
    contrast: float


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return (x * x + y * y <= r * r).astype(np.uint8)


def _dilate(m: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Binary dilation; outside the region adds nothing (shared with the bar reference)."""
    out = cv2.dilate(m.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(bool)


def _erode(m: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Binary erosion; pixels outside the region count as background (not cv2's default)."""
    out = cv2.erode(m.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return out.astype(bool)


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def _wrap(v: float, s: float) -> float:
    """``v`` modulo ``s`` in ``[0, s)`` (written out: C's fmod keeps the sign)."""
    return v - s * math.floor(v / s)


def _profile(img: np.ndarray, core: np.ndarray, axis: int) -> tuple[list[float], list[bool]]:
    """Mean max-channel step across each column (axis 0) or row (axis 1) boundary, over pairs
    of core pixels; boundaries with fewer than 3 pairs are not valid (0)."""
    if axis == 0:
        step = np.abs(img[:, 1:] - img[:, :-1]).max(axis=2)
        pair = core[:, 1:] & core[:, :-1]
        sums, counts = (step * pair).sum(axis=0), pair.sum(axis=0)
    else:
        step = np.abs(img[1:] - img[:-1]).max(axis=2)
        pair = core[1:] & core[:-1]
        sums, counts = (step * pair).sum(axis=1), pair.sum(axis=1)
    ok = [int(c) >= 3 for c in counts]
    prof = [int(s) / int(c) if o else 0.0 for s, c, o in zip(sums, counts, ok, strict=True)]
    return prof, ok


def _centred(prof: list[float], ok: list[bool]) -> list[float]:
    total, n = 0.0, 0
    for p, o in zip(prof, ok, strict=True):
        if o:
            total += p
            n += 1
    mean = total / n
    return [p - mean if o else 0.0 for p, o in zip(prof, ok, strict=True)]


def _coefficient(q: list[float], u: float) -> tuple[float, float]:
    """``sum_t q[t - 1] exp(-2 pi i u t)`` for ``t = 1..len(q)``, by the phasor recurrence."""
    a = _TWO_PI * u
    rr, ri = math.cos(a), -math.sin(a)
    zr, zi = rr, ri
    ar = ai = 0.0
    for v in q:
        ar += v * zr
        ai += v * zi
        zr, zi = zr * rr - zi * ri, zr * ri + zi * rr
    return ar, ai


def _spectrum(
    qx: list[float], qy: list[float], u: float
) -> tuple[float, float, float, float, float]:
    xr, xi = _coefficient(qx, u)
    yr, yi = _coefficient(qy, u)
    return math.sqrt(xr * xr + xi * xi) + math.sqrt(yr * yr + yi * yi), xr, xi, yr, yi


def _contrast(prof: list[float], ok: list[bool], s: float, phase: float) -> float:
    on_sum = off_sum = 0.0
    n_on = n_off = 0
    for x, (p, o) in enumerate(zip(prof, ok, strict=True)):
        if not o:
            continue
        f = (float(x + 1) - phase) / s
        f -= math.floor(f)
        dist = min(f, 1.0 - f) * s
        if dist < 1.0:
            on_sum += p
            n_on += 1
        elif dist >= 1.5:
            off_sum += p
            n_off += 1
    if n_on < 2 or n_off < 2:
        return 0.0
    return (on_sum / n_on) / (off_sum / n_off + 1.0)


def estimate_grid(
    img: np.ndarray, core: np.ndarray, params: MosaicRefineParams = MosaicRefineParams()
) -> Grid | None:
    """The mosaic grid that the core's pixel steps show (step 2 of the module docstring).

    Args:
        img: int32 ``[h, w, 3]`` (the region's pixels).
        core: bool ``[h, w]``.
    Returns:
        The best candidate grid (its contrast may be low), or None without one.
    """
    px, okx = _profile(img, core, 0)
    py, oky = _profile(img, core, 1)
    nx, ny = sum(okx), sum(oky)
    if nx < 8 or ny < 8:
        return None
    smax = min(nx, ny) / 2.0
    if smax < params.search_min:
        return None
    qx, qy = _centred(px, okx), _centred(py, oky)
    du = 1.0 / (4.0 * max(len(px), len(py)))
    u0, u_end = 1.0 / smax, 1.0 / params.search_min
    us: list[float] = []
    k = 0
    while u0 + k * du < u_end:
        us.append(u0 + k * du)
        k += 1
    spec = [_spectrum(qx, qy, u)[0] for u in us]
    peaks = [k for k in range(1, len(us) - 1) if spec[k] >= spec[k - 1] and spec[k] >= spec[k + 1]]
    peaks.sort(key=lambda k: (-spec[k], k))
    best: Grid | None = None
    for k in peaks[: params.max_candidates]:
        top = None
        for j in range(17):  # a finer grid over [u_k - du, u_k + du]
            u = us[k] + (j - 8) * (du / 8.0)
            val = _spectrum(qx, qy, u)
            if top is None or val[0] > top[1][0]:
                top = (u, val)
        assert top is not None
        u, (_, xr, xi, yr, yi) = top
        s = 1.0 / u
        phx = _wrap(-math.atan2(xi, xr) / (_TWO_PI * u), s)
        phy = _wrap(-math.atan2(yi, yr) / (_TWO_PI * u), s)
        c = min(_contrast(px, okx, s, phx), _contrast(py, oky, s, phy))
        if best is None or c > best.contrast:
            best = Grid(s, phx, phy, c)
    return best


def region_of(
    image_size: tuple[int, int],
    window: tuple[int, int, int, int],
    crop: np.ndarray,
    params: RegionParams,
) -> tuple[tuple[int, int, int, int], np.ndarray, int, int] | None:
    """The region a refinement works in: the window grown by the band + 1 and clamped to the
    image, with the model's mask copied in (the bar's settings too).

    Returns:
        ``(region window, bool region [h, w], mask area, band radius)``, or None when the mask
        has fewer than ``min_area`` pixels.
    """
    h_img, w_img = image_size
    x0, y0, x1, y1 = (int(v) for v in window)
    m = np.asarray(crop).astype(bool)
    area = int(m.sum())
    if area < params.min_area:
        return None
    root = math.sqrt(area)
    band = min(max(_round_half_up(params.band_frac * root), params.band_min), params.band_max)
    rx0, ry0 = max(0, x0 - band - 1), max(0, y0 - band - 1)
    rx1, ry1 = min(w_img, x1 + band + 1), min(h_img, y1 + band + 1)
    region = np.zeros((ry1 - ry0, rx1 - rx0), bool)
    region[y0 - ry0 : y1 - ry0, x0 - rx0 : x1 - rx0] = m
    return (rx0, ry0, rx1, ry1), region, area, band


def _axis_cells(n: int, s: float, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Cell index of each pixel centre ``x + 0.5`` and its distance (px) to the nearest seam."""
    cell = np.empty(n, np.int64)
    dist = np.empty(n, np.float64)
    for x in range(n):
        v = (x + 0.5 - phase) / s
        c = math.floor(v)
        f = v - c
        cell[x] = c
        dist[x] = min(f, 1.0 - f) * s
    return cell, dist


def refine_mosaic_reference(
    image: np.ndarray,
    window: tuple[int, int, int, int],
    crop: np.ndarray,
    params: MosaicRefineParams = MosaicRefineParams(),
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Refine one mosaic instance (the definition the C++ kernel must equal pixel for pixel).

    Args:
        image: BGR uint8 ``[H, W, 3]``.
        window: ``x0, y0, x1, y1`` of ``crop`` in ``image``.
        crop: bool / uint8 ``[y1 - y0, x1 - x0]``, the model's mask.
    Returns:
        ``(window, crop)`` of the refined mask (the window grown by the band + 1, clamped to the
        image), or None where the model's mask is kept.
    """
    reg = region_of(image.shape[:2], window, crop, params)
    if reg is None:
        return None
    (rx0, ry0, rx1, ry1), region, area, band = reg
    h, w = region.shape
    root = math.sqrt(area)
    r_core = max(1, _round_half_up(params.core_frac * root))
    core = _erode(region, _disk(r_core))
    if int(core.sum()) < params.min_core:
        return None
    img = image[ry0:ry1, rx0:rx1].astype(np.int32)
    grid = estimate_grid(img, core, params)
    if grid is None or grid.contrast < params.min_contrast or grid.period < params.min_period:
        return None
    s = grid.period
    cx, dx = _axis_cells(w, s, grid.phase_x)
    cy, dy = _axis_cells(h, s, grid.phase_y)
    seam = (dy[:, None] < params.seam) | (dx[None, :] < params.seam)
    # largest difference to a 4-neighbour in the same cell (-1: none)
    big = np.full((h, w), -1, np.int32)
    step_x = np.abs(img[:, 1:] - img[:, :-1]).max(axis=2)
    step_x = np.where((cx[1:] == cx[:-1])[None, :], step_x, -1)
    step_y = np.abs(img[1:] - img[:-1]).max(axis=2)
    step_y = np.where((cy[1:] == cy[:-1])[:, None], step_y, -1)
    big[:, :-1] = np.maximum(big[:, :-1], step_x)
    big[:, 1:] = np.maximum(big[:, 1:], step_x)
    big[:-1] = np.maximum(big[:-1], step_y)
    big[1:] = np.maximum(big[1:], step_y)
    judged = core & ~seam & (big >= 0)
    n_judged = int(judged.sum())
    if n_judged < params.min_core:
        return None
    spread = int(np.sort(big[judged])[(9 * (n_judged - 1)) // 10])
    if spread > params.max_spread:
        return None
    tol = min(max(params.tol_scale * spread + params.tol_offset, params.tol_min), params.tol_max)
    flat = (big >= 0) & (big <= tol)
    # per-cell counts
    ncx = int(cx[-1] - cx[0]) + 1
    cell = ((cy - cy[0])[:, None] * ncx + (cx - cx[0])[None, :]).reshape(-1)
    n_cells = int(cell.max()) + 1
    inner = ~seam.reshape(-1)
    n_inner = np.bincount(cell, weights=inner, minlength=n_cells).astype(np.int64)
    n_flat = np.bincount(cell, weights=inner & flat.reshape(-1), minlength=n_cells).astype(np.int64)
    n_cov = np.bincount(cell, weights=region.reshape(-1), minlength=n_cells).astype(np.int64)
    n_all = np.bincount(cell, minlength=n_cells).astype(np.int64)
    known = n_inner > 0
    whole = known & (n_flat >= params.whole_frac * n_inner) & (n_cov >= params.cover * n_all)
    dropped = known & (n_flat <= params.cut_frac * n_inner)
    cut = known & ~whole & ~dropped & (n_flat < params.whole_frac * n_inner)
    out = region.reshape(-1).copy()
    out[whole[cell]] = True
    out[dropped[cell]] = False
    judge = cut[cell] & inner
    out[judge] = (flat.reshape(-1) & region.reshape(-1))[judge]
    in_band = _dilate(region, _disk(band))
    out = (out.reshape(h, w) & in_band) | core
    _, labels = cv2.connectedComponents(out.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[core])
    keep = keep[keep > 0]
    out = np.isin(labels, keep)
    _, holes = cv2.connectedComponents((~out).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    out |= (holes > 0) & ~np.isin(holes, border)
    new_area = int(out.sum())
    if not params.min_ratio * area <= new_area <= params.max_ratio * area:
        return None
    return (rx0, ry0, rx1, ry1), out
