"""Composite modes: draw compact instance masks into a uint8 BGR image.

``composite(image, masks, labels, mode=...)`` with ``masks`` from
:func:`~cendetect.engine.compositor.paste_masks` (or ``Detections.instance_masks``):

- ``fill``: every masked pixel set to its class colour; default pure green ``(0, 255, 0)`` for
  all classes, exactly (no anti-aliasing): CenDetect's output, read by DeepCreamPy-style tools.
- ``mask``: a new black image with the class colours (annotation convention: ``(0, 255, 0)``
  bar, ``(0, 255, 255)`` mosaic), or with ``channels=1`` a single-channel 0/255 mask.
- ``mosaic``: masked pixels replaced by the mean of their ``block_size`` block (blocks on a grid
  anchored at the image origin; the means come from the unmodified image).
- ``blur``: masked pixels replaced by a Gaussian blur (``cv2.GaussianBlur``) of the image.
- ``overlay``: translucent colour per instance with an outline, and boxes with "label score%"
  when ``boxes`` are given (:mod:`cendetect.engine.overlay`).

``dilate=k`` grows every mask by ``k`` pixels (square kernel) first, in any mode. All modes but
``mask`` draw into a copy, or into ``image`` itself with ``inplace=True``. Pixels outside every
mask are never changed; where masks overlap, later instances are drawn over earlier ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from cendetect.engine.compositor import (
    ANNOTATION_COLORS,
    GREEN,
    ArrayLike,
    ColorsLike,
    as_labels,
    copy_instances,
    fill_instances,
    prepare_image,
    resolve_colors,
)
from cendetect.engine.masks import InstanceMasks

__all__ = ["MODES", "composite"]

Mode = Literal["fill", "mask", "mosaic", "blur", "overlay"]
MODES: tuple[str, ...] = ("fill", "mask", "mosaic", "blur", "overlay")


def composite(
    image: ArrayLike | None,
    masks: InstanceMasks,
    labels: ArrayLike | None = None,
    mode: Mode = "fill",
    *,
    colors: ColorsLike | None = None,
    inplace: bool = False,
    dilate: int = 0,
    channels: int = 3,
    block_size: int | None = None,
    blur_sigma: float | None = None,
    alpha: float = 0.5,
    outline: bool = True,
    boxes: ArrayLike | None = None,
    scores: ArrayLike | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """Draw ``masks`` into ``image`` in one of the modes above.

    Args:
        image: ``uint8 [H, W, 3]`` BGR, the size of ``masks.image_size`` (ignored, and may be
            None, for ``mode="mask"``).
        masks: compact instance masks.
        labels: ``int [N]`` class indices (per-class colours, overlay text).
        mode: ``"fill"``, ``"mask"``, ``"mosaic"``, ``"blur"`` or ``"overlay"``.
        colors: one colour, a per-class ``[K, C]`` table, or ``{label or class name: colour}``.
            Defaults: fill green; mask the annotation colours (all green without labels; 255
            with ``channels=1``); overlay a colour per instance.
        inplace: draw into ``image`` and return it.
        dilate: grow each mask by this many pixels first.
        channels: ``mode="mask"`` only: 3 (colour) or 1 (``uint8 [H, W]`` 0/255).
        block_size: ``mode="mosaic"``: block side in pixels; default ``max(4, ceil(max(H, W) /
            100))`` (the customary minimum: 4 px and 1/100 of the long side).
        blur_sigma: ``mode="blur"``: Gaussian sigma in pixels; default ``max(H, W) / 100``.
        alpha, outline, boxes, scores, class_names: ``mode="overlay"``: mask opacity in [0, 1],
            whether to outline masks, and boxes ``[N, 4]`` (x1, y1, x2, y2) to draw with
            "label score%" text from ``labels``/``class_names`` and ``scores``.

    Returns the composited image (``uint8 [H, W, 3]``; ``[H, W]`` for a one-channel mask).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    if not isinstance(masks, InstanceMasks):
        raise ValueError(f"masks must be InstanceMasks (from paste_masks), got {type(masks)}")
    n = len(masks)
    lab = as_labels(labels, n)
    masks = masks.dilate(_non_negative_int(dilate, "dilate"))
    if mode == "mask":
        return _mask_image(masks, lab, colors, channels, inplace, class_names)
    work, write_back = prepare_image(image, inplace)
    if tuple(work.shape[:2]) != masks.image_size:
        raise ValueError(
            f"image is {work.shape[0]}x{work.shape[1]} but the masks are for "
            f"{masks.image_size[0]}x{masks.image_size[1]}"
        )
    if mode == "fill":
        fill_instances(work, masks, resolve_colors(colors, lab, n, 3, GREEN, class_names))
    elif mode == "mosaic":
        _mosaic(work, masks, block_size)
    elif mode == "blur":
        _blur(work, masks, blur_sigma)
    else:
        from cendetect.engine.overlay import draw_overlay

        draw_overlay(work, masks, lab, colors, alpha, outline, boxes, scores, class_names)
    if write_back is not None:
        write_back[...] = work
        return write_back
    return work


