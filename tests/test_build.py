"""The native extension is built, installed as cendetect._C, and is the compiled module."""

from __future__ import annotations

import importlib.machinery
import sys

import cendetect._C as ext
import cendetect.ops


def test_extension_is_compiled() -> None:
    spec = ext.__spec__
    assert spec is not None and spec.origin is not None
    assert spec.origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)), spec.origin
    # Cython-compiled callables, not Python functions (an editable install wraps the loader, so
    # the suffix of the file and the function types are what tell).
    assert type(ext.set_num_threads).__name__ in (
        "cython_function_or_method",
        "builtin_function_or_method",
    )
    for name in ("nms", "batched_nms", "roi_align", "multi_level_roi_align"):
        assert callable(getattr(ext, name)), name
    assert cendetect.ops.has_ops()


def test_thread_count_is_settable() -> None:
    import os

    before = ext.get_num_threads()  # whatever an earlier test in this process left
    try:
        ext.set_num_threads(0)  # the default: CENDETECT_NUM_THREADS, else the hardware's
        default = ext.get_num_threads()
        env = os.environ.get("CENDETECT_NUM_THREADS", "")
        assert default == (int(env) if env.isdigit() and int(env) > 0 else os.cpu_count())
        ext.set_num_threads(3)
        assert ext.get_num_threads() == 3
        ext.set_num_threads(0)  # back to the default
        assert ext.get_num_threads() == default
    finally:
        ext.set_num_threads(before)


def test_no_openmp_runtime_linked() -> None:
    # torch brings its own libgomp; the extension must not pull in a second OpenMP runtime.
    if not sys.platform.startswith("linux"):
        return
    with open(ext.__spec__.origin, "rb") as f:
        binary = f.read()
    assert b"libgomp" not in binary and b"libomp" not in binary
