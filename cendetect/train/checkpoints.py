"""Checkpoints of a training run, written atomically.

* ``iter_{N}.pth`` and ``latest.pth``: mmdetection 2.x layout, ``{"meta": {"CLASSES", "config",
  "iter", ...}, "state_dict": {...}}`` with float32 tensors. It loads in
  ``cendetect.Detector.from_checkpoint`` and in mmdetection 2.x itself.
* ``train_state.pth``: what resuming needs beyond the weights (optimizer and grad-scaler state,
  iteration, RNG states), kept out of the model checkpoint so that file stays a plain mmdet one.
* :func:`export_fp16`: the same checkpoint with floating-point tensors in float16 (half the size;
  the loader copies them into float32 parameters).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cendetect.io.atomic import write_bytes_atomic

STATE_FILE = "train_state.pth"
LATEST = "latest.pth"


def _save_atomic(obj: Any, path: Path) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes_atomic(path, buf.getvalue())


def mmdet_checkpoint(
    model: nn.Module, classes: Sequence[str], config_text: str, iteration: int
) -> dict[str, Any]:
    """The mmdet 2.x checkpoint dict of ``model`` (float32 CPU tensors)."""
    state = {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()}
    meta = {
        "CLASSES": tuple(classes),
        "config": config_text,
        "iter": int(iteration),
        "mmdet_version": "2.28.2",
        "cendetect_version": _version(),
    }
    return {"meta": meta, "state_dict": state}


def _version() -> str:
    from cendetect import __version__

    return __version__


def save_checkpoint(
    out_dir: str | os.PathLike,
    model: nn.Module,
    classes: Sequence[str],
    config_text: str,
    iteration: int,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``iter_{iteration}.pth``, refresh ``latest.pth`` and (if given) ``train_state.pth``.

    Returns the path of ``iter_{iteration}.pth``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = mmdet_checkpoint(model, classes, config_text, iteration)
    path = out / f"iter_{iteration}.pth"
    _save_atomic(ckpt, path)
    _save_atomic(ckpt, out / LATEST)
    if train_state is not None:
        _save_atomic({**train_state, "iter": int(iteration)}, out / STATE_FILE)
    return path


def load_train_state(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``train_state.pth`` of a run (optimizer/scaler state dicts, iteration, RNG states)."""
    path = Path(out_dir) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no training state to resume from (the run wrote no checkpoint yet)"
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def export_fp16(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy checkpoint ``src`` to ``dst`` with its floating-point tensors in float16."""
    ckpt = torch.load(src, map_location="cpu", weights_only=True)
    ckpt["state_dict"] = {
        k: v.half() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()
    }
    ckpt["meta"]["precision"] = "fp16"
    _save_atomic(ckpt, Path(dst))
    return Path(dst)
