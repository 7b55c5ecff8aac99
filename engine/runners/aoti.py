"""Loading AOTInductor packages (``.pt2`` made by ``aoti_compile_and_package``)."""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

__all__ = ["load_aoti"]


def load_aoti(path: str | os.PathLike, device: torch.device) -> Callable[..., object]:
    """Load the compiled model of a ``.pt2`` package; ``cendetect.ops`` must be imported first.

    The package calls our custom ops back through torch's dispatcher (they are Python custom
    ops), so they have to be registered in this process before the first call.
    """
    import cendetect.engine.runners.export_ops  # noqa: F401  (torch.ops.cendetect_export.*)
    import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.* used by the program)

    index = -1 if device.type == "cpu" else (device.index or 0)
    return torch._inductor.aoti_load_package(os.fspath(path), device_index=index)
