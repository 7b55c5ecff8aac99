"""Loading TorchScript artifacts (``torch.jit.save`` files with the manifest in ``extra/``)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

import torch

__all__ = ["load_torchscript", "quiet_jit"]


@contextlib.contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence torch 2.13's "`torch.jit.X` is deprecated" warning, and only that one.

    We call TorchScript on purpose (the product ships it, DESIGN.md); any other warning still
    reaches the user.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        yield


def load_torchscript(path: str | os.PathLike, device: torch.device) -> torch.jit.ScriptModule:
    """Load a scripted model onto ``device``; ``cendetect.ops`` must be imported first."""
    import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.* used by the program)

    with quiet_jit():
        module = torch.jit.load(os.fspath(path), map_location=device)
    return module.eval()
