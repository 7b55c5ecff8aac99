"""A tiny COCO dataset made on the fly: dark bars and pixelated patches on noise images."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

CLASSES = ("bar", "mosaic")


def make_dataset(root: Path, n_train: int = 6, n_val: int = 2, size: tuple[int, int] = (96, 128)):
    """Write ``root/{train,val}/*.png`` and ``root/annotations/instances_{split}.json``.

    Each image (h, w = ``size``) has one black bar (category 1) and one pixelated square
    (category 2) at seeded random places, annotated with polygons.
    """
    rng = np.random.default_rng(0)
    h, w = size
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(n):
            img = rng.integers(60, 200, (h, w, 3), dtype=np.uint8)
            img = cv2.GaussianBlur(img, (5, 5), 0)
            bw, bh = int(rng.integers(30, 60)), int(rng.integers(8, 16))
            bx, by = int(rng.integers(0, w // 2 - bw // 2)), int(rng.integers(0, h - bh))
            img[by : by + bh, bx : bx + bw] = 0
            ms = int(rng.integers(24, 40))
            mx, my = int(rng.integers(w // 2, w - ms)), int(rng.integers(0, h - ms))
            patch = img[my : my + ms, mx : mx + ms]
            small = cv2.resize(patch, (ms // 8, ms // 8), interpolation=cv2.INTER_AREA)
            img[my : my + ms, mx : mx + ms] = cv2.resize(
                small, (ms, ms), interpolation=cv2.INTER_NEAREST
            )
            name = f"{i:03d}.png"
            cv2.imwrite(str(root / split / name), img)
            images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
            for cat, (x, y, ww, hh) in ((1, (bx, by, bw, bh)), (2, (mx, my, ms, ms))):
                poly = [x, y, x + ww, y, x + ww, y + hh, x, y + hh]
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": cat,
                        "segmentation": [[float(v) for v in poly]],
                        "bbox": [x, y, ww, hh],
                        "area": float(ww * hh),
                        "iscrowd": 0,
                    }
                )
        cats = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
        (root / "annotations").mkdir(exist_ok=True)
        with open(root / "annotations" / f"instances_{split}.json", "w") as fh:
            json.dump({"images": images, "annotations": anns, "categories": cats}, fh)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-train / 2-val image dataset of 96x128 images, classes ``bar`` and ``mosaic``."""
    return make_dataset(tmp_path_factory.mktemp("tiny_coco"))
