"""From the raw-detection contract to per-image results in original-image pixels.

Boxes come back from every engine in network-input pixels and are divided by the image's scale
factor (mmdet's ``rescale=True``). Masks are pasted at full resolution with mmdetection's /
detectron2's pixel model (:func:`paste_masks`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from cendetect.engine.preprocess import Batch

#: what every engine returns: boxes [N,4], scores [N], labels [N], mask_probs [N,M,M], batch_ids [N]
RawDetections = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: ``float32 [N, 4]`` x1, y1, x2, y2 in original-image pixels (continuous coordinates:
            the pixel (i, j) covers [j, j+1) x [i, i+1)).
        scores: ``float32 [N]``, descending.
        labels: ``int64 [N]`` class indices into ``class_names``.
        masks: ``bool [N, H, W]`` full-resolution instance masks.
        class_names: names of all classes of the model.
        image_size: (H, W) of the original image.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def label_names(self) -> list[str]:
        return [self.class_names[int(i)] for i in self.labels]


def paste_masks(
    mask_probs: Tensor, boxes: Tensor, height: int, width: int, threshold: float = 0.5
) -> Tensor:
    """Paste ``M x M`` mask probabilities into their boxes on an ``height x width`` canvas.

    Pixel model (mmdet ``_do_paste_mask`` / detectron2 ``paste_masks_in_image``): the centre of
    pixel (y, x) is at (y + 0.5, x + 0.5); it maps into box (x1, y1, x2, y2) as
    ``u = (x + 0.5 - x1) / (x2 - x1) * 2 - 1`` (same for v), and the mask is sampled there
    bilinearly with ``align_corners=False`` and zeros outside the mask. The pixel belongs to the
    instance when the sample is ``>= threshold``. Only a window of the box +- 1 pixel is
    evaluated: outside it the sample is exactly 0.

    Args:
        mask_probs: ``Tensor[N, M, M]`` probabilities in [0, 1].
        boxes: ``Tensor[N, 4]`` x1, y1, x2, y2 in canvas pixels.

    Returns ``Tensor[N, height, width]`` bool.
    """
    n = mask_probs.shape[0]
    out = torch.zeros((n, height, width), dtype=torch.bool, device=mask_probs.device)
    boxes = boxes.float()
    for i in range(n):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        if not all(np.isfinite([x1, y1, x2, y2])):
            continue
        x0i = max(int(np.floor(x1)) - 1, 0)
        y0i = max(int(np.floor(y1)) - 1, 0)
        x1i = min(int(np.ceil(x2)) + 1, width)
        y1i = min(int(np.ceil(y2)) + 1, height)
        if x1i <= x0i or y1i <= y0i:
            continue
        b = boxes[i]
        gx = (torch.arange(x0i, x1i, device=b.device, dtype=torch.float32) + 0.5 - b[0]) / (
            b[2] - b[0]
        ) * 2 - 1
        gy = (torch.arange(y0i, y1i, device=b.device, dtype=torch.float32) + 0.5 - b[1]) / (
            b[3] - b[1]
        ) * 2 - 1
        gx = torch.where(torch.isinf(gx), torch.zeros_like(gx), gx)
        gy = torch.where(torch.isinf(gy), torch.zeros_like(gy), gy)
        grid = torch.stack(
            [gx.view(1, -1).expand(gy.numel(), -1), gy.view(-1, 1).expand(-1, gx.numel())], dim=2
        )
        sampled = F.grid_sample(mask_probs[i].float()[None, None], grid[None], align_corners=False)[
            0, 0
        ]
        out[i, y0i:y1i, x0i:x1i] = sampled >= threshold
    return out


def to_detections(
    raw: Sequence[Tensor],
    batch: Batch,
    class_names: Sequence[str],
    mask_threshold: float = 0.5,
) -> list[Detections]:
    """Split raw detections by image, rescale boxes to original pixels and paste masks."""
    boxes, scores, labels, mask_probs, batch_ids = (t.detach() for t in raw)
    results: list[Detections] = []
    names = tuple(class_names)
    for i, (h, w) in enumerate(batch.original_sizes):
        sel = (batch_ids == i).nonzero().squeeze(1)
        sf = batch.scale_factors[i].to(boxes.device, torch.float32)
        b = boxes[sel].float() / sf
        masks = paste_masks(mask_probs[sel], b, h, w, mask_threshold)
        results.append(
            Detections(
                boxes=b.cpu().numpy().astype(np.float32),
                scores=scores[sel].float().cpu().numpy(),
                labels=labels[sel].to(torch.int64).cpu().numpy(),
                masks=masks.cpu().numpy(),
                class_names=names,
                image_size=(h, w),
            )
        )
    return results
