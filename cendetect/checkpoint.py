"""Load mmdetection (2.x / 3.x) and plain PyTorch checkpoints as data, never as code.

The file is unpickled by :func:`cendetect.safe_pickle.load_data` (torch's ``weights_only``
unpickler, plus inert placeholders for the logging objects of real mmengine training files;
any other global is refused with a :class:`CheckpointError`). This module interprets what it
gives: finds the state dict, the class names and the embedded config, and checks the keys
against a model.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from cendetect.config_text import parse_config_text
from cendetect.errors import CheckpointError, ConfigError
from cendetect.safe_pickle import PickledObject, load_data
from cendetect.safe_pickle import file_sha256 as _sha256

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "PickledObject",
    "check_state_dict_keys",
    "load_checkpoint",
    "load_data",
    "load_into",
]

_MAX_LISTED = 20  # names listed in an error message


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
