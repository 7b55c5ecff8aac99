"""COCO instance-segmentation file checks with messages that name the file, the id and the
problem: the things that make training crash or silently learn garbage.

Errors: malformed top level, duplicate ids, annotations pointing at unknown images or
categories, missing image files (when an image folder is given), image sizes that differ from
the file, boxes that are malformed, empty or outside the image, empty/degenerate
segmentations (polygons with fewer than 3 points, odd coordinate counts, RLEs of another size,
no pixel), ``area`` far from the segmentation's pixel count, ``iscrowd`` not 0/1.
Warnings: duplicate file names, boxes that do not enclose their mask, images without
annotations are fine (negatives) and not reported.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

__all__ = ["Issue", "validate_coco"]

#: |area - pixel count| allowed: polygon areas (shoelace) and their rasterisation differ by up
#: to about half the perimeter; 10 % + 2 px accepts that and still catches swapped/stale areas
AREA_REL_TOL = 0.10
AREA_ABS_TOL = 2.0
#: boxes may exceed the image by this much (px): float rounding in exporters
BOX_TOL = 1.0


@dataclass(frozen=True)
class Issue:
    """One finding: ``level`` is ``"error"`` or ``"warning"``; ``where`` e.g.
    ``"annotation 12 (image 3 'a.png')"``."""

    level: str
    where: str
    message: str

    def format(self, file: str) -> str:
        return f"{file}: {self.level}: {self.where}: {self.message}"


def _segmentation_rle(seg: Any, h: int, w: int) -> tuple[dict[str, Any] | None, str | None]:
    """(RLE, None) or (None, what is wrong)."""
    if isinstance(seg, list):
        if not seg:
            return None, "empty segmentation (no polygon)"
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or not all(
                isinstance(v, (int, float)) and np.isfinite(v) for v in poly
            ):
                return None, f"polygon {k} is not a list of numbers"
            if len(poly) % 2:
                return None, f"polygon {k} has an odd number of coordinates ({len(poly)})"
            if len(poly) < 6:
                return None, f"polygon {k} has {len(poly) // 2} points; needs at least 3"
        return mask_utils.merge(mask_utils.frPyObjects(seg, h, w)), None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2) or counts is None:
            return None, "RLE needs 'size' [h, w] and 'counts'"
        if list(size) != [h, w]:
            return None, f"RLE size {size} differs from the image's [{h}, {w}]"
        try:
            if isinstance(counts, list):
                return mask_utils.frPyObjects(seg, h, w), None
            return {
                "size": size,
                "counts": counts.encode() if isinstance(counts, str) else counts,
            }, None
        except (TypeError, ValueError) as exc:
            return None, f"unreadable RLE: {exc}"
    return None, f"segmentation of type {type(seg).__name__}; expected polygons or RLE"


def _image_size_on_disk(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.height, im.width
    except Exception:  # any decoder error: reported by the caller as unreadable
        return None


def validate_coco(
    coco: dict[str, Any] | str | os.PathLike[str],
    images_dir: str | os.PathLike[str] | None = None,
) -> list[Issue]:
    """Check a COCO instance-segmentation dataset.

    Args:
        coco: the parsed dict, or a path to the JSON file.
        images_dir: when given, every ``file_name`` must exist under it with the recorded size.
    Returns:
        the issues found, errors and warnings, in file order (empty: valid).
    """
    if not isinstance(coco, dict):
        try:
            coco = json.loads(Path(coco).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return [Issue("error", "file", f"cannot read JSON: {exc}")]
    issues: list[Issue] = []

    def err(where: str, msg: str) -> None:
        issues.append(Issue("error", where, msg))

    def warn(where: str, msg: str) -> None:
        issues.append(Issue("warning", where, msg))

    if not isinstance(coco, dict):
        return [Issue("error", "file", "top level is not a JSON object")]
    for key in ("images", "annotations", "categories"):
        if not isinstance(coco.get(key), list):
            err("file", f"'{key}' is missing or not a list")
    if issues:
        return issues

    categories: dict[Any, str] = {}
    for c in coco["categories"]:
        cid = c.get("id") if isinstance(c, dict) else None
        if cid is None or not isinstance(c.get("name"), str):
            err(f"category {c!r}", "needs 'id' and 'name'")
        elif cid in categories:
            err(f"category {cid}", "duplicate category id")
        else:
            categories[cid] = c["name"]

    images: dict[Any, dict[str, Any]] = {}
    names = Counter()
    for im in coco["images"]:
        iid = im.get("id") if isinstance(im, dict) else None
        if iid is None:
            err(f"image {im!r:.60}", "no 'id'")
            continue
        where = f"image {iid} ({im.get('file_name')!r})"
        if iid in images:
            err(where, "duplicate image id")
            continue
        w, h = im.get("width"), im.get("height")
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            err(where, f"width/height must be positive integers, got {w!r} x {h!r}")
            continue
        fn = im.get("file_name")
        if not isinstance(fn, str) or not fn:
            err(where, "no 'file_name'")
            continue
        names[fn] += 1
        if images_dir is not None:
            path = Path(images_dir) / fn
            if not path.is_file():
                err(where, f"missing image file {path}")
            else:
                size = _image_size_on_disk(path)
                if size is None:
                    err(where, f"{path} is not a readable image")
                elif size != (h, w):
                    err(where, f"recorded size {w}x{h} but {path} is {size[1]}x{size[0]}")
        images[iid] = im
    for fn, n in names.items():
        if n > 1:
            warn(f"file_name {fn!r}", f"listed by {n} images")

    seen_ann: set[Any] = set()
    for a in coco["annotations"]:
        aid = a.get("id") if isinstance(a, dict) else None
        if aid is None:
            err(f"annotation {a!r:.60}", "no 'id'")
            continue
        im = images.get(a.get("image_id"))
        where = f"annotation {aid}" + (f" (image {im['id']} {im['file_name']!r})" if im else "")
        if aid in seen_ann:
            err(where, "duplicate annotation id")
            continue
        seen_ann.add(aid)
        if im is None:
            err(where, f"image_id {a.get('image_id')!r} is not in 'images'")
            continue
        if a.get("category_id") not in categories:
            err(where, f"unknown category_id {a.get('category_id')!r} "
                f"(known: {sorted(categories, key=str)})")  # fmt: skip
        if a.get("iscrowd", 0) not in (0, 1):
            err(where, f"iscrowd must be 0 or 1, got {a.get('iscrowd')!r}")
        h, w = im["height"], im["width"]
        box = a.get("bbox")
        box_ok = (
            isinstance(box, list)
            and len(box) == 4
            and all(isinstance(v, (int, float)) and np.isfinite(v) for v in box)
        )
        if not box_ok:
            err(where, f"bbox must be [x, y, width, height] numbers, got {box!r}")
        else:
            x, y, bw, bh = box
            if bw <= 0 or bh <= 0:
                err(where, f"empty bbox {box} (width and height must be > 0)")
            elif x < -BOX_TOL or y < -BOX_TOL or x + bw > w + BOX_TOL or y + bh > h + BOX_TOL:
                err(where, f"bbox {box} out of the {w}x{h} image")
        if "segmentation" not in a:
            err(where, "no 'segmentation'")
            continue
        rle, problem = _segmentation_rle(a["segmentation"], h, w)
        if rle is None:
            err(where, problem or "bad segmentation")
            continue
        pixels = float(mask_utils.area(rle))
        if pixels == 0:
            err(where, "degenerate segmentation: it covers no pixel")
            continue
        area = a.get("area")
        if not isinstance(area, (int, float)):
            err(where, f"'area' must be a number, got {area!r}")
        elif abs(area - pixels) > AREA_ABS_TOL + AREA_REL_TOL * pixels:
            err(where, f"area mismatch: 'area' is {area} but the segmentation covers "
                f"{pixels:.0f} pixels")  # fmt: skip
        if box_ok and box[2] > 0 and box[3] > 0:
            mx, my, mw, mh = (float(v) for v in mask_utils.toBbox(rle))
            x, y, bw, bh = box
            tol = BOX_TOL + 1.0
            if mx < x - tol or my < y - tol or mx + mw > x + bw + tol or my + mh > y + bh + tol:
                warn(where, f"bbox {box} does not enclose the mask "
                     f"(mask box [{mx:g}, {my:g}, {mw:g}, {mh:g}])")  # fmt: skip
    return issues
