"""Building COCO instance-segmentation files: categories, RLE encoding, image/annotation records.

Categories follow CenDetect: id 1 ``bar`` (model class 0), id 2 ``mosaic`` (model class 1).
Boxes are COCO ``[x, y, width, height]`` in pixels, the origin at the top-left corner of the
top-left pixel; a mask pixel ``(row, col)`` covers ``[col, col + 1) x [row, row + 1)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "CATEGORIES",
    "CATEGORY_IDS",
    "CocoBuilder",
    "encode_mask",
]

CATEGORIES: list[dict[str, Any]] = [
    {"id": 1, "name": "bar", "supercategory": "degradation"},
    {"id": 2, "name": "mosaic", "supercategory": "degradation"},
]
#: class name -> COCO category id
CATEGORY_IDS: dict[str, int] = {c["name"]: c["id"] for c in CATEGORIES}


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """Compressed RLE of a bool/uint8 mask ``[H, W]`` (``counts`` as str, JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


class CocoBuilder:
    """Accumulates images and annotations with consecutive ids starting at 1."""

    def __init__(self, categories: list[dict[str, Any]] | None = None) -> None:
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []
        self.categories = list(categories if categories is not None else CATEGORIES)

    def add_image(self, file_name: str, width: int, height: int, **extra: Any) -> int:
        """Register an image; returns its id."""
        image_id = len(self.images) + 1
        self.images.append(
            {"id": image_id, "file_name": file_name, "width": int(width), "height": int(height)}
            | extra
        )
        return image_id

    def add_mask(self, image_id: int, category_id: int, mask: np.ndarray, **extra: Any) -> int:
        """Add an instance given as a bool mask ``[H, W]``: RLE, bbox and area from pycocotools.

        Returns:
            the annotation id (0 when the mask is empty and nothing was added).
        """
        rle = encode_mask(mask)
        area = int(mask_utils.area(rle))
        if area == 0:
            return 0
        x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
        ann_id = len(self.annotations) + 1
        self.annotations.append(
            {
                "id": ann_id,
                "image_id": int(image_id),
                "category_id": int(category_id),
                "segmentation": rle,
                "area": area,
                "bbox": [x, y, w, h],
                "iscrowd": 0,
            }
            | extra
        )
        return ann_id

    def add_polygon(
        self,
        image_id: int,
        category_id: int,
        polygons: list[list[float]],
        height: int,
        width: int,
        **extra: Any,
    ) -> int:
        """Add an instance given as polygons (``[[x0, y0, x1, y1, ...], ...]``, pixels); area
        and bbox are those of the rasterised polygons (pycocotools' ``frPyObjects``).

        Returns:
            the annotation id (0 when the polygons cover no pixel).
        """
        rles = mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
        rle = mask_utils.merge(rles)
        area = int(mask_utils.area(rle))
        if area == 0:
            return 0
        xs = [v for p in polygons for v in p[0::2]]
        ys = [v for p in polygons for v in p[1::2]]
        bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        ann_id = len(self.annotations) + 1
        self.annotations.append(
            {
                "id": ann_id,
                "image_id": int(image_id),
                "category_id": int(category_id),
                "segmentation": [[float(v) for v in p] for p in polygons],
                "area": area,
                "bbox": [float(v) for v in bbox],
                "iscrowd": 0,
            }
            | extra
        )
        return ann_id

    def to_dict(self, info: dict[str, Any] | None = None) -> dict[str, Any]:
        """The COCO dict: ``info``, ``images``, ``annotations``, ``categories``."""
        return {
            "info": dict(info or {}),
            "images": self.images,
            "annotations": self.annotations,
            "categories": self.categories,
        }

    def write(self, path: Path, info: dict[str, Any] | None = None) -> None:
        """Write the COCO JSON (compact, keys in a fixed order, so equal inputs give equal
        bytes)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(info), separators=(",", ":")) + "\n")
