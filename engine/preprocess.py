"""Test-time pre-processing with mmdetection 2.28 semantics (also what 3.x does), or with
detectron2's or maskrcnn-benchmark's own resize for checkpoints of those families.

For each BGR uint8 image: keep-ratio resize to fit ``img_scale``, BGR->RGB if the config says
so, ``(x - mean) / std`` in float32, then zero padding at the bottom/right to a multiple of
``size_divisor`` (padding after normalisation, so the pad value is 0 in normalised space). A
batch is padded to its largest image. The resize is each family's own (``cfg.resize``):

- ``mmcv``: mmcv's ``rescale_size`` (one factor, each side rounded half up), OpenCV bilinear;
- ``detectron2``: ``ResizeShortestEdge.get_output_shape`` (short side to ``MIN_SIZE_TEST``,
  then both sides scaled down if the long one passes ``MAX_SIZE_TEST``, each rounded half up
  at the end), PIL bilinear on the uint8 image (``ResizeTransform``);
- ``maskrcnn_benchmark``: its ``Resize.get_size`` (the short side lowered to
  ``round(max * short / long)`` when the long one would pass ``MAX_SIZE_TEST``, the long side
  *truncated*), PIL bilinear (torchvision's resize of a PIL image). Its demo then divides by 255
  (``ToTensor``) and multiplies by 255 (``to_bgr255``) in float32, which gives every grey level
  back exactly (tested), so nothing else differs before the mean is subtracted.

PIL is the exact path for those two: both families call it. Pillow's bilinear filters over a
wider support when it shrinks, so it is not OpenCV's ``INTER_LINEAR``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from PIL import Image
from torch import Tensor

from cendetect.config import PreprocessConfig


@dataclass(frozen=True)
class Batch:
    """Network input for B images.

    Attributes:
        images: ``Tensor[B, 3, H, W]`` float32, normalised and padded.
        image_sizes: ``Tensor[B, 2]`` int64 (h, w) of each resized image inside the padding.
        scale_factors: ``Tensor[B, 4]`` float32 (w_scale, h_scale, w_scale, h_scale), resized
            size over original size, exactly as mmdet's ``Resize`` computes them.
        original_sizes: (h, w) of each original image.
    """

    images: Tensor
    image_sizes: Tensor
    scale_factors: Tensor
    original_sizes: tuple[tuple[int, int], ...]

    def to(self, device: torch.device | str) -> Batch:
        return Batch(
            self.images.to(device),
            self.image_sizes.to(device),
            self.scale_factors.to(device),
            self.original_sizes,
        )


def rescale_size(h: int, w: int, img_scale: tuple[int, int]) -> tuple[int, int]:
    """(new_h, new_w) of a keep-ratio resize into ``img_scale`` (mmcv ``rescale_size``).

    The scale is (long edge, short edge) in either order: the image is scaled by
    ``min(max(scale) / max(h, w), min(scale) / min(h, w))`` and each side rounded half up.
    """
    if h <= 0 or w <= 0:
        raise ValueError(f"image has an empty side: {h}x{w}")
    factor = min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))
    return int(h * factor + 0.5), int(w * factor + 0.5)


def detectron2_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w) as detectron2's ``ResizeShortestEdge.get_output_shape``."""
    if h <= 0 or w <= 0:
        raise ValueError(f"image has an empty side: {h}x{w}")
    size = short * 1.0
    scale = size / min(h, w)
    if h < w:
        newh, neww = size, scale * w
    else:
        newh, neww = scale * h, size
    if max(newh, neww) > max_size:
        scale = max_size * 1.0 / max(newh, neww)
        newh = newh * scale
        neww = neww * scale
    return int(newh + 0.5), int(neww + 0.5)


