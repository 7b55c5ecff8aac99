"""Exact-edge refinement of pasted masks: the reference implementation (NumPy + OpenCV).

A Mask R-CNN mask is 28 x 28 logits stretched over the box: corners come out round and edges
soft. A *bar* is one flat colour with hard edges, so its true extent can be read off the image:

1. core: the model's mask eroded by a Euclidean disk of radius ``0.1 sqrt(area)`` (>= 1 px);
   its (lower) median colour ``c`` and the spread of the core around it (the lower 90th
   percentile of the max-channel distance ``d``).
   A spread above ``max_spread`` means the region is not flat: the model's mask is kept.
2. band: the model's mask dilated by ``band_frac sqrt(area)`` (2-48 px); nothing outside it can
   join, so a refinement never grows an instance past its band.
3. strong pixels: ``d(p, c) <= tol``, ``tol = clip(1.5 spread + 6, 8, 40)`` (JPEG noise on a
   flat colour stays below it; see docs/refinement.md).
4. anti-aliased edge pixels: a band pixel next to a strong one, whose colour is closer to ``c``
   than to the local background ``b`` (the median of the band pixels that are neither strong
   nor in the model's mask): the pixel is at least half covered by the bar, the rule a 0.5
   coverage threshold gives ground truth.
5. the connected components (8-neighbourhood) of strong + edge pixels that touch the core, with
   their holes filled.
6. the result replaces the model's mask only if its area is 0.5-2x the model's; otherwise the
   evidence is weak and the model's mask is kept.
7. the band's limit: if more than ``rim_max`` of the band's outer contour (its pixels with a
   4-neighbour outside it) is in the result, the colour did not stop at an edge inside the
   band (a bar on a background of nearly its own colour: dark on dark foliage, orange on
   orange). The result is then clipped to the model's mask grown by ``clip`` px, and step 5
   (components touching the core, holes filled) is applied again: the colour still squares
   the model's soft edge, but cannot spread.

Mosaics have their own rule (:mod:`cendetect.engine.refine_mosaic`: find the cell grid, then
decide per cell and per pixel; see docs/refinement.md for why plain cell snapping hurts).
Coordinates: windows ``x0, y0, x1, y1`` half-open in image pixels, as
:class:`~cendetect.engine.masks.InstanceMasks`.

:func:`refine_masks` runs the C++ kernels (csrc/refine.cpp and csrc/refine_mosaic.cpp, in the
compositor's module and threads, parallel over instances), which equal
:func:`refine_bar_reference` and :func:`~cendetect.engine.refine_mosaic.refine_mosaic_reference`
pixel for pixel.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from cendetect.engine.compositor import _native
from cendetect.engine.masks import InstanceMasks
from cendetect.engine.refine_mosaic import (
    MosaicRefineParams,
    _dilate,
    _disk,
    _erode,
    _round_half_up,
    refine_mosaic_reference,
    region_of,
)

__all__ = [
    "REFINE_BAR",
    "REFINE_MOSAIC",
    "REFINE_NONE",
    "BarRefineParams",
    "MosaicRefineParams",
    "refine_bar_reference",
    "refine_kinds",
    "refine_masks",
    "refine_masks_reference",
]

#: what :func:`refine_masks` does with an instance (``kinds[i]``)
REFINE_NONE, REFINE_BAR, REFINE_MOSAIC = 0, 1, 2
_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)
_MOSAIC_DEFAULTS = MosaicRefineParams()


@dataclass(frozen=True)
class BarRefineParams:
    """Settings of the bar refinement (defaults chosen on the synthetic val split)."""

    band_frac: float = 0.15  #: band width as a fraction of sqrt(model mask area)
    band_min: int = 2
    band_max: int = 48
    core_frac: float = 0.1  #: core erosion as a fraction of sqrt(area)
    tol_scale: float = 1.5
    tol_offset: float = 6.0
    tol_min: float = 8.0
    tol_max: float = 40.0
    max_spread: float = 24.0  #: core spread (90th pct of d) above which the region is not flat
    min_area: int = 16  #: smaller model masks are kept as they are
    min_ratio: float = 0.5  #: accept the result if its area is in [min_ratio, max_ratio] x
    max_ratio: float = 2.0
    edge_rule: bool = True  #: step 4 (anti-aliased edge pixels); False: the plain yardstick
    rim_max: float = 0.05  #: step 7: share of the band's outer contour the result may reach
    clip: int = 2  #: step 7: px the result may then grow past the model's mask

    def __post_init__(self) -> None:
        if self.clip < 0 or not self.rim_max >= 0.0:
            raise ValueError(f"clip {self.clip} and rim_max {self.rim_max} must be >= 0")


def _lower_median(values: np.ndarray) -> np.ndarray:
    """Per column, the lower median (``sorted[(n - 1) // 2]``) of ``[n, C]`` integers."""
    return np.sort(values, axis=0)[(values.shape[0] - 1) // 2]


def refine_bar_reference(
    image: np.ndarray,
    window: tuple[int, int, int, int],
    crop: np.ndarray,
    params: BarRefineParams = BarRefineParams(),
) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """Refine one bar instance (the definition the C++ kernel must equal pixel for pixel).

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
    root = float(np.sqrt(area))
    core = _erode(region, _disk(max(1, _round_half_up(params.core_frac * root))))
    if not core.any():
        core = region
    img = image[ry0:ry1, rx0:rx1].astype(np.int32)
    colour = _lower_median(img[core])
    d = np.abs(img - colour).max(axis=2)
    dc = np.sort(d[core])
    spread = int(dc[(9 * (dc.size - 1)) // 10])
    if spread > params.max_spread:
        return None
    tol = min(max(params.tol_scale * spread + params.tol_offset, params.tol_min), params.tol_max)
    in_band = _dilate(region, _disk(band))
    strong = in_band & (d <= tol)
    outside = in_band & ~strong & ~region
    cand = strong.copy()
    if params.edge_rule and outside.any():
        bg = _lower_median(img[outside])
        to_c = np.abs(img - colour).sum(axis=2)
        to_bg = np.abs(img - bg).sum(axis=2)
        near = _dilate(strong, np.ones((3, 3), np.uint8))
        cand |= in_band & near & (to_c < to_bg)
    out = _seeded_components_filled(cand, core)
    if out is None:
        return None
    new_area = int(out.sum())
    if not params.min_ratio * area <= new_area <= params.max_ratio * area:
        return None
    # the band's outer contour: band pixels with a 4-neighbour outside it (outside the grid,
    # where an image border clamped it, counts as band)
    rim = in_band & ~cv2.erode(in_band.astype(np.uint8), _CROSS, borderValue=1).astype(bool)
    if int((out & rim).sum()) > params.rim_max * int(rim.sum()):
        out = _seeded_components_filled(out & _dilate(region, _disk(params.clip)), core)
        if out is None:
            return None
    return (rx0, ry0, rx1, ry1), out


def _seeded_components_filled(cand: np.ndarray, seeds: np.ndarray) -> np.ndarray | None:
    """The 8-connected components of ``cand`` holding a pixel of ``seeds``, their holes (the
    complement's 4-connected components not touching the grid's border) filled; None when no
    seed is in ``cand``."""
    _, labels = cv2.connectedComponents(cand.astype(np.uint8), connectivity=8)
    keep = np.unique(labels[seeds & cand])
    keep = keep[keep > 0]
    if keep.size == 0:
        return None
    out = np.isin(labels, keep)
    _, holes = cv2.connectedComponents((~out).astype(np.uint8), connectivity=4)
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    out |= (holes > 0) & ~np.isin(holes, border)
    return out


def _kinds(kinds: np.ndarray, n: int) -> np.ndarray:
    """``uint8 [n]`` refinement kinds; a bool array means bars (the older calling form)."""
    k = np.asarray(kinds).reshape(-1)
    k = k.astype(np.uint8) if k.dtype == np.bool_ else k
    if k.shape[0] != n:
        raise ValueError(f"kinds has {k.shape[0]} entries for {n} masks")
    if k.size and (int(k.min()) < 0 or int(k.max()) > REFINE_MOSAIC):
        raise ValueError("kinds must hold 0 (none), 1 (bar) or 2 (mosaic)")
    return np.ascontiguousarray(k, dtype=np.uint8)


def refine_kinds(
    labels: np.ndarray, class_names: tuple[str, ...] | list[str], classes: frozenset[str]
) -> np.ndarray:
    """``uint8 [N]`` kinds for detections: ``REFINE_BAR`` for a label named ``bar``,
    ``REFINE_MOSAIC`` for ``mosaic``, each only if its name is in ``classes``."""
    table = np.zeros(max(len(class_names), 1), np.uint8)
    for i, name in enumerate(class_names):
        if name in classes and name == "bar":
            table[i] = REFINE_BAR
        elif name in classes and name == "mosaic":
            table[i] = REFINE_MOSAIC
    return table[np.asarray(labels, np.int64)] if len(labels) else np.zeros(0, np.uint8)


def refine_masks_reference(
    image: np.ndarray,
    masks: InstanceMasks,
    kinds: np.ndarray,
    params: BarRefineParams = BarRefineParams(),
    mosaic_params: MosaicRefineParams = _MOSAIC_DEFAULTS,
) -> tuple[InstanceMasks, np.ndarray]:
    """Refine every instance by its kind (``REFINE_BAR``, ``REFINE_MOSAIC``; a bool array
    means bars); others are copied.

    Returns:
        (the refined masks, bool ``[N]``: which instances were changed).
    """
    kinds = _kinds(kinds, len(masks.windows))
    windows, crops, changed = [], [], np.zeros(len(masks.windows), bool)
    for i, win in enumerate(masks.windows):
        win_t = tuple(int(v) for v in win)
        crop = masks.crop(i)
        res = None
        if kinds[i] == REFINE_BAR:
            res = refine_bar_reference(image, win_t, crop, params)
        elif kinds[i] == REFINE_MOSAIC:
            res = refine_mosaic_reference(image, win_t, crop, mosaic_params)
        if res is not None:
            win_t, crop = res
            changed[i] = True
        windows.append(win_t)
        crops.append(np.asarray(crop, np.uint8).reshape(-1))
    offsets = np.concatenate([[0], np.cumsum([c.size for c in crops])]).astype(np.int64)
    data = np.concatenate(crops) if crops else np.zeros(0, np.uint8)
    win_arr = np.asarray(windows, np.int64).reshape(-1, 4)
    return InstanceMasks(masks.image_size, win_arr, offsets, data), changed


def refine_masks(
    image: np.ndarray,
    masks: InstanceMasks,
    kinds: np.ndarray,
    params: BarRefineParams = BarRefineParams(),
    mosaic_params: MosaicRefineParams = _MOSAIC_DEFAULTS,
) -> tuple[InstanceMasks, np.ndarray]:
    """Refine each instance by its kind with the C++ kernels; others are copied.

    Args:
        image: BGR uint8 ``[H, W, 3]`` (any row stride, packed pixels), the image the masks
            were pasted for (``masks.image_size``).
        masks: the pasted masks.
        kinds: ``[N]`` of ``REFINE_NONE`` / ``REFINE_BAR`` / ``REFINE_MOSAIC`` (a bool array
            means bars).
    Returns:
        (the refined masks, bool ``[N]``: which instances were changed).
    Raises:
        ValueError: the image is not BGR uint8 of the masks' size, or ``kinds`` is not ``[N]``
            of known kinds.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be BGR uint8 [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[:2] != tuple(masks.image_size):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]} but the masks were pasted for "
            f"{masks.image_size[1]}x{masks.image_size[0]}"
        )
    kinds = _kinds(kinds, len(masks.windows))
    if image.strides[2] != 1 or image.strides[1] != 3:
        image = np.ascontiguousarray(image)
    windows, offsets, data, changed = _native().refine_instances(
        image,
        masks.windows,
        masks.offsets,
        masks.data,
        kinds,
        asdict(params),
        asdict(mosaic_params),
    )
    return InstanceMasks._trusted(masks.image_size, windows, offsets, data), changed.astype(bool)
