"""COCO evaluation of a :class:`~cendetect.Detector` (or of a saved results file) with
pycocotools' ``COCOeval``: bbox and segm mAP / mAR @[.5:.95], AP50, AP75, by size, per class.

Detections are matched to ground-truth categories by class NAME (a model's class ``i`` named
``bar`` scores against the dataset category named ``bar``), so category ids may differ.
Boxes of results are COCO ``[x, y, w, h]`` in original-image pixels; masks are RLE at the
image's full size (:func:`cendetect.io.coco.detections_to_coco`).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = [
    "STAT_NAMES",
    "coco_evaluate",
    "format_table",
    "load_ground_truth",
    "predict_dataset",
    "read_results",
    "resolve_dataset",
]

#: names of COCOeval.stats[0..11] (maxDets 100 unless named)
STAT_NAMES = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip


def resolve_dataset(
    dataset: str | os.PathLike[str], images: str | os.PathLike[str] | None, split: str = "val"
) -> tuple[Path, Path]:
    """(annotation JSON, image folder) for ``--dataset`` / ``--images``.

    ``dataset`` is a COCO JSON file (images default to its folder) or a folder written by
    ``cendetect synth`` (``DIR/annotations/instances_{split}.json`` and ``DIR/{split}``).

    Raises:
        FileNotFoundError: neither exists; the message lists what was looked for.
    """
    d = Path(dataset)
    if d.is_dir():
        ann = d / "annotations" / f"instances_{split}.json"
        if not ann.is_file():
            raise FileNotFoundError(f"{d} is a folder without {ann.relative_to(d)}")
        img_dir = Path(images) if images is not None else d / split
    elif d.is_file():
        ann = d
        img_dir = Path(images) if images is not None else d.parent
    else:
        raise FileNotFoundError(f"{d}: no such file or folder")
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{img_dir}: image folder not found (pass --images)")
    return ann, img_dir


def load_ground_truth(path: str | os.PathLike[str]) -> COCO:
    """pycocotools' ``COCO`` of an annotation file, without its console chatter."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def predict_dataset(
    detector: Detector,
    gt: COCO,
    images_dir: str | os.PathLike[str],
    batch_size: int = 1,
    max_images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[dict[str, Any]], list[int]]:
    """Run ``detector`` on the images of ``gt`` and return COCO results.

    Returns:
        (results: dicts with ``image_id``, ``category_id`` (the dataset's id of the class name),
        ``bbox`` [x, y, w, h], ``score``, ``segmentation`` (RLE), ``area``; the ids of the
        images run, in order).
    Raises:
        ValueError: none of the model's class names is a dataset category.
    """
    from cendetect.io.coco import detections_to_coco

    by_name = {c["name"]: c["id"] for c in gt.loadCats(gt.getCatIds())}
    label_to_cat = {i: by_name.get(n) for i, n in enumerate(detector.class_names)}
    if not any(v is not None for v in label_to_cat.values()):
        raise ValueError(
            f"the model's classes {list(detector.class_names)} share no name with the dataset's "
            f"categories {sorted(by_name)}"
        )
    image_ids = sorted(gt.getImgIds())
    if max_images is not None:
        image_ids = image_ids[:max_images]
    paths = [Path(images_dir) / gt.imgs[i]["file_name"] for i in image_ids]
    results: list[dict[str, Any]] = []
    for k, (image_id, det) in enumerate(
        zip(image_ids, detector.stream(paths, batch_size=batch_size))
    ):
        h, w = det.image_size
        rec = gt.imgs[image_id]
        if (h, w) != (rec["height"], rec["width"]):
            raise ValueError(
                f"{paths[k]}: the file is {w}x{h} but the annotations say "
                f"{rec['width']}x{rec['height']}"
            )
        for r in detections_to_coco(det, image_id):
            cat = label_to_cat.get(r["category_id"] - 1)  # detections_to_coco: label + 1
            if cat is not None:
                results.append(r | {"category_id": cat})
        if progress is not None:
            progress(k + 1, len(image_ids))
    return results, image_ids


