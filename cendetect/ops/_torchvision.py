"""torchvision's kernels for non-CPU tensors, used when torchvision imports and its ops run.

On CPU-only machines torchvision is often absent or a CUDA build that fails to import; then
(and after any failure of one of its ops) the callers use their own fallbacks.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from types import ModuleType

import torch

_failed: set[str] = set()


@functools.cache
def _load() -> ModuleType | None:
    try:
        import torchvision
    except Exception:  # ImportError, or OSError/RuntimeError from a mismatched binary build
        return None
    return torchvision


def call(name: str, fn: Callable[[ModuleType], torch.Tensor]) -> torch.Tensor | None:
    """Returns ``fn(torchvision)``, or None when torchvision is unusable for op ``name``.

    An op that raised once is not tried again in this process (with one warning), except for
    out-of-memory errors, which are the caller's to handle.
    """
    tv = _load()
    if tv is None or name in _failed:
        return None
    try:
        return fn(tv)
    except torch.cuda.OutOfMemoryError:
        raise
    except (RuntimeError, NotImplementedError) as exc:
        _failed.add(name)
        warnings.warn(
            f"torchvision's {name} failed ({exc}); cendetect uses its own fallback from now on",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
