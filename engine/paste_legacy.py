"""maskrcnn-benchmark's mask paste (its ``Masker``), for checkpoints of that family.

maskrcnn-benchmark pastes a Mask R-CNN mask the legacy Detectron way, not the way mmdetection
and detectron2 do (the compositor's pixel model, :mod:`cendetect.engine.compositor`):

1. the ``M x M`` probabilities are padded with one zero cell on each side (``M + 2`` cells);
2. the box (``x1, y1, x2, y2``, its ``+1`` convention: ``x2`` is the last column) is scaled
   about its centre by ``(M + 2) / M`` in float32 and truncated to int;
3. the padded map is resized bilinearly (torch's ``upsample_bilinear2d``,
   ``align_corners=False``) to ``(x2 - x1 + 1) x (y2 - y1 + 1)`` pixels of that box;
4. a pixel is in the mask when its value is ``> 0.5`` (strictly), and the map is pasted with
   its top-left corner at ``(x1, y1)``, clipped to the image.

So its masks reach about one box pixel further out and sit a fraction of a cell off ours.
:func:`paste_masks_legacy` runs the C++ kernel (``csrc/paste_legacy.cpp``), which equals
:func:`paste_masks_legacy_reference` (NumPy, the same float32 expressions in the same order)
pixel for pixel; against torch's own ``F.interpolate`` a pixel may differ only within an ulp
of the threshold (torch's build may fuse a multiply-add there).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cendetect.engine.compositor import _native, as_boxes, as_image_size, as_mask_probs
from cendetect.engine.masks import InstanceMasks

__all__ = ["legacy_box", "paste_masks_legacy", "paste_masks_legacy_reference"]


def paste_masks_legacy(
    mask_probs: np.ndarray, boxes: np.ndarray, image_size: Sequence[int], threshold: float = 0.5
) -> InstanceMasks:
    """Paste ``[N, M, M]`` probabilities into their ``[N, 4]`` boxes as maskrcnn-benchmark does.

    Returns compact masks (one window-sized bitmap per instance, windows clipped to the image).
    """
    m = np.ascontiguousarray(as_mask_probs(mask_probs), dtype=np.float32)
    if m.shape[1] != m.shape[2]:
        raise ValueError(f"the legacy paste takes square masks, got {m.shape[1]}x{m.shape[2]}")
    b = as_boxes(boxes, m.shape[0])
    h, w = as_image_size(image_size)
    ext = _native()
    windows = np.zeros((m.shape[0], 4), dtype=np.int64)
    ext.paste_legacy_windows(b, m.shape[1], h, w, windows)
    areas = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])
    offsets = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(areas, out=offsets[1:])
    data = np.zeros(int(offsets[-1]), dtype=np.uint8)
    ext.paste_legacy_masks(m, b, windows, offsets, float(threshold), data)
    return InstanceMasks._trusted((h, w), windows, offsets, data)


def _taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """torch's bilinear taps along one axis (align_corners=False), in float32."""
    f32 = np.float32
    i0 = np.empty(n_out, np.int64)
    i1 = np.empty(n_out, np.int64)
    w0 = np.empty(n_out, f32)
    w1 = np.empty(n_out, f32)
    scale = f32(n_in) / f32(n_out)
    for o in range(n_out):
        if n_out == n_in:
            i0[o] = i1[o] = o
            w0[o], w1[o] = f32(1), f32(0)
            continue
        real = max(scale * (f32(o) + f32(0.5)) - f32(0.5), f32(0))
        idx = min(int(np.floor(real)), n_in - 1)
        lam = min(max(real - f32(idx), f32(0)), f32(1))
        i0[o], i1[o] = idx, idx + (1 if idx < n_in - 1 else 0)
        w1[o], w0[o] = lam, f32(1) - lam
    return i0, i1, w0, w1


def legacy_box(box: np.ndarray, m: int) -> tuple[int, int, int, int]:
    """The integer box the map of an ``m x m`` mask is resized to: ``box`` scaled about its
    centre by ``(m + 2) / m`` in float32, truncated (x1, y1, x2, y2, inclusive)."""
    f32 = np.float32
    x1, y1, x2, y2 = (f32(v) for v in box)
    scale = f32((m + 2) / m)
    w_half = (x2 - x1) * f32(0.5) * scale
    h_half = (y2 - y1) * f32(0.5) * scale
    x_c, y_c = (x2 + x1) * f32(0.5), (y2 + y1) * f32(0.5)
    return tuple(int(v) for v in (x_c - w_half, y_c - h_half, x_c + w_half, y_c + h_half))


def paste_masks_legacy_reference(
    mask_probs: np.ndarray, boxes: np.ndarray, image_size: Sequence[int], threshold: float = 0.5
) -> np.ndarray:
    """The same paste, plain: ``bool [N, H, W]`` full-image masks (module docstring)."""
    probs = np.asarray(mask_probs, np.float32).reshape(len(boxes), *np.shape(mask_probs)[-2:])
    h_img, w_img = (int(v) for v in image_size)
    out = np.zeros((len(boxes), h_img, w_img), bool)
    m = probs.shape[-1]
    thr = np.float32(threshold)
    for i, box in enumerate(np.asarray(boxes, np.float32)):
        padded = np.zeros((m + 2, m + 2), np.float32)
        padded[1:-1, 1:-1] = probs[i]
        bx0, by0, bx1, by1 = legacy_box(box, m)
        w, h = max(bx1 - bx0 + 1, 1), max(by1 - by0 + 1, 1)
        yi0, yi1, yw0, yw1 = _taps(m + 2, h)
        xi0, xi1, xw0, xw1 = _taps(m + 2, w)
        t0 = padded[yi0][:, xi0] * xw0 + padded[yi0][:, xi1] * xw1  # inner (width) sums first
        t1 = padded[yi1][:, xi0] * xw0 + padded[yi1][:, xi1] * xw1
        resized = t0 * yw0[:, None] + t1 * yw1[:, None]
        x0, x1 = max(bx0, 0), min(bx1 + 1, w_img)
        y0, y1 = max(by0, 0), min(by1 + 1, h_img)
        if x1 > x0 and y1 > y0:
            out[i, y0:y1, x0:x1] = (resized > thr)[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return out
