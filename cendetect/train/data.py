"""COCO instance-segmentation data for training: reading, augmentation, batching.

A dataset folder holds ``annotations/instances_{split}.json`` and the images under ``{split}/``
(``file_name`` relative to it). Masks come from polygons or RLE through pycocotools; crowd
annotations are skipped. Categories map to labels in the order of the ``classes`` given (by
name), so label ``i`` is ``classes[i]`` whatever the category ids are.

Augmentation works on the decoded BGR image and the ``uint8 [G, H, W]`` instance bitmaps
together, so boxes never drift from masks: after all geometric steps the boxes are recomputed
from the masks (tight pixel-edge boxes) and instances left with fewer than ``min_pixels``
pixels are dropped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

from cendetect.train.losses import TrainBatch
from cendetect.train.targets import masks_to_boxes


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation.

    Attributes:
        long_side: (min, max) of the resized long edge, drawn uniformly per image (scale jitter);
            (n, n) for a fixed scale. Aspect ratio is kept.
        hflip: probability of a horizontal flip.
        crop_prob: probability of a random crop; the crop keeps ``crop_min``..1 of each side.
        brightness, contrast, saturation: colour jitter strengths (factor drawn in
            ``[1 - s, 1 + s]``), hue: shift in OpenCV hue units (of 180); 0 disables a term.
        min_pixels: instances with fewer mask pixels after augmentation are dropped.
    """

    long_side: tuple[int, int] = (512, 800)
    hflip: float = 0.5
    crop_prob: float = 0.3
    crop_min: float = 0.6
    brightness: float = 0.25
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 6.0
    min_pixels: int = 4


NO_AUGMENT = AugmentConfig(
    long_side=(800, 800), hflip=0.0, crop_prob=0.0, brightness=0, contrast=0, saturation=0, hue=0
)


