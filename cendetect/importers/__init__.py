"""Import Mask R-CNN checkpoints of detectron2 and maskrcnn-benchmark into our models.

:func:`load_any` reads a file as data and returns either an mmdetection / plain
:class:`~cendetect.checkpoint.Checkpoint` or an :class:`ImportedCheckpoint`: the weights under
our names, an mmdet model config with a ``box_convention`` entry
(:mod:`cendetect.models.conventions`) and the family's pre-processing. The family is recognised
from the key layout (``backbone.bottom_up.*``: detectron2; ``backbone.body.*``:
maskrcnn-benchmark) unless ``fmt`` names it. See docs/checkpoints.md for what was verified.
"""

from __future__ import annotations

import dataclasses
import os

from cendetect.checkpoint import Checkpoint, load_checkpoint
from cendetect.errors import CheckpointError
from cendetect.importers import detectron2, maskrcnn_benchmark
from cendetect.importers.common import COCO_CLASSES, ImportedCheckpoint
from cendetect.importers.pkl import is_plain_pickle, load_pickle
from cendetect.safe_pickle import file_sha256 as _sha256

__all__ = [
    "COCO_CLASSES",
    "FORMATS",
    "ImportedCheckpoint",
    "detect_format",
    "import_state_dict",
    "load_any",
]

#: values of ``checkpoint_format`` / ``--checkpoint-format``
FORMATS = ("auto", "mmdet", "detectron2", "maskrcnn_benchmark")
_CONVERTERS = {
    "detectron2": detectron2.convert,
    "maskrcnn_benchmark": maskrcnn_benchmark.convert,
}


def detect_format(keys: list[str]) -> str:
    """``'detectron2'``, ``'maskrcnn_benchmark'`` or ``'mmdet'`` from state-dict names."""
    if detectron2.looks_like(keys):
        return "detectron2"
    if maskrcnn_benchmark.looks_like(keys):
        return "maskrcnn_benchmark"
    return "mmdet"


def import_state_dict(
    state_dict: dict, path: str, fmt: str, stride_in_1x1: bool | None = None
) -> ImportedCheckpoint:
    """Convert a detectron2 / maskrcnn-benchmark state dict (``fmt`` names which)."""
    if fmt not in _CONVERTERS:
        raise ValueError(f"cannot import format {fmt!r}; one of {sorted(_CONVERTERS)}")
    return _CONVERTERS[fmt](state_dict, path, stride_in_1x1)


def load_any(
    path: str | os.PathLike[str], fmt: str = "auto", stride_in_1x1: bool | None = None
) -> Checkpoint | ImportedCheckpoint:
    """Read ``path`` (never executing anything in it) and convert it if it is not mmdet's.

    Args:
        path: ``.pth`` (torch.save) or detectron2 model-zoo ``.pkl`` (plain pickle).
        fmt: one of :data:`FORMATS`; ``'auto'`` decides from the key layout.
        stride_in_1x1: the training config's ``MODEL.RESNETS.STRIDE_IN_1X1`` (True: our
            ``style='caffe'``); None uses the model zoo's value (True for both families).

    Raises:
        CheckpointError: unreadable or refused file, a layout that contradicts ``fmt``, or
            keys the converter cannot place.
    """
    path_str = os.fspath(path)
    if fmt not in FORMATS:
        raise ValueError(f"checkpoint format {fmt!r} is not one of {', '.join(FORMATS)}")
    if os.path.isfile(path_str) and is_plain_pickle(path_str):
        state_dict, _ = load_pickle(path_str)
        found = detect_format(list(state_dict))
    else:
        ckpt = load_checkpoint(path_str, parse_config=fmt in ("auto", "mmdet"))
        found = detect_format(list(ckpt.state_dict))
        if fmt == "mmdet" or (fmt == "auto" and found == "mmdet"):
            return ckpt
        state_dict = ckpt.state_dict
    if fmt != "auto" and found != fmt:
        raise CheckpointError(
            f"checkpoint {path_str}: --checkpoint-format {fmt} was asked for but the keys look "
            f"like {found} (first keys: {', '.join(list(state_dict)[:5])})",
            path=path_str,
        )
    if found == "mmdet":
        raise CheckpointError(
            f"checkpoint {path_str}: a plain pickle whose keys are neither detectron2's nor "
            "maskrcnn-benchmark's; mmdetection checkpoints are torch.save files",
            path=path_str,
        )
    imported = import_state_dict(state_dict, path_str, found, stride_in_1x1)
    return dataclasses.replace(imported, sha256=_sha256(path_str))
