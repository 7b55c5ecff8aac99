"""Read detectron2 model-zoo ``.pkl`` files as data: a pickle unpickler that only rebuilds numpy
arrays.

detectron2's ``DetectionCheckpointer._load_file`` (``detectron2/checkpoint/
detection_checkpoint.py``) reads ``.pkl`` files with ``pickle.load(f, encoding="latin1")``;
model-zoo files hold ``{"model": {name: numpy array}, "__author__": ..., "matching_heuristics":
...}``. Plain ``pickle.load`` runs any callable the file names. Here only these globals resolve,
each to an inert stand-in: numpy's array reconstruction (``numpy.core.multiarray._reconstruct``,
``numpy.ndarray``, ``numpy.dtype``; also under numpy 2's ``numpy._core``), numpy scalars, and
``_codecs.encode`` of a str to latin-1 bytes (how protocol-2 pickles store bytes). Arrays are
then rebuilt from their raw bytes with ``numpy.frombuffer`` (numeric dtypes only). Anything else
is refused with the same :class:`~cendetect.errors.CheckpointError` as
:mod:`cendetect.checkpoint`.
"""

from __future__ import annotations

import io
import os
import pickle
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from cendetect.errors import CheckpointError
from cendetect.safe_pickle import PickledArray, PickledDType, PickledObject, _refused

__all__ = ["is_plain_pickle", "load_pickle"]


class _Scalar(PickledObject):
    global_name = "numpy.core.multiarray.scalar"


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> PickledArray:
    if subtype is not PickledArray:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {subtype!r} refused")
    return PickledArray(shape, dtype)


def _scalar(dtype: Any, data: Any = None) -> _Scalar:
    return _Scalar(dtype, data)


def _codecs_encode(obj: Any, encoding: str = "utf-8", *rest: Any) -> bytes:
    if rest or not isinstance(obj, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is only allowed as encode(str, 'latin1')")
    return obj.encode("latin1")


_ALLOWED: dict[tuple[str, str], Any] = {("_codecs", "encode"): _codecs_encode}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_mod, "_reconstruct")] = _reconstruct
    _ALLOWED[(_mod, "scalar")] = _scalar
_ALLOWED[("numpy", "ndarray")] = PickledArray
_ALLOWED[("numpy", "dtype")] = PickledDType


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"GLOBAL {module}.{name} is not allowed") from None


def is_plain_pickle(path: str | os.PathLike[str]) -> bool:
    """True for a bare pickle stream (a ``.pkl``), False for a ``torch.save`` file.

    ``torch.save`` writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle whose
    first object is torch's magic number; a model-zoo ``.pkl`` starts with a dict.
    """
    with open(path, "rb") as fh:
        head = fh.read(64)
    if head.startswith(b"PK\x03\x04") or not head.startswith(b"\x80"):
        return False
    # legacy torch.save: PROTO, then the magic number 0x1950a86a20f9469cfc6c as a LONG1
    return b"\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19" not in head


def _to_array(value: PickledArray, path: str, key: str) -> np.ndarray:
    state = value.state
    if not (isinstance(state, tuple) and len(state) == 5):
        raise CheckpointError(f"checkpoint {path}: {key!r} is not a plain numpy array", path=path)
    version, shape, dtype, fortran, raw = state
    if isinstance(raw, str):  # Python 2 pickles read with encoding='latin1'
        raw = raw.encode("latin1")
    value.state = (version, shape, dtype, fortran, raw)
    try:
        return value.to_numpy()
    except (CheckpointError, ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path}: {key!r}: {exc}", path=path) from None


def _tensors(model: Mapping[Any, Any], path: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for key, value in model.items():
        if not isinstance(key, str):
            raise CheckpointError(f"checkpoint {path}: non-string key {key!r}", path=path)
        if isinstance(value, PickledArray):
            out[key] = torch.from_numpy(_to_array(value, path, key))
        elif isinstance(value, torch.Tensor):
            out[key] = value
        else:
            raise CheckpointError(
                f"checkpoint {path}: model[{key!r}] is a {type(value).__name__}, not an array",
                path=path,
            )
    return out


def load_pickle(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The ``model`` arrays of a detectron2 ``.pkl`` as tensors, and the other top-level entries.

    Raises:
        CheckpointError: the file names a global outside the allow-list (nothing from it runs),
            is not a dict with a ``model`` mapping, or holds something other than arrays there.
    """
    path = os.fspath(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        obj = _Unpickler(io.BytesIO(data), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        message = str(exc)
        name = message.split("GLOBAL ", 1)[1].split(" ")[0] if "GLOBAL " in message else None
        raise _refused(path, [name] if name else [], message) from None
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} cannot be read as a pickle: {type(exc).__name__}: {exc}",
            path=path,
        ) from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path}: the pickle holds a {type(obj).__name__}, not a dict", path=path
        )
    if "model" not in obj:
        what = "a Caffe2 / Detectron1 'blobs' file" if "blobs" in obj else "no 'model' entry"
        raise CheckpointError(
            f"checkpoint {path}: {what}; only detectron2 model-zoo files "
            "({'model': {name: array}, '__author__': ...}) are supported",
            path=path,
        )
    model = obj["model"]
    if not isinstance(model, Mapping):
        raise CheckpointError(f"checkpoint {path}: 'model' is not a mapping", path=path)
    rest = {k: v for k, v in obj.items() if k != "model"}
    return _tensors(model, path), rest
