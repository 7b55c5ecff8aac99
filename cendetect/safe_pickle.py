"""Read a ``torch.save`` file as data, never as code (the loading half of
:mod:`cendetect.checkpoint`).

Every file goes through torch's ``weights_only`` unpickler. Real mmengine training checkpoints also
hold logging objects (``HistoryBuffer`` with numpy arrays) in ``message_hub``, which that unpickler
refuses; for those a second pass allows a short list of known-inert globals, each bound to a
placeholder defined here that only stores the pickled state (no mmengine or numpy code runs).
Any other global, such as ``posix.system``, is refused with a :class:`CheckpointError`.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from cendetect.errors import CheckpointError

__all__ = ["PickledArray", "PickledDType", "PickledObject", "file_sha256", "load_data"]


# ---------------------------------------------------------------------------------------------
# Placeholders for the inert globals of real training checkpoints.


class PickledObject:
    """Stands in for an allow-listed class from a checkpoint; keeps what the pickle gave it.

    Attributes:
        global_name: the pickled global this placeholder replaces (class attribute).
        args: positional arguments from the pickle's constructor call.
        state: the object state from the pickle's BUILD step (a dict or tuple), or None.
    """

    global_name: ClassVar[str] = ""

    def __new__(cls, *args: Any) -> PickledObject:
        self = super().__new__(cls)
        self.args = args
        self.state = None
        return self

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<pickled {self.global_name} args={self.args!r} state={self.state!r}>"


def _placeholder(global_name: str) -> type[PickledObject]:
    name = global_name.rsplit(".", 1)[-1]
    return type(name, (PickledObject,), {"global_name": global_name, "__qualname__": name})


class PickledArray(PickledObject):
    """A numpy array as pickled: ``state`` is (version, shape, dtype, is_fortran, raw bytes)."""

    global_name = "numpy.ndarray"

    def to_numpy(self) -> Any:
        """Rebuild the array with numpy (plain numeric dtypes only; object arrays are refused)."""
        import numpy as np

        _, shape, dtype, is_fortran, raw = self.state
        if (
            not isinstance(dtype, PickledDType)
            or "O" in dtype.spec
            or not isinstance(raw, (bytes, bytearray))
        ):
            raise CheckpointError(f"cannot rebuild {self!r} as a plain numpy array")
        arr = np.frombuffer(bytes(raw), dtype=np.dtype(dtype.spec))
        return arr.reshape(shape, order="F" if is_fortran else "C").copy()


class PickledDType(PickledObject):
    """A numpy dtype as pickled: ``args[0]`` is the type code (``'f8'``), ``state[1]`` the order."""

    global_name = "numpy.dtype"

    @property
    def spec(self) -> str:
        order = self.state[1] if isinstance(self.state, tuple) and len(self.state) > 1 else "|"
        return (order if order in "<>" else "") + str(self.args[0])


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> PickledArray:
    if subtype is not PickledArray:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {subtype!r} refused")
    return PickledArray(shape, dtype)


def _np_scalar(dtype: Any, data: Any = None) -> PickledObject:
    return _NumpyScalar(dtype, data)


_NumpyScalar = _placeholder("numpy.core.multiarray.scalar")


class PickledAttribute(PickledObject):
    """``getattr(<allow-listed class>, name)`` as pickled (e.g. ``HistoryBuffer.min``)."""

    global_name = "builtins.getattr"


def _restricted_getattr(owner: Any, name: Any) -> PickledAttribute:
    # Only attribute names on our own placeholder classes: nothing real is looked up.
    if not (isinstance(owner, type) and issubclass(owner, PickledObject)) or not (
        isinstance(name, str) and name.isidentifier() and not name.startswith("__")
    ):
        raise pickle.UnpicklingError(f"getattr({owner!r}, {name!r}) is not allowed")
    return PickledAttribute(f"{owner.global_name}.{name}")


def _plain_dict(*args: Any, **kwargs: Any) -> dict[Any, Any]:
    """mmengine ``ConfigDict`` pickles as ``ConfigDict({...})``: keep the plain dict."""
    out: dict[Any, Any] = {}
    for arg in args:
        if not isinstance(arg, Mapping):
            raise pickle.UnpicklingError(f"ConfigDict from a {type(arg).__name__} refused")
        out.update(arg)
    out.update(kwargs)
    return out


_INERT_CLASSES = (
    "mmengine.logging.history_buffer.HistoryBuffer",
    "mmengine.config.config.Config",
    "mmcv.utils.config.Config",
)
# (object, pickled global name): torch's weights_only unpickler looks globals up by that name.
_ALLOWED: list[tuple[Any, str]] = [(_placeholder(n), n) for n in _INERT_CLASSES]
_ALLOWED += [(_plain_dict, "mmengine.config.config.ConfigDict"), (PickledArray, "numpy.ndarray")]
# addict-based dicts pickled by protocol 2 (NEWOBJ, SETITEMS, BUILD); torch only lets SETITEMS
# fill a dict, OrderedDict or Counter, so they come back as OrderedDicts.
_ALLOWED += [(OrderedDict, "mmcv.utils.config.ConfigDict"), (OrderedDict, "addict.addict.Dict")]
_ALLOWED += [(PickledDType, "numpy.dtype"), (_restricted_getattr, "builtins.getattr")]
for _np in ("numpy.core", "numpy._core"):  # numpy 1.x and 2.x module names
    _ALLOWED += [(_np_reconstruct, f"{_np}.multiarray._reconstruct")]
    _ALLOWED += [(_np_scalar, f"{_np}.multiarray.scalar")]

# ---------------------------------------------------------------------------------------------
# Reading the file.


def file_sha256(path: str) -> str:
    """Hex SHA-256 of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint {path}: no such file", path=path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint {path}: not a regular file", path=path)
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        raise CheckpointError(f"checkpoint {path}: the file is empty", path=path)
    # torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle.
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        raise CheckpointError(
            f"checkpoint {path}: not a PyTorch checkpoint (torch.save file); it starts with "
            f"{head!r}",
            path=path,
        )