def _load_results(gt: COCO, results: Sequence[dict[str, Any]], iou_type: str) -> COCO:
    dts = copy.deepcopy(list(results))
    # one field per type, as detectron2 does: loadRes takes the box branch whenever a box is
    # present and would then give masks box areas (wrong small/medium/large ranges)
    for d in dts:
        d.pop("area", None)
        d.pop("segmentation" if iou_type == "bbox" else "bbox", None)
    with contextlib.redirect_stdout(io.StringIO()):
        return gt.loadRes(dts)


def coco_evaluate(
    gt: COCO,
    results: Sequence[dict[str, Any]],
    iou_types: Sequence[str] = ("bbox", "segm"),
    image_ids: Sequence[int] | None = None,
) -> dict[str, dict[str, Any]]:
    """COCOeval per ``iou_type``.

    Args:
        gt: ground truth.
        results: COCO results (``image_id``, ``category_id``, ``bbox`` and/or ``segmentation``,
            ``score``).
        image_ids: evaluate on these images only (default: all of ``gt``).
    Returns:
        ``{iou_type: {"AP": .., "AP50": .., ..., "AR100": .., "per_class": {name: AP}}}``;
        values as COCOeval gives them (-1 where a number is undefined, e.g. no ground truth of
        that size). With no results at all every defined number is 0.
    """
    out: dict[str, dict[str, Any]] = {}
    cats = gt.loadCats(gt.getCatIds())
    for iou_type in iou_types:
        if not results:
            stats = [0.0] * len(STAT_NAMES)
            per_class = {c["name"]: 0.0 for c in cats}
        else:
            ev = COCOeval(gt, _load_results(gt, results, iou_type), iou_type)
            if image_ids is not None:
                ev.params.imgIds = list(image_ids)
            with contextlib.redirect_stdout(io.StringIO()):
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            stats = [float(v) for v in ev.stats]
            # precision: [T iou thresholds, R recalls, K categories, A areas, M maxDets]
            prec = ev.eval["precision"]
            per_class = {}
            for k, cid in enumerate(ev.params.catIds):
                p = prec[:, :, k, 0, -1]
                per_class[gt.cats[cid]["name"]] = (
                    float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
                )
        out[iou_type] = dict(zip(STAT_NAMES, stats)) | {"per_class": per_class}
    return out


def format_table(metrics: dict[str, dict[str, Any]]) -> str:
    """A plain-text table: one row per IoU type, then per-class AP."""
    cols = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100")
    lines = [f"{'':6s}" + "".join(f"{c:>8s}" for c in cols)]
    for t, m in metrics.items():
        lines.append(f"{t:6s}" + "".join(f"{m[c]:8.3f}" for c in cols))
    names = sorted({n for m in metrics.values() for n in m["per_class"]})
    if names:
        lines.append("")
        lines.append(f"{'AP':6s}" + "".join(f"{n:>10s}" for n in names))
        for t, m in metrics.items():
            lines.append(f"{t:6s}" + "".join(f"{m['per_class'].get(n, -1):10.3f}" for n in names))
    return "\n".join(lines)


def read_results(path: str | os.PathLike[str], gt: COCO | None = None) -> list[dict[str, Any]]:
    """A COCO results list, or the ``annotations`` of a dataset-style file (such as
    ``cendetect run --save-json coco``, whose image ids are then mapped to ``gt``'s by
    ``file_name``); entries without ``score`` get 1.0.

    Raises:
        ValueError: not such a file, or a ``file_name`` that ``gt`` does not list.
    """
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    remap: dict[Any, int] | None = None
    if isinstance(data, dict):
        if gt is not None and isinstance(data.get("images"), list):
            by_name = {im["file_name"]: i for i, im in gt.imgs.items()}
            remap = {}
            for im in data["images"]:
                if im.get("file_name") not in by_name:
                    raise ValueError(f"{path}: image {im.get('file_name')!r} is not in the dataset")
                remap[im["id"]] = by_name[im["file_name"]]
        data = data.get("annotations")
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of results or a file with 'annotations'")
    out = []
    for d in data:
        d = d if "score" in d else d | {"score": 1.0}
        if remap is not None:
            d = d | {"image_id": remap[d["image_id"]]}
        out.append(d)
    return out