def colour_jitter(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of a BGR uint8 image, in random order."""
    img = image.astype(np.float32)
    ops = rng.permutation(4)
    for op in ops:
        if op == 0 and cfg.brightness > 0:
            img *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
        elif op == 1 and cfg.contrast > 0:
            mean = float(
                cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY).mean()
            )
            img = (img - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
        elif op in (2, 3) and (cfg.saturation > 0 or cfg.hue > 0):
            hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_BGR2HSV)
            hsv = hsv.astype(np.float32)
            if op == 2 and cfg.saturation > 0:
                hsv[..., 1] *= rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
            if op == 3 and cfg.hue > 0:
                hsv[..., 0] = (hsv[..., 0] + rng.uniform(-cfg.hue, cfg.hue)) % 180
            hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
            img = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def resize_long_side(
    image: np.ndarray, masks: np.ndarray, long_side: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep-ratio resize so that the long edge is ``long_side``.

    The image and the masks share one pixel model (pixel centres at ``i + 0.5``, OpenCV's
    ``INTER_LINEAR``): each mask is resized as float and kept where its coverage is >= 0.5,
    as ``cendetect synth`` resizes its labels. OpenCV's ``INTER_NEAREST`` is not centre
    aligned (it reads source pixel ``floor(i * s)``), so it would shift every mask by
    ``(s - 1) / (2 s)`` px down and right of its image content; a model trained on that learns
    the shift (versions 1-6 of the default model did: their masks sat ~0.5 px low, the flips
    cancelling it in x only).

    Args:
        image: ``[H, W, 3]`` uint8.
        masks: ``[G, H, W]`` uint8 (0/1).
    Returns:
        ``(image [h, w, 3], masks [G, h, w] uint8)``.
    """
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    if masks.shape[0]:
        masks = np.stack(
            [
                (
                    cv2.resize(m.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR)
                    >= 0.5
                ).astype(np.uint8)
                for m in masks
            ]
        )
    else:
        masks = np.zeros((0, nh, nw), dtype=np.uint8)
    return image, masks


def augment(
    image: np.ndarray,
    masks: np.ndarray,
    labels: np.ndarray,
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crop, resize, flip and colour-jitter one sample.

    Args:
        image: BGR uint8 ``[H, W, 3]``.
        masks: uint8 ``[G, H, W]`` (0/1).
        labels: int64 ``[G]``.

    Returns:
        ``(image, masks, labels, boxes)`` with ``boxes float32 [G', 4]`` recomputed from the
        masks (``x1, y1, x2, y2`` pixel edges) and empty instances removed.
    """
    if cfg.crop_prob > 0 and rng.random() < cfg.crop_prob:
        h, w = image.shape[:2]
        ch = max(1, int(round(h * rng.uniform(cfg.crop_min, 1.0))))
        cw = max(1, int(round(w * rng.uniform(cfg.crop_min, 1.0))))
        y0 = int(rng.integers(0, h - ch + 1))
        x0 = int(rng.integers(0, w - cw + 1))
        image = image[y0 : y0 + ch, x0 : x0 + cw]
        masks = masks[:, y0 : y0 + ch, x0 : x0 + cw]
    lo, hi = cfg.long_side
    image, masks = resize_long_side(image, masks, int(rng.integers(lo, hi + 1)))
    if cfg.hflip > 0 and rng.random() < cfg.hflip:
        image = image[:, ::-1]
        masks = masks[:, :, ::-1]
    image = np.ascontiguousarray(image)
    masks = np.ascontiguousarray(masks)
    if cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue:
        image = colour_jitter(image, cfg, rng)
    keep = masks.sum(axis=(1, 2)) >= cfg.min_pixels  # works for G = 0 too
    masks, labels = masks[keep], labels[keep]
    boxes = masks_to_boxes(torch.from_numpy(masks).bool()).numpy()
    return image, masks, labels, boxes


class CocoInstances(torch.utils.data.Dataset):
    """One split of a COCO dataset folder, augmented on the fly.

    Args:
        root: the dataset folder.
        split: ``'train'`` or ``'val'`` (``annotations/instances_{split}.json``, images in
            ``{split}/``).
        classes: class names in label order; None takes the file's categories by id order.
        augment_cfg: augmentation; :data:`NO_AUGMENT` for a plain resize.
        seed: base seed; each item draws from ``(seed, epoch, index)``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        classes: Sequence[str] | None = None,
        augment_cfg: AugmentConfig = NO_AUGMENT,
        seed: int = 0,
    ) -> None:
        from pycocotools.coco import COCO

        self.root = Path(root)
        ann = self.root / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise FileNotFoundError(
                f"{ann}: no annotation file; a dataset folder needs "
                f"annotations/instances_{split}.json and images under {split}/"
            )
        self.image_dir = self.root / split
        with open(ann) as fh:
            data = json.load(fh)
        self.coco = COCO()
        self.coco.dataset = data
        self.coco.createIndex()
        cats = sorted(data.get("categories", []), key=lambda c: c["id"])
        names = [c["name"] for c in cats]
        self.classes = tuple(classes) if classes is not None else tuple(names)
        missing = [c for c in self.classes if c not in names]
        if missing:
            raise ValueError(f"{ann}: classes {missing} are not among its categories {names}")
        self.cat_to_label = {
            c["id"]: self.classes.index(c["name"]) for c in cats if c["name"] in self.classes
        }
        self.image_ids = sorted(self.coco.imgs)
        self.augment_cfg = augment_cfg
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.image_ids)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Image (BGR uint8), masks (uint8 ``[G, H, W]``) and labels (int64 ``[G]``)."""
        info = self.coco.imgs[self.image_ids[index]]
        path = self.image_dir / info["file_name"]
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"{path}: cannot read the image")
        h, w = image.shape[:2]
        masks: list[np.ndarray] = []
        labels: list[int] = []
        for a in self.coco.imgToAnns.get(info["id"], []):
            if a.get("iscrowd", 0) or a["category_id"] not in self.cat_to_label:
                continue
            masks.append(_ann_to_mask(a["segmentation"], h, w))
            labels.append(self.cat_to_label[a["category_id"]])
        m = np.stack(masks) if masks else np.zeros((0, h, w), dtype=np.uint8)
        return image, m, np.asarray(labels, dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image, masks, labels = self.load(index)
        image, masks, labels, boxes = augment(image, masks, labels, self.augment_cfg, rng)
        return {"image": image, "masks": masks, "labels": labels, "boxes": boxes}


def _ann_to_mask(seg: Any, h: int, w: int) -> np.ndarray:
    if isinstance(seg, list):
        rles = mask_utils.frPyObjects(seg, h, w)
        rle = mask_utils.merge(rles)
    elif isinstance(seg.get("counts"), list):
        rle = mask_utils.frPyObjects(seg, h, w)
    else:
        rle = seg
    return mask_utils.decode(rle).astype(np.uint8)


@dataclass(frozen=True)
class Normalize:
    """mmdet ``img_norm_cfg``: mean/std applied after the optional BGR->RGB swap."""

    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    to_rgb: bool = True


def collate(samples: list[dict[str, Any]], norm: Normalize = Normalize()) -> TrainBatch:
    """Normalise and pad (bottom/right, to a multiple of 32) a list of augmented samples."""
    pad_h = -(-max(s["image"].shape[0] for s in samples) // 32) * 32
    pad_w = -(-max(s["image"].shape[1] for s in samples) // 32) * 32
    images = torch.zeros((len(samples), 3, pad_h, pad_w), dtype=torch.float32)
    mean = torch.tensor(norm.mean).view(3, 1, 1)
    std = torch.tensor(norm.std).view(3, 1, 1)
    sizes = []
    for i, s in enumerate(samples):
        t = torch.from_numpy(s["image"]).permute(2, 0, 1).float()
        if norm.to_rgb:
            t = t.flip(0)
        h, w = t.shape[1:]
        images[i, :, :h, :w] = (t - mean) / std
        sizes.append((h, w))
    return TrainBatch(
        images=images,
        image_sizes=torch.tensor(sizes, dtype=torch.long),
        boxes=[torch.from_numpy(s["boxes"]).float() for s in samples],
        labels=[torch.from_numpy(s["labels"]).long() for s in samples],
        masks=[torch.from_numpy(s["masks"]) for s in samples],
    )
