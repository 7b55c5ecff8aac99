"""The combined mask image of mmdet_predict's ``--output_mask_image``: one indexed PNG per
image (``{stem}-mask.png``), each pixel the 1-based class index of the detection that covers it
(0: none). Where detections overlap, the earlier one (higher score) keeps the pixel, as theirs
combines them. Written with Pillow in palette mode ('P'), as theirs saves it; the palette (index
0 black, then distinct colours) only makes it viewable: the pixel values are the class indices.
"""

from __future__ import annotations

import io
import os

import numpy as np
from PIL import Image

from cendetect.engine.postprocess import Detections
from cendetect.io.atomic import write_bytes_atomic

__all__ = ["MASK_IMAGE_SUFFIX", "label_image", "mask_image_name", "write_mask_image"]

MASK_IMAGE_SUFFIX = "-mask.png"


def mask_image_name(image_name: str) -> str:
    """``photo.jpg`` -> ``photo-mask.png``."""
    return os.path.splitext(os.path.basename(image_name))[0] + MASK_IMAGE_SUFFIX


def label_image(det: Detections) -> np.ndarray:
    """``uint8 [H, W]``: label + 1 of the first (highest-scoring) detection over each pixel.

    Raises:
        ValueError: more than 255 classes (an 8-bit palette image cannot hold them).
    """
    if len(det.class_names) > 255:
        raise ValueError(f"{len(det.class_names)} classes do not fit an 8-bit mask image")
    out = np.zeros(det.image_size, dtype=np.uint8)
    masks = det.instance_masks
    for i in range(len(det)):
        x0, y0, x1, y1 = (int(v) for v in masks.windows[i])
        region = out[y0:y1, x0:x1]
        free = masks.crop(i) & (region == 0)
        region[free] = int(det.labels[i]) + 1
    return out


def _palette() -> list[int]:
    import colorsys

    colours = [(0, 0, 0)]
    for k in range(255):
        r, g, b = colorsys.hsv_to_rgb(((k * 0.618034) + 1 / 3) % 1.0, 1.0, 1.0)  # 1: green
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return [c for rgb in colours for c in rgb]


def write_mask_image(path: str | os.PathLike[str], det: Detections) -> None:
    """Write :func:`label_image` as an indexed PNG, atomically."""
    labels = label_image(det)
    image = Image.frombytes("P", (labels.shape[1], labels.shape[0]), labels.tobytes())
    image.putpalette(_palette())
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    write_bytes_atomic(path, buf.getvalue())
