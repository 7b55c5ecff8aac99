"""Converters to COCO instance segmentation (categories from :mod:`cendetect.data.coco`).

* :func:`via_to_coco`: VGG Image Annotator (VIA 2) JSON, as in detectron2's balloon tutorial
  (``via_region_data.json``): a dict of entries keyed by ``filename + size``, each with
  ``filename`` and ``regions`` (a dict keyed "0", "1"... or a list); every region has
  ``shape_attributes`` (``polygon`` with ``all_points_x/y``, ``rect`` ``x, y, width, height``,
  ``ellipse`` ``cx, cy, rx, ry[, theta]`` (radians), ``circle`` ``cx, cy, r``) and
  ``region_attributes`` holding the class under a configurable key. A VIA project file (with
  ``_via_img_metadata``) works too. Shapes are written as polygons (ellipses and circles as
  64-gons); VIA coordinates are taken as continuous pixels, as COCO polygons are.
* :func:`masks_to_coco`: CenDetect's mask/image PNG pairs: a black mask image per photo with
  ``[0, 255, 0]`` for bar and ``[0, 255, 255]`` for mosaic (RGB order; pass ``order="bgr"`` for
  masks written by ``cv2.imwrite`` with those values as BGR), one 8-connected component per
  instance; components smaller than ``min_area`` pixels are dropped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cendetect.data.coco import CATEGORY_IDS, CocoBuilder

__all__ = ["ConvertError", "MASK_COLOURS_RGB", "masks_to_coco", "via_to_coco"]

#: mask colours of CenDetect's PNG annotations, RGB
MASK_COLOURS_RGB: dict[str, tuple[int, int, int]] = {"bar": (0, 255, 0), "mosaic": (0, 255, 255)}
#: a mask pixel belongs to a class when every channel is within this of the class colour
#: (anti-aliased or re-saved masks)
COLOUR_TOL = 60
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class ConvertError(ValueError):
    """An input that cannot be converted; the message names the file and the entry."""


def _image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except Exception as exc:  # any decoder error becomes one message
        raise ConvertError(f"{path}: not a readable image ({exc})") from exc


def _ellipse_polygon(cx: float, cy: float, rx: float, ry: float, theta: float) -> list[float]:
    c, s = math.cos(theta), math.sin(theta)
    pts: list[float] = []
    for k in range(64):
        t = 2 * math.pi * k / 64
        x, y = rx * math.cos(t), ry * math.sin(t)
        pts += [cx + c * x - s * y, cy + s * x + c * y]
    return pts


def _region_polygon(shape: Mapping[str, Any], where: str) -> list[float]:
    name = shape.get("name")
    try:
        if name in ("polygon", "polyline"):
            xs, ys = shape["all_points_x"], shape["all_points_y"]
            if len(xs) != len(ys):
                raise ConvertError(f"{where}: {len(xs)} x but {len(ys)} y coordinates")
            return [float(v) for xy in zip(xs, ys) for v in xy]
        if name == "rect":
            x, y, w, h = (float(shape[k]) for k in ("x", "y", "width", "height"))
            return [x, y, x + w, y, x + w, y + h, x, y + h]
        if name == "ellipse":
            return _ellipse_polygon(
                float(shape["cx"]), float(shape["cy"]), float(shape["rx"]), float(shape["ry"]),
                float(shape.get("theta", 0.0)),
            )  # fmt: skip
        if name == "circle":
            r = float(shape["r"])
            return _ellipse_polygon(float(shape["cx"]), float(shape["cy"]), r, r, 0.0)
    except KeyError as exc:
        raise ConvertError(f"{where}: {name} shape without {exc.args[0]!r}") from exc
    raise ConvertError(
        f"{where}: unsupported shape {name!r} (polygon, polyline, rect, ellipse, circle)"
    )


def _region_class(
    attrs: Mapping[str, Any],
    key: str,
    class_map: Mapping[str, str],
    default: str | None,
    where: str,
) -> str:
    value = attrs.get(key) if isinstance(attrs, Mapping) else None
    if isinstance(value, Mapping):  # VIA checkbox attribute: {"bar": true}
        chosen = [k for k, v in value.items() if v]
        value = chosen[0] if len(chosen) == 1 else None
    if value in (None, ""):
        if default is None:
            raise ConvertError(
                f"{where}: no class under region_attributes[{key!r}] (attributes: "
                f"{dict(attrs) if isinstance(attrs, Mapping) else attrs!r}); pass --class-key or "
                "--default-class"
            )
        value = default
    name = class_map.get(str(value), str(value))
    if name not in CATEGORY_IDS:
        raise ConvertError(
            f"{where}: class {value!r} is neither bar nor mosaic; map it with --class-map "
            f"{value}=bar"
        )
    return name


def via_to_coco(
    via_json: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    class_key: str = "class",
    class_map: Mapping[str, str] | None = None,
    default_class: str | None = None,
) -> dict[str, Any]:
    """Convert a VIA 2 JSON file to a COCO dict.

    Args:
        via_json: the VIA file.
        images_dir: folder with the images (their sizes come from the files).
        class_key: the ``region_attributes`` key holding the class name.
        class_map: renames (``{"balloon": "mosaic"}``) applied before the name must be
            ``bar`` or ``mosaic``.
        default_class: class of regions without the key (else they are an error).
    Raises:
        ConvertError: unreadable file, missing image, bad region; the message names the entry.
    """
    src = Path(via_json)
    try:
        data = json.loads(src.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConvertError(f"{src}: cannot read JSON: {exc}") from exc
    if isinstance(data, dict) and "_via_img_metadata" in data:
        data = data["_via_img_metadata"]
    if not isinstance(data, dict):
        raise ConvertError(f"{src}: expected a JSON object of VIA entries")
    builder = CocoBuilder()
    cmap = dict(class_map or {})
    for key, entry in data.items():
        if not isinstance(entry, dict) or "filename" not in entry:
            raise ConvertError(f"{src}: entry {key!r} has no 'filename'")
        img_path = Path(images_dir) / entry["filename"]
        if not img_path.is_file():
            raise ConvertError(f"{src}: entry {key!r}: image {img_path} not found")
        h, w = _image_size(img_path)
        image_id = builder.add_image(entry["filename"], w, h)
        regions = entry.get("regions") or []
        items = list(regions.items()) if isinstance(regions, dict) else list(enumerate(regions))
        for rkey, region in items:
            where = f"{src}: {entry['filename']} region {rkey}"
            poly = _region_polygon(region.get("shape_attributes", {}), where)
            if len(poly) < 6:
                raise ConvertError(f"{where}: a polygon needs at least 3 points")
            name = _region_class(
                region.get("region_attributes", {}), class_key, cmap, default_class, where
            )
            builder.add_polygon(image_id, CATEGORY_IDS[name], [poly], h, w)
    return builder.to_dict({"description": f"converted from VIA {src.name}"})


def _class_masks(mask_bgr: np.ndarray, order: str) -> dict[str, np.ndarray]:
    out = {}
    for name, rgb in MASK_COLOURS_RGB.items():
        colour = rgb[::-1] if order == "rgb" else rgb  # the array is BGR (OpenCV)
        diff = np.abs(mask_bgr.astype(np.int16) - np.asarray(colour, np.int16)).max(axis=2)
        out[name] = diff <= COLOUR_TOL
    return out


def masks_to_coco(
    masks_dir: str | os.PathLike[str],
    images_dir: str | os.PathLike[str],
    min_area: int = 8,
    order: str = "rgb",
) -> dict[str, Any]:
    """Convert mask/image pairs to a COCO dict with RLE segmentations.

    Every mask file (``masks_dir/<stem>.png``) is paired with the image of the same stem (any of
    :data:`IMAGE_EXTS`, also in sub-folders mirrored from ``masks_dir``); images without a mask
    file are not listed.

    Raises:
        ConvertError: a mask without its image, or sizes that differ.
    """
    if order not in ("rgb", "bgr"):
        raise ConvertError(f"order {order!r}: 'rgb' or 'bgr'")
    masks_dir, images_dir = Path(masks_dir), Path(images_dir)
    mask_files = sorted(p for p in masks_dir.rglob("*.png") if p.is_file())
    if not mask_files:
        raise ConvertError(f"{masks_dir}: no .png mask files")
    builder = CocoBuilder()
    for mf in mask_files:
        rel = mf.relative_to(masks_dir).with_suffix("")
        cands = [images_dir / rel.with_suffix(e) for e in IMAGE_EXTS]
        img_path = next((c for c in cands if c.is_file()), None)
        if img_path is None:
            raise ConvertError(f"{mf}: no image {rel}.<png|jpg|...> under {images_dir}")
        h, w = _image_size(img_path)
        mask = cv2.imdecode(np.fromfile(mf, np.uint8), cv2.IMREAD_COLOR)
        if mask is None:
            raise ConvertError(f"{mf}: not a readable PNG")
        if mask.shape[:2] != (h, w):
            raise ConvertError(
                f"{mf}: mask is {mask.shape[1]}x{mask.shape[0]} but {img_path} is {w}x{h}"
            )
        image_id = builder.add_image(img_path.relative_to(images_dir).as_posix(), w, h)
        for name, cm in _class_masks(mask, order).items():
            n, labels, stats, _ = cv2.connectedComponentsWithStats(cm.astype(np.uint8), 8)
            for k in range(1, n):
                if stats[k, cv2.CC_STAT_AREA] < min_area:
                    continue
                builder.add_mask(image_id, CATEGORY_IDS[name], labels == k)
    return builder.to_dict({"description": f"converted from masks in {masks_dir.name}"})
