"""DeepCreamPy's folder layout (``cendetect run --layout deepcreampy``).

DeepCreamPy decensors one censor type per run and reads flat folders:

- bar mode: green-filled PNGs (``[0, 255, 0]`` regions) in ``decensor_input/``;
- mosaic mode: the same, plus the untouched original of each image, as PNG under the same
  file name, in ``decensor_input_original/``.

So a run writes, under the output folder, one tree per censor class::

    OUT/bar/decensor_input/NAME.png
    OUT/mosaic/decensor_input/NAME.png
    OUT/mosaic/decensor_input_original/NAME.png

Each green image is filled only with its own class's regions, and an image without a region of
a class is left out of that class's tree. ``NAME`` keeps the input's path relative to the input
folder, its folders joined by :data:`SEPARATOR` (``sub/dir/a.jpg`` -> ``sub__dir__a.png``), so
two ``a.png`` in different folders never collide. Where two inputs would still get one name
(``a__b.png`` beside ``a/b.png``), :func:`flat_names` raises before anything is written. The
original is the decoded image itself (EXIF orientation applied, as for the green image), saved
as PNG, so the two line up pixel for pixel.

A ledger (:data:`LEDGER`, one JSON line per finished input, in the output folder) records what
each input wrote, so a re-run skips finished inputs, including those that wrote nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from cendetect.engine.postprocess import Detections
from cendetect.io.atomic import write_image_atomic
from cendetect.io.discovery import output_paths

__all__ = [
    "CLASSES",
    "LEDGER",
    "SEPARATOR",
    "LayoutError",
    "Ledger",
    "flat_names",
    "write_deepcreampy",
]

#: the censor classes DeepCreamPy has a mode for
CLASSES = ("bar", "mosaic")
#: joins an input's sub-folders into one flat file name
SEPARATOR = "__"
#: the record of finished inputs, in the output folder
LEDGER = ".cendetect-deepcreampy.jsonl"


class LayoutError(ValueError):
    """Two inputs would be written under one name."""


def flat_names(inputs: Sequence[Path], input_root: Path) -> dict[Path, str]:
    """Each input's flat PNG name (see the module docstring).

    Raises:
        LayoutError: naming both inputs, when two get the same name.
    """
    virtual = Path("/__out__")
    mapping = output_paths(list(inputs), input_root, virtual)
    names: dict[Path, str] = {}
    owner: dict[str, Path] = {}
    for src in inputs:
        rel = mapping[src].relative_to(virtual)
        name = SEPARATOR.join(rel.parts)
        if name in owner:
            raise LayoutError(
                f"{owner[name]} and {src} would both be written as {name} in the deepcreampy "
                f"layout (sub-folders are joined by {SEPARATOR!r}); rename one of them"
            )
        owner[name] = src
        names[src] = name
    return names


def tree(output_root: Path, cls: str) -> Path:
    """``OUT/<cls>/decensor_input``."""
    return output_root / cls / "decensor_input"


def originals(output_root: Path) -> Path:
    """``OUT/mosaic/decensor_input_original``."""
    return output_root / "mosaic" / "decensor_input_original"


def write_deepcreampy(
    output_root: Path,
    name: str,
    image: np.ndarray,
    det: Detections,
    classes: Iterable[str],
    dilate: int = 0,
) -> dict[str, list[str]]:
    """Write one input's files: per class in ``classes``, its regions filled green, if it has any
    (and for mosaics the original beside it). Each file is written atomically.

    Args:
        output_root: the output folder.
        name: the input's flat name (:func:`flat_names`).
        image: the decoded BGR uint8 ``[H, W, 3]`` input (not modified).
        det: its detections, already filtered by confidence.
        classes: the trees to write (of :data:`CLASSES`).
        dilate: grow each mask by this many pixels first.
    Returns:
        ``{class: [written paths relative to output_root]}`` for the classes with a region.
    """
    written: dict[str, list[str]] = {}
    for cls in classes:
        if cls not in det.class_names:
            continue
        label = det.class_names.index(cls)
        idx = np.flatnonzero(det.labels == label)
        if idx.size == 0:
            continue
        green = det.take(idx).composite(image.copy(), mode="fill", dilate=dilate, inplace=True)
        paths = [tree(output_root, cls) / name]
        write_image_atomic(paths[0], green)
        if cls == "mosaic":
            paths.append(originals(output_root) / name)
            write_image_atomic(paths[1], image)
        written[cls] = [p.relative_to(output_root).as_posix() for p in paths]
    return written


class Ledger:
    """The finished inputs of earlier runs into one output folder (:data:`LEDGER`)."""

    def __init__(self, output_root: Path) -> None:
        self.path = output_root / LEDGER
        self.done: dict[str, dict[str, list[str]]] = {}
        if self.path.is_file():
            with open(self.path, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        rec = json.loads(line)
                        self.done[str(rec["name"])] = dict(rec["written"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut short by a crash: that input is redone

    def finished(self, name: str, output_root: Path) -> bool:
        """Whether ``name`` was finished and every file it wrote is still there."""
        rec = self.done.get(name)
        if rec is None:
            return False
        return all((output_root / p).is_file() for paths in rec.values() for p in paths)

    def record(self, name: str, written: dict[str, list[str]]) -> None:
        """Append one finished input (after its files are written), flushed to disk."""
        self.done[name] = written
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"name": name, "written": written}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
