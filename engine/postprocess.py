"""From the raw-detection contract to per-image results in original-image pixels.

Boxes come back from every engine in network-input pixels and are divided by the image's scale
factor (mmdet's ``rescale=True``). Masks are pasted at full resolution by the C++ compositor
(:func:`~cendetect.engine.compositor.paste_masks`, mmdetection's / detectron2's pixel model) into
compact per-instance bitmaps; the ``N x H x W`` array is only built if ``Detections.masks`` is
read.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cendetect.engine.compositor import paste_masks
from cendetect.engine.masks import InstanceMasks
from cendetect.engine.paste_legacy import paste_masks_legacy
from cendetect.engine.preprocess import Batch
from cendetect.engine.refine import refine_kinds, refine_masks

#: what every engine returns: boxes [N,4], scores [N], labels [N], mask_probs [N,M,M], batch_ids [N]
RawDetections = tuple[Tensor, Tensor, Tensor, Tensor, Tensor]


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: ``float32 [N, 4]`` x1, y1, x2, y2 in original-image pixels (continuous coordinates:
            the pixel (i, j) covers [j, j+1) x [i, i+1)).
        scores: ``float32 [N]``, descending.
        labels: ``int64 [N]`` class indices into ``class_names``.
        instance_masks: the masks as compact box-cropped bitmaps (``.to_rle()``,
            ``.to_polygons()``, ``.crop(i)``...).
        class_names: names of all classes of the model.
        image_size: (H, W) of the original image.
        mask_probs: ``float32 [N, M, M]`` the model's mask probabilities before the threshold
            (each over its box), for ``composite(mode="heatmap")``; None when not kept.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    instance_masks: InstanceMasks
    class_names: tuple[str, ...]
    image_size: tuple[int, int]
    mask_probs: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def label_names(self) -> list[str]:
        return [self.class_names[int(i)] for i in self.labels]

    @cached_property
    def masks(self) -> np.ndarray:
        """``bool [N, H, W]`` full-resolution instance masks, built on first use and kept."""
        return self.instance_masks.to_full()

    def take(self, index: np.ndarray) -> Detections:
        """The detections at ``index`` (integer indices or a bool ``[N]`` mask), in that order."""
        idx = np.asarray(index)
        if idx.dtype == np.bool_:
            idx = np.flatnonzero(idx)
        return Detections(
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            labels=self.labels[idx],
            instance_masks=self.instance_masks.select(idx),
            class_names=self.class_names,
            image_size=self.image_size,
            mask_probs=None if self.mask_probs is None else self.mask_probs[idx],
        )

    def composite(self, image: np.ndarray, mode: str = "fill", **kwargs: Any) -> np.ndarray:
        """Draw the detections into ``image`` (``uint8 [H, W, 3]`` BGR of this image's size).

        ``mode`` and keyword arguments as :func:`cendetect.engine.composite.composite`
        (``"fill"``: pure green, CenDetect's output; ``"mask"``, ``"mosaic"``, ``"blur"``,
        ``"overlay"``; ``dilate=``, ``colors=``, ``inplace=``...). Overlay draws boxes and
        "label score%" tags unless ``boxes=None`` is passed. ``"heatmap"``: the mask
        probabilities before the threshold as a colour map (:mod:`cendetect.engine.heatmap`;
        ``alpha=``, ``inplace=``; the other keywords do not apply).
        """
        from cendetect.engine.composite import composite

        if mode == "heatmap":
            from cendetect.engine.heatmap import draw_heatmap

            if self.mask_probs is None:
                raise ValueError("mode='heatmap' needs the mask probabilities (mask_probs)")
            probs = self.mask_probs
            return draw_heatmap(
                image, self.boxes, probs, kwargs.get("alpha", 0.6), kwargs.get("inplace", False)
            )
        if mode == "overlay":
            kwargs.setdefault("boxes", self.boxes)
            kwargs.setdefault("scores", self.scores)
        kwargs.setdefault("class_names", self.class_names)
        return composite(image, self.instance_masks, self.labels, mode, **kwargs)  # type: ignore[arg-type]


#: how masks are pasted: mmdetection's / detectron2's pixel model, or maskrcnn-benchmark's
PASTE_MODES = ("mmdet", "legacy")


def to_detections(
    raw: Sequence[Tensor],
    batch: Batch,
    class_names: Sequence[str],
    mask_threshold: float = 0.5,
    images: Sequence[np.ndarray] | None = None,
    refine_classes: Collection[str] = (),
    paste: str = "mmdet",
) -> list[Detections]:
    """Split raw detections by image, rescale boxes to original pixels and paste masks.

    With ``images`` (the original BGR images) and ``refine_classes`` (``"bar"``, ``"mosaic"``),
    the pasted masks of those classes get their refinement
    (:func:`cendetect.engine.refine.refine_masks`). ``paste``: ``"mmdet"`` (the compositor's
    pixel model, mmdetection's and detectron2's) or ``"legacy"`` (maskrcnn-benchmark's
    ``Masker``, :mod:`cendetect.engine.paste_legacy`).
    """
    if paste not in PASTE_MODES:
        raise ValueError(f"paste={paste!r}: use one of {', '.join(PASTE_MODES)}")
    boxes, scores, labels, mask_probs, batch_ids = (t.detach() for t in raw)
    results: list[Detections] = []
    names = tuple(class_names)
    for i, (h, w) in enumerate(batch.original_sizes):
        sel = (batch_ids == i).nonzero().squeeze(1)
        sf = batch.scale_factors[i].to(boxes.device, torch.float32)
        b = (boxes[sel].float() / sf).cpu()
        # N x M x M probabilities are small: the C++ compositor pastes them on the CPU whatever
        # device the engine ran on.
        if paste == "legacy":  # maskrcnn-benchmark checkpoints: their Masker's paste
            masks = paste_masks_legacy(mask_probs[sel].float().cpu(), b, (h, w), mask_threshold)
        else:
            masks = paste_masks(mask_probs[sel].cpu(), b, (h, w), mask_threshold)
        lab = labels[sel].to(torch.int64).cpu().numpy()
        if images is not None and refine_classes and len(lab):
            kinds = refine_kinds(lab, names, frozenset(refine_classes))
            if kinds.any():
                masks, _ = refine_masks(images[i], masks, kinds)
        results.append(
            Detections(
                boxes=b.numpy().astype(np.float32),
                scores=scores[sel].float().cpu().numpy(),
                labels=lab,
                instance_masks=masks,
                class_names=names,
                image_size=(h, w),
                mask_probs=mask_probs[sel].float().cpu().numpy(),
            )
        )
    return results
