"""Load mmdetection (2.x / 3.x) and plain PyTorch checkpoints as data, never as code.

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
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from cendetect.config_text import parse_config_text
from cendetect.errors import CheckpointError, ConfigError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "PickledObject",
    "check_state_dict_keys",
    "load_checkpoint",
    "load_data",
    "load_into",
]


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A checkpoint read as data.

    Attributes:
        path: the file it was read from.
        state_dict: parameter and buffer tensors on CPU, in file order, ``module.`` prefix removed.
        classes: class names (2.x ``meta['CLASSES']``, 3.x ``meta['dataset_meta']['classes']``).
        config: the embedded config parsed by :func:`cendetect.config_text.parse_config_text`.
        config_text: the embedded config text (2.x ``meta['config']``, 3.x ``meta['cfg']``).
        layout: ``"mmdet2"``, ``"mmdet3"`` or ``"state_dict"`` (no ``meta``).
        sha256: hex digest of the file bytes.
        meta: the rest of ``meta`` (epoch, iter, versions, ...); mmengine/numpy objects in it are
            :class:`PickledObject` placeholders.
    """

    path: str
    state_dict: dict[str, torch.Tensor] = field(repr=False)
    classes: tuple[str, ...] | None
    config: dict[str, Any] | None = field(repr=False)
    config_text: str | None = field(repr=False)
    layout: str
    sha256: str
    meta: dict[str, Any] = field(repr=False)


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

_MAX_LISTED = 20


def _sha256(path: str) -> str:
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


# ---------------------------------------------------------------------------------------------
# Interpreting the loaded object.


def _clean_state_dict(raw: Mapping[Any, Any], path: str, where: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    original: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"checkpoint {path}: {where} has a non-string key {key!r}", path=path
            )
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"checkpoint {path}: {where}[{key!r}] is a {type(value).__name__}, not a tensor",
                path=path,
            )
        name = key[len("module.") :] if key.startswith("module.") else key  # DataParallel
        if name in out:
            raise CheckpointError(
                f"checkpoint {path}: {where} has both {original[name]!r} and {key!r}, the same "
                "name once the DataParallel prefix 'module.' is removed",
                path=path,
            )
        original[name] = key
        out[name] = value.detach() if isinstance(value, torch.nn.Parameter) else value
    if not out:
        raise CheckpointError(f"checkpoint {path}: {where} is empty", path=path)
    return out


def _classes(value: Any, path: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(c, str) for c in value):
        return tuple(value)
    raise CheckpointError(f"checkpoint {path}: class names are not a list of strings: {value!r}")


def _find_state_dict(obj: Mapping[Any, Any], path: str) -> tuple[Mapping[Any, Any], str]:
    for key in ("state_dict", "model"):
        if key in obj:
            raw = obj[key]
            if not isinstance(raw, Mapping):
                raise CheckpointError(
                    f"checkpoint {path}: {key!r} is a {type(raw).__name__}, not a mapping of "
                    "tensors",
                    path=path,
                )
            return raw, key
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, "the state dict"
    raise CheckpointError(
        f"checkpoint {path}: no state dict found (top-level keys: {list(obj)[:_MAX_LISTED]}); "
        "expected an mmdetection checkpoint, {'state_dict': ...} or a name -> tensor mapping",
        path=path,
    )


def load_checkpoint(path: str | os.PathLike[str], *, parse_config: bool = True) -> Checkpoint:
    """Read a checkpoint file as data.

    Understands mmdetection 2.x (``meta.CLASSES``, ``meta.config``) and 3.x (``meta.dataset_meta``,
    ``meta.cfg``) files, ``{'state_dict': ...}``, ``{'model': ...}`` and bare name -> tensor
    mappings. Optimizer, scheduler and logging entries are ignored.

    Args:
        path: the ``.pth`` file.
        parse_config: parse the embedded config; set False to load the weights of a checkpoint
            whose config uses constructs :func:`cendetect.config_text.parse_config_text` refuses.

    Raises:
        CheckpointError: the file is missing, unreadable, references a global outside the
            allow-list, or holds no proper state dict.
    """
    path_str = os.fspath(path)
    obj = load_data(path_str)
    digest = _sha256(path_str)
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"checkpoint {path_str}: the file holds a {type(obj).__name__}, not a dict",
            path=path_str,
        )
    raw, where = _find_state_dict(obj, path_str)
    state_dict = _clean_state_dict(raw, path_str, where)
    meta = obj.get("meta") if where != "the state dict" else None
    if not isinstance(meta, Mapping):
        return Checkpoint(path_str, state_dict, None, None, None, "state_dict", digest, {})
    is_v3 = any(k in meta for k in ("cfg", "dataset_meta", "mmengine_version"))
    dataset_meta = meta.get("dataset_meta")
    classes = dataset_meta.get("classes") if isinstance(dataset_meta, Mapping) else None
    classes = _classes(meta.get("CLASSES") if classes is None else classes, path_str)
    text_key = "cfg" if is_v3 and "cfg" in meta else "config"
    text = meta.get(text_key)
    text = text if isinstance(text, str) else None
    config = None
    if text is not None and parse_config:
        try:
            config = parse_config_text(text, source=f"{path_str}:meta[{text_key!r}]")
        except ConfigError as exc:
            raise CheckpointError(
                f"checkpoint {path_str}: its embedded config cannot be read as data: {exc}. "
                "Pass parse_config=False to load the weights without it.",
                path=path_str,
            ) from exc
    rest = {k: v for k, v in meta.items() if k not in ("CLASSES", "config", "cfg")}
    layout = "mmdet3" if is_v3 else "mmdet2"
    return Checkpoint(path_str, state_dict, classes, config, text, layout, digest, rest)


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    more = f" (first {_MAX_LISTED} of {len(items)})" if len(items) > _MAX_LISTED else ""
    return f"\n  {len(items)} {title}{more}: {shown}"


def check_state_dict_keys(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], path: str = "<state dict>"
) -> None:
    """Raise a CheckpointError listing missing, unexpected and wrongly-shaped keys, if any.

    A missing ``num_batches_tracked`` is tolerated: torch's BatchNorm fills it in when the state
    dict carries no version metadata, as for checkpoints from before torch 0.4.1.
    """
    expected = model.state_dict()
    missing = [
        k for k in expected if k not in state_dict and not k.endswith(".num_batches_tracked")
    ]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f"{k} checkpoint {list(state_dict[k].shape)} vs model {list(expected[k].shape)}"
        for k in state_dict
        if k in expected and state_dict[k].shape != expected[k].shape
    ]
    if not (missing or unexpected or mismatched):
        return
    message = f"checkpoint {path} does not fit {type(model).__name__}:"
    for title, items in (
        ("missing keys", missing),
        ("unexpected keys", unexpected),
        ("shape mismatches", mismatched),
    ):
        if items:
            message += _listing(title, items)
    message += "\nIs the checkpoint for this architecture and number of classes?"
    raise CheckpointError(message, path=path)


def load_into(model: torch.nn.Module, checkpoint: Checkpoint) -> None:
    """Copy the checkpoint's weights into ``model`` (strict), after a readable key check.

    Raises:
        CheckpointError: names the missing / unexpected / wrongly-shaped keys and the file.
    """
    check_state_dict_keys(model, checkpoint.state_dict, checkpoint.path)
    try:
        model.load_state_dict(dict(checkpoint.state_dict), strict=True)
    except RuntimeError as exc:
        raise CheckpointError(
            f"checkpoint {checkpoint.path}: loading into {type(model).__name__} failed: {exc}",
            path=checkpoint.path,
        ) from exc