def _unpickler_reason(message: str) -> str:
    """The useful line of torch's weights_only error (without its advice to unpickle unsafely)."""
    message = message.split("WeightsUnpickler error:")[-1]
    lines = [line.strip() for line in message.splitlines()]
    lines = [line for line in lines if line and not line.startswith("Check the documentation")]
    return lines[-1] if lines else "unknown unpickling error"


def _unreadable(path: str, exc: BaseException) -> CheckpointError:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return CheckpointError(
        f"checkpoint {path} cannot be read: {type(exc).__name__}: {reason[:300]} "
        "(the file is truncated, corrupted, or not a torch.save checkpoint)",
        path=path,
    )


def _refused(path: str, names: list[str], reason: str) -> CheckpointError:
    what = (
        f"it references {', '.join(sorted(names))}, which cendetect does not load"
        if names
        else f"it cannot be read as data ({reason})"
    )
    return CheckpointError(
        f"checkpoint {path} refused: {what}. Checkpoints are loaded as data only "
        "(torch.load weights_only=True plus a short allow-list of inert mmengine and numpy "
        "classes), so nothing in the file runs. If you trust this file, convert it once in a "
        "separate Python session: ckpt = torch.load(PATH, map_location='cpu', "
        "weights_only=False); torch.save({'state_dict': ckpt['state_dict'], 'meta': "
        "{'CLASSES': ..., 'config': ...}}, 'converted.pth') keeping only tensors, strings and "
        "tuples, and load converted.pth.",
        path=path,
    )


def _unsafe_globals(path: str) -> list[str] | None:
    """Globals the file references beyond those allowed now; None when the file cannot be scanned.

    Only zip checkpoints (torch >= 1.6) can be scanned without unpickling; legacy files cannot.
    """
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy format, or an opcode the scanner lacks: the load pass will tell
        return None
    # torch reports builtins without their module (e.g. 'eval'); name them fully.
    return sorted(n if "." in n else f"builtins.{n}" for n in names)


def load_data(path: str | os.PathLike[str]) -> Any:
    """The whole object stored in a checkpoint file, unpickled as data (see the module docstring).

    Raises:
        CheckpointError: the file is missing or unreadable, or references a global outside the
            allow-list (nothing from the file is executed).
    """
    path = os.fspath(path)
    _check_file(path)
    # Plain weights_only first, unless a scan of the pickle already shows it would be refused
    # (that spares reading every tensor twice for mmengine training files).
    if not _unsafe_globals(path):
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            pass  # maybe a real mmengine training file: retry with the allow-list below
        except Exception as exc:
            raise _unreadable(path, exc) from None
    with torch.serialization.safe_globals(_ALLOWED):
        unsafe = _unsafe_globals(path)
        if unsafe:
            raise _refused(path, unsafe, "")
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            names = re.findall(r"GLOBAL (\S+)", str(exc))
            names = [n if "." in n else f"builtins.{n}" for n in names]
            raise _refused(path, names, _unpickler_reason(str(exc))) from None
        except Exception as exc:
            raise _unreadable(path, exc) from None
