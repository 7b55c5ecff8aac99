"""Loading AOTInductor packages (``.pt2`` made by ``aoti_compile_and_package``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import torch

__all__ = ["OneCallAtATime", "load_aoti"]


class OneCallAtATime:
    """A loaded AOTInductor package that several threads may call: one call runs at a time.

    torch 2.13's package runner keeps the GIL for a whole call and, with one model instance,
    makes a second caller wait for the instance inside C++. Our custom ops are Python ops that
    the package calls back, which need the GIL, so two threads calling at once deadlock (seen
    with ``cendetect run --streams 2``). Waiting on this lock instead releases the GIL.
    ``concurrent = False`` tells ``cendetect run`` that streams would not run side by side.
    """

    concurrent = False

    def __init__(self, program: Callable[..., object]) -> None:
        self.program = program
        self._lock = threading.Lock()

    def __call__(self, *args: object) -> object:
        with self._lock:
            return self.program(*args)


def load_aoti(path: str | os.PathLike, device: torch.device) -> Callable[..., object]:
    """Load the compiled model of a ``.pt2`` package; ``cendetect.ops`` must be imported first.

    The package calls our custom ops back through torch's dispatcher (they are Python custom
    ops), so they have to be registered in this process before the first call.
    """
    import cendetect.engine.runners.export_ops  # noqa: F401  (torch.ops.cendetect_export.*)
    import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect.* used by the program)

    index = -1 if device.type == "cpu" else (device.index or 0)
    return OneCallAtATime(torch._inductor.aoti_load_package(os.fspath(path), device_index=index))