def maskrcnn_benchmark_size(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """(new_h, new_w) as maskrcnn-benchmark's ``Resize.get_size`` (the long side truncated)."""
    if h <= 0 or w <= 0:
        raise ValueError(f"image has an empty side: {h}x{w}")
    size = short
    lo, hi = float(min(w, h)), float(max(w, h))
    if hi / lo * size > max_size:
        size = int(round(max_size * lo / hi))  # Python's round: half to even, as theirs
    if (w <= h and w == size) or (h <= w and h == size):
        return h, w
    if w < h:
        return int(size * h / w), size
    return size, int(size * w / h)


def output_size(h: int, w: int, cfg: PreprocessConfig) -> tuple[int, int]:
    """(new_h, new_w) the pre-processing resizes an ``h x w`` image to."""
    if not cfg.keep_ratio:
        new_w, new_h = cfg.img_scale
        return new_h, new_w
    if cfg.resize == "detectron2":
        return detectron2_size(h, w, min(cfg.img_scale), max(cfg.img_scale))
    if cfg.resize == "maskrcnn_benchmark":
        return maskrcnn_benchmark_size(h, w, min(cfg.img_scale), max(cfg.img_scale))
    return rescale_size(h, w, cfg.img_scale)


def _pil_bilinear(image: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """PIL's bilinear resize of a uint8 ``[H, W, 3]`` array (channel order is irrelevant)."""
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def resize_image(image: np.ndarray, cfg: PreprocessConfig) -> tuple[np.ndarray, np.ndarray]:
    """Resize one BGR image; returns it and its float32 scale factor ``[w_s, h_s, w_s, h_s]``."""
    h, w = image.shape[:2]
    new_h, new_w = output_size(h, w, cfg)
    if cfg.resize != "mmcv":
        # both families call PIL whatever the size (an equal size is a copy there)
        image = _pil_bilinear(np.ascontiguousarray(image), new_h, new_w)
    elif (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    sf = np.array([new_w / w, new_h / h, new_w / w, new_h / h], dtype=np.float32)
    return image, sf


@functools.lru_cache(maxsize=16)
def _normalise_tables(
    mean: tuple[float, ...], std: tuple[float, ...], to_rgb: bool
) -> tuple[np.ndarray, ...]:
    """Three ``cv2.LUT`` tables ``[1, 256]`` float32: table ``k`` maps the 8-bit values of the
    image's (BGR) channel ``k`` to the network's normalised input.

    Rounding as mmdet's Normalize + mmcv's imnormalize (cv2.subtract, cv2.multiply) do it: mean
    and std are first rounded to float32 (Normalize stores them so), the mean is subtracted in
    float32, and the product with 1/std is formed in float64 and rounded once. Plain float32
    arithmetic differs in the last bit for ~40% of pixels, which deep random-weight networks
    (the R101 parity fixtures) amplify into one-pixel mask differences.
    """
    values = torch.arange(256, dtype=torch.float32).view(1, 256)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(3, 1)
    inv_std = 1.0 / torch.tensor(std, dtype=torch.float32).double().view(3, 1)
    table = ((values - mean_t).double() * inv_std).float()  # row c: the network's channel c
    if to_rgb:  # the network's channel c is the image's channel 2 - c
        table = table.flip(0)
    return tuple(np.ascontiguousarray(row.numpy()[None]) for row in table)


def normalise_arithmetic(resized: np.ndarray, cfg: PreprocessConfig) -> Tensor:
    """The reference of the table lookup: mmcv's ``imnormalize`` arithmetic on a resized BGR
    uint8 image, ``[3, h, w]`` float32 (tests/engine/test_preprocess.py holds the two equal;
    benchmarks/bench_preprocess.py times them)."""
    t = torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1).float()
    if cfg.to_rgb:
        t = t.flip(0)
    mean = torch.tensor(cfg.mean, dtype=torch.float32).view(3, 1, 1)
    inv_std = 1.0 / torch.tensor(cfg.std, dtype=torch.float32).double().view(3, 1, 1)
    return ((t - mean).double() * inv_std).float()


def preprocess(images: Sequence[np.ndarray], cfg: PreprocessConfig) -> Batch:
    """Resize, normalise, pad and stack BGR uint8 images (``[H, W, 3]``) into a :class:`Batch`."""
    if len(images) == 0:
        raise ValueError("preprocess needs at least one image")
    resized: list[np.ndarray] = []
    factors: list[np.ndarray] = []
    for img in images:
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(
                f"expected a BGR uint8 image of shape [H, W, 3], got {img.dtype} {img.shape}"
            )
        r, sf = resize_image(img, cfg)
        resized.append(r)
        factors.append(sf)
    d = cfg.size_divisor
    pad_h = max(r.shape[0] for r in resized)
    pad_w = max(r.shape[1] for r in resized)
    if d > 0:
        pad_h, pad_w = -(-pad_h // d) * d, -(-pad_w // d) * d
    out = torch.empty((len(resized), 3, pad_h, pad_w), dtype=torch.float32)
    planes = out.numpy()
    tables = _normalise_tables(tuple(cfg.mean), tuple(cfg.std), bool(cfg.to_rgb))
    for i, r in enumerate(resized):
        h, w = r.shape[:2]
        out[i, :, h:, :] = 0.0
        out[i, :, :h, w:] = 0.0
        # one table lookup per pixel and channel (an 8-bit image has 256 values per channel),
        # written straight into the padded batch: several times faster than the arithmetic on
        # the whole image, and the same bits
        for k, channel in enumerate(cv2.split(np.ascontiguousarray(r))):
            c = 2 - k if cfg.to_rgb else k
            cv2.LUT(channel, tables[k], dst=planes[i, c, :h, :w])
    return Batch(
        images=out,
        image_sizes=torch.tensor([r.shape[:2] for r in resized], dtype=torch.int64),
        scale_factors=torch.from_numpy(np.stack(factors)),
        original_sizes=tuple((int(i.shape[0]), int(i.shape[1])) for i in images),
    )
