"""Exports of a reviewed folder: the same writers as ``cendetect run``, fed the reviewed state.

Into the output folder ``OUT``:

- **green** PNGs: ``OUT/<relative path>.png`` (``cendetect run``'s tree layout and clash rule,
  :func:`~cendetect.flow.images.write_outputs`); for an image nobody edited, byte for byte
  what ``cendetect run --confidence <threshold>`` writes with the same model;
- **deepcreampy**: ``OUT/deepcreampy/`` in DeepCreamPy's layout
  (:func:`~cendetect.io.deepcreampy.write_deepcreampy`, the writer of ``--layout deepcreampy``);
- **masks**: ``OUT/<relative path>-mask.png`` label images (``--output-mask-image``'s writer);
- **coco**: a training dataset ``OUT/reviewed/``: ``annotations/instances_train.json`` (every
  reviewed image's visible regions, RLE masks) and ``train/<relative path>`` (hard links to
  the inputs where the file system allows, else copies), which ``cendetect train --dataset
  OUT/reviewed`` reads as it is.

Only images whose detection is done are exported; each file is written atomically.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cendetect.flow.images import Job, OutputOptions, write_outputs
from cendetect.io.coco import CocoWriter
from cendetect.io.decode import read_image_file
from cendetect.io.deepcreampy import CLASSES as DCP_CLASSES
from cendetect.io.deepcreampy import flat_names
from cendetect.io.discovery import output_paths
from cendetect.studio.state import to_detections

if TYPE_CHECKING:
    from cendetect.studio.session import Studio

__all__ = ["ExportOptions", "export", "DATASET_DIR", "DEEPCREAMPY_DIR"]

DATASET_DIR = "reviewed"
DEEPCREAMPY_DIR = "deepcreampy"


@dataclass(frozen=True)
class ExportOptions:
    """What to export (see the module docstring); ``confirmed_only``: only images a person
    confirmed."""

    green: bool = True
    deepcreampy: bool = False
    masks: bool = False
    coco: bool = False
    confirmed_only: bool = False


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def export(studio: Studio, opts: ExportOptions) -> dict[str, Any]:
    """Write the chosen exports of every reviewed image; returns counts and where they went.

    A file that cannot be read or written is reported in ``failed`` and the others go on.
    """
    assert studio.root is not None and studio.output is not None
    root, out = studio.root, studio.output
    t0 = time.perf_counter()
    recs = studio.records
    names = [
        n for n in studio.names
        if recs[n].status == "done" and (recs[n].confirmed or not opts.confirmed_only)
    ]  # fmt: skip
    paths = {n: root / n for n in names}
    images = output_paths(list(paths.values()), root, out) if names else {}
    flat = flat_names(list(paths.values()), root) if opts.deepcreampy and names else {}
    dcp_classes = tuple(c for c in DCP_CLASSES if c in studio.class_names)
    green_opts = OutputOptions(output_mask_image=opts.masks, confidence=studio.threshold)
    coco = CocoWriter(studio.class_names) if opts.coco else None
    failed: list[dict[str, str]] = []
    written = 0
    for n in names:
        rec = studio.records[n]
        src = paths[n]
        try:
            image = read_image_file(src, studio.max_pixels)
            with rec.lock:
                det = to_detections(rec, studio.class_names, studio.threshold)
            job = Job(source=src, name=n, image=images[src])
            if opts.green:
                write_outputs(job, image.copy(), det, green_opts, out)
            elif opts.masks:
                from cendetect.io.mask_image import mask_image_name, write_mask_image

                write_mask_image(job.image.with_name(mask_image_name(job.image.name)), det)
            if opts.deepcreampy:
                dcp = OutputOptions(layout="deepcreampy", layout_classes=dcp_classes)
                write_outputs(Job(src, n, images[src], flat=flat[src]), image, det, dcp,
                              out / DEEPCREAMPY_DIR)  # fmt: skip
            if coco is not None:
                coco.add(n, det)
                _link_or_copy(src, out / DATASET_DIR / "train" / n)
            written += 1
        except Exception as exc:  # noqa: BLE001 - reported; the export goes on
            failed.append({"name": n, "reason": f"{type(exc).__name__}: {exc}"})
    if coco is not None:
        ann = out / DATASET_DIR / "annotations" / "instances_train.json"
        ann.parent.mkdir(parents=True, exist_ok=True)
        coco.write(ann)
    return {
        "images": written, "failed": failed, "output": str(out),
        "not_ready": sum(1 for n in studio.names if studio.records[n].status == "pending"),
        "seconds": round(time.perf_counter() - t0, 3),
    }  # fmt: skip
