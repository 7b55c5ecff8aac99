"""Mask paste and fill on torch tensors of any device (the GPU path of the compositor).

The same pixel model as :mod:`cendetect.engine.compositor` (its module docstring), computed with
torch ops over each box's window only: the largest intermediate is one instance's window of
float samples, never an ``N x H x W`` float tensor as in mmdetection's / detectron2's GPU paste.
For CPU tensors prefer the C++ compositor (faster, threaded); this path exists so that frames
that live on a CUDA device are masked there without a round trip.

CUDA status: written for and tested on CPU tensors only (this project's test machine has no GPU);
the CUDA tests skip themselves without a device. On CUDA, ``grid_sample`` rounds its
multiply-adds differently from the CPU kernel, so pixels whose sample lies within ~1e-6 of the
threshold may differ from the CPU result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cendetect.engine.compositor import (
    GREEN,
    ColorsLike,
    as_image_size,
    as_labels,
    as_threshold,
    paste_windows,
    resolve_colors,
)
from cendetect.engine.masks import InstanceMasks

__all__ = ["fill_masks_torch", "paste_crops_torch", "paste_masks_torch"]


def _check(mask_probs: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    if not isinstance(mask_probs, Tensor) or not isinstance(boxes, Tensor):
        raise ValueError("mask_probs and boxes must be torch tensors (numpy: use compositor)")
    m = mask_probs[:, 0] if mask_probs.dim() == 4 and mask_probs.shape[1] == 1 else mask_probs
    if m.dim() != 3 or not m.is_floating_point():
        raise ValueError(f"mask_probs must be float [N, M, M], got {m.dtype} {tuple(m.shape)}")
    if boxes.dim() != 2 or boxes.shape[1] != 4 or boxes.shape[0] != m.shape[0]:
        raise ValueError(f"boxes must be [N, 4] with N = {m.shape[0]}, got {tuple(boxes.shape)}")
    if m.shape[0] and (m.shape[1] < 1 or m.shape[2] < 1):
        raise ValueError(f"mask_probs has an empty mask side: shape {tuple(m.shape)}")
    return m.float(), boxes.float()


def _axis(lo: int, hi: int, b0: Tensor, b1: Tensor) -> Tensor:
    """Normalised sample coordinates of pixels lo..hi-1 (mmdetection's float32 arithmetic)."""
    c = torch.arange(lo, hi, device=b0.device).to(torch.float32) + 0.5
    g = (c - b0) / (b1 - b0) * 2 - 1
    return torch.where(torch.isinf(g), torch.zeros_like(g), g)


def paste_crops_torch(
    mask_probs: Tensor, boxes: Tensor, image_size: Sequence[int], threshold: float = 0.5
) -> tuple[np.ndarray, list[Tensor]]:
    """Per-instance window bitmaps on the tensors' device.

    Args:
        mask_probs: ``[N, Mh, Mw]`` (or ``[N, 1, Mh, Mw]``) float probabilities.
        boxes: ``[N, 4]`` x1, y1, x2, y2 in image pixels.
        image_size: (H, W).

    Returns ``windows`` (``int64 [N, 4]`` numpy, as :func:`~.compositor.paste_windows`) and
    one ``bool [y1 - y0, x1 - x0]`` tensor per instance.
    """
    m, b = _check(mask_probs, boxes)
    h, w = as_image_size(image_size)
    thr = as_threshold(threshold)
    windows = paste_windows(b.detach().cpu().numpy(), (h, w))
    crops = []
    for i, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        if x1 <= x0 or y1 <= y0:
            crops.append(torch.zeros((y1 - y0, x1 - x0), dtype=torch.bool, device=m.device))
            continue
        gx = _axis(x0, x1, b[i, 0], b[i, 2])
        gy = _axis(y0, y1, b[i, 1], b[i, 3])
        grid = torch.stack(
            [gx[None, :].expand(y1 - y0, -1), gy[:, None].expand(-1, x1 - x0)], dim=2
        )
        sample = F.grid_sample(m[i][None, None], grid[None], align_corners=False)[0, 0]
        crops.append(sample >= thr)
    return windows, crops


def paste_masks_torch(
    mask_probs: Tensor, boxes: Tensor, image_size: Sequence[int], threshold: float = 0.5
) -> InstanceMasks:
    """:func:`paste_crops_torch`, gathered into :class:`InstanceMasks` on the CPU."""
    h, w = as_image_size(image_size)
    windows, crops = paste_crops_torch(mask_probs, boxes, (h, w), threshold)
    return InstanceMasks.from_crops((h, w), windows, [c.cpu().numpy() for c in crops])


def fill_masks_torch(
    image: Tensor,
    mask_probs: Tensor,
    boxes: Tensor,
    labels: Tensor | np.ndarray | None = None,
    colors: ColorsLike | None = None,
    threshold: float = 0.5,
) -> Tensor:
    """Paints every instance's pixels of ``image`` (``uint8 [H, W, C]`` tensor) in place.

    Same arguments and colours as :func:`~cendetect.engine.compositor.fill_masks`; returns
    ``image``. Later instances are painted over earlier ones.
    """
    if not isinstance(image, Tensor) or image.dtype != torch.uint8 or image.dim() != 3:
        raise ValueError("image must be a uint8 [H, W, C] tensor")
    n = int(mask_probs.shape[0])
    lab = as_labels(labels.cpu() if isinstance(labels, Tensor) else labels, n)
    cols = resolve_colors(colors, lab, n, int(image.shape[2]), GREEN)
    col_t = torch.from_numpy(cols).to(image.device)
    windows, crops = paste_crops_torch(
        mask_probs.to(image.device), boxes.to(image.device), image.shape[:2], threshold
    )
    for i, (x0, y0, x1, y1) in enumerate(windows.tolist()):
        if x1 > x0 and y1 > y0:
            image[y0:y1, x0:x1][crops[i]] = col_t[i]
    return image
