"""``mode="heatmap"``: each instance's mask probabilities (the model's M x M map, before the
threshold) drawn as a colour map over the image, as maskrcnn-benchmark's demo shows its mask
heat-maps (``--show-mask-heatmaps``), but in place over the picture instead of a montage.

Each map is resized bilinearly to its box (continuous x1, y1, x2, y2, original pixels; the
whole pixels the box touches) and the maps combine by their maximum; the colour (OpenCV's JET
map: blue for low, red for high) is blended over the image with weight ``alpha * p``, so pixels
no instance gives any probability keep their colour. The heat-map shows the model's output, not
the refined masks.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

__all__ = ["draw_heatmap", "probability_map"]


def probability_map(
    boxes: np.ndarray, mask_probs: np.ndarray, image_size: tuple[int, int]
) -> np.ndarray:
    """``float32 [H, W]``: the largest probability any instance gives each pixel.

    Args:
        boxes: ``[N, 4]`` x1, y1, x2, y2 in original pixels.
        mask_probs: ``[N, M, M]`` probabilities in [0, 1].
        image_size: (H, W).
    """
    h, w = image_size
    out = np.zeros((h, w), np.float32)
    for box, probs in zip(np.asarray(boxes, np.float64), np.asarray(mask_probs, np.float32)):
        x1, y1, x2, y2 = box
        left, top = max(0, math.floor(x1)), max(0, math.floor(y1))
        right, bottom = min(w, math.ceil(x2)), min(h, math.ceil(y2))
        if right <= left or bottom <= top:
            continue
        # the map spans the continuous box; sample it at the centres of the pixels it touches
        bw, bh = max(x2 - x1, 1e-6), max(y2 - y1, 1e-6)
        m = probs.shape[-1]
        xs = ((np.arange(left, right) + 0.5 - x1) / bw * m - 0.5).astype(np.float32)
        ys = ((np.arange(top, bottom) + 0.5 - y1) / bh * m - 0.5).astype(np.float32)
        mx, my = np.meshgrid(xs, ys)
        window = cv2.remap(
            probs, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        region = out[top:bottom, left:right]
        np.maximum(region, window, out=region)
    return out


def draw_heatmap(
    image: np.ndarray,
    boxes: np.ndarray,
    mask_probs: np.ndarray,
    alpha: float = 0.6,
    inplace: bool = False,
) -> np.ndarray:
    """The heat-map of ``mask_probs`` blended over ``image`` (``uint8 [H, W, 3]`` BGR)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 [H, W, 3], got {img.dtype} {img.shape}")
    heat = probability_map(boxes, mask_probs, img.shape[:2])
    colour = cv2.applyColorMap(np.round(heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    weight = (alpha * heat)[..., None]
    blended = img.astype(np.float32) * (1.0 - weight) + colour.astype(np.float32) * weight
    out = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    if inplace:
        img[...] = out
        return img
    return out