def _non_negative_int(v: object, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    return int(v)


def _mask_image(
    masks: InstanceMasks,
    labels: np.ndarray | None,
    colors: ColorsLike | None,
    channels: int,
    inplace: bool,
    class_names: Sequence[str] | None,
) -> np.ndarray:
    if inplace:
        raise ValueError("mode='mask' makes a new image; pass inplace=False")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3 for mode='mask', got {channels}")
    h, w = masks.image_size
    n = len(masks)
    out = np.zeros((h, w, channels), dtype=np.uint8)
    if channels == 1:
        default: ColorsLike = (255,)
    else:
        default = GREEN if labels is None else _annotation_table(labels)
    fill_instances(out, masks, resolve_colors(colors, labels, n, channels, default, class_names))
    return out[:, :, 0] if channels == 1 else out


def _annotation_table(labels: np.ndarray) -> np.ndarray:
    """CenDetect's annotation colours for classes 0 and 1; further classes get green too."""
    k = max(int(labels.max()) + 1 if labels.size else 0, len(ANNOTATION_COLORS))
    table = np.tile(np.array(GREEN, dtype=np.uint8), (k, 1))
    table[: len(ANNOTATION_COLORS)] = ANNOTATION_COLORS
    return table


def _region(masks: InstanceMasks) -> tuple[int, int, int, int] | None:
    """Bounding box (x0, y0, x1, y1) of all non-empty windows, or None."""
    win = masks.windows
    keep = (win[:, 2] > win[:, 0]) & (win[:, 3] > win[:, 1])
    if not keep.any():
        return None
    w = win[keep]
    return int(w[:, 0].min()), int(w[:, 1].min()), int(w[:, 2].max()), int(w[:, 3].max())


def _mosaic(work: np.ndarray, masks: InstanceMasks, block_size: int | None) -> None:
    h, w = masks.image_size
    b = (
        max(4, -(-max(h, w) // 100))
        if block_size is None
        else _non_negative_int(block_size, "block_size")
    )
    if b < 1:
        raise ValueError("block_size must be >= 1")
    region = _region(masks)
    if region is None:
        return
    x0, y0, x1, y1 = region
    x0, y0 = x0 // b * b, y0 // b * b  # blocks on the image's grid, whatever the region
    src = work[y0:y1, x0:x1]
    rows = np.arange(0, src.shape[0], b)
    cols = np.arange(0, src.shape[1], b)
    sums = np.add.reduceat(np.add.reduceat(src, rows, axis=0, dtype=np.uint64), cols, axis=1)
    rh = np.diff(np.append(rows, src.shape[0]))
    cw = np.diff(np.append(cols, src.shape[1]))
    count = (rh[:, None] * cw[None, :])[:, :, None].astype(np.uint64)
    means = ((sums + count // 2) // count).astype(np.uint8)  # rounded to nearest
    pixelated = np.repeat(np.repeat(means, rh, axis=0), cw, axis=1)
    copy_instances(work, masks, pixelated, x0, y0)


def _blur(work: np.ndarray, masks: InstanceMasks, blur_sigma: float | None) -> None:
    h, w = masks.image_size
    sigma = max(h, w) / 100 if blur_sigma is None else float(blur_sigma)
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ValueError(f"blur_sigma must be a positive number, got {blur_sigma!r}")
    region = _region(masks)
    if region is None:
        return
    x0, y0, x1, y1 = region
    r = int(np.ceil(3 * sigma))  # beyond 3 sigma the kernel is negligible: blur a margin too
    px0, py0, px1, py1 = max(x0 - r, 0), max(y0 - r, 0), min(x1 + r, w), min(y1 + r, h)
    blurred = cv2.GaussianBlur(work[py0:py1, px0:px1], (0, 0), sigma)
    copy_instances(work, masks, blurred, px0, py0)
