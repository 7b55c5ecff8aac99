"""TorchScript artifacts: ``torch.jit.script`` + ``torch.jit.save`` with the manifest inside."""

from __future__ import annotations

import os

import torch
from torch import nn

from cendetect.engine.runners import Manifest
from cendetect.engine.runners.manifest import MANIFEST_NAME
from cendetect.engine.runners.torchscript import quiet_jit

__all__ = ["save_torchscript", "script_model"]


def script_model(model: nn.Module) -> torch.jit.ScriptModule:
    """Script ``model`` (eval mode); it runs any batch and input size."""
    with quiet_jit():
        return torch.jit.script(model.eval())


def save_torchscript(model: nn.Module, manifest: Manifest, path: str | os.PathLike) -> None:
    """Script ``model`` and write it to ``path`` with ``manifest`` as ``extra/`` file."""
    scripted = script_model(model)
    with quiet_jit():
        torch.jit.save(scripted, os.fspath(path), _extra_files={MANIFEST_NAME: manifest.to_json()})
