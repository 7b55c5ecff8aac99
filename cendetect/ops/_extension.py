"""Loading of the compiled CPU kernels (``cendetect._C``) and their thread setting."""

from __future__ import annotations

from types import ModuleType

_C: ModuleType | None
_IMPORT_ERROR: ImportError | None
try:
    from cendetect import _C
except ImportError as exc:  # not built: the ops still register, their CPU kernels refuse to run
    _C = None
    _IMPORT_ERROR = exc
else:
    _IMPORT_ERROR = None


def has_ops() -> bool:
    """True when the compiled extension ``cendetect._C`` is importable."""
    return _C is not None


def _assert_has_ops() -> ModuleType:
    """Returns ``cendetect._C``, or raises RuntimeError saying how to build it."""
    if _C is None:
        raise RuntimeError(
            "cendetect's CPU kernels (the compiled extension cendetect._C) are not available: "
            f"{_IMPORT_ERROR}. Build them from the repository root with `pip install -e .` "
            "(or `pip install .`); this needs a C++17 compiler, CMake >= 3.18 and Cython >= 3. "
            "An editable install must be re-run after changing anything in csrc/."
        )
    return _C


def get_num_threads() -> int:
    """Threads the CPU kernels use (default: $CENDETECT_NUM_THREADS, else the core count)."""
    return int(_assert_has_ops().get_num_threads())


def set_num_threads(num_threads: int) -> None:
    """Sets the threads the CPU kernels use; ``num_threads <= 0`` restores the default.

    Independent of ``torch.set_num_threads``: the kernels run their own std::threads.
    """
    _assert_has_ops().set_num_threads(int(num_threads))
