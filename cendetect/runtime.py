"""Process-level settings for long inference runs.

:func:`tune_malloc` keeps glibc's allocator from handing every large tensor buffer back to
the kernel. By default glibc serves allocations above a moving threshold (128 KiB at first)
with ``mmap`` and returns them with ``munmap`` when freed, so each image's feature maps are
fresh pages: the kernel zeroes them on first touch and takes a page fault per 4 KiB. On the
2-core test machine ``cendetect run`` with the default model spent 4.8-7.6 s of system time
per 100 images on this; with the threshold at 32 MiB and trimming off, 1.5-2.0 s, and the rate
rose from 3.61 / 4.35 to 4.63 / 4.81 images/s (two alternated pairs; docs/benchmarks.md,
"Pipeline with the ISA-L PNG writer, alternated pairs"). The cost: memory freed by the run
stays with the process (bounded by its peak use) until it exits. PyTorch's CPU
tuning guides give the same advice through jemalloc/tcmalloc; this needs no extra library.
"""

from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "cpu_name", "tune_malloc"]

#: allocations up to this size come from the heap (glibc's maximum for the threshold, 32 MiB
#: on 64-bit systems)
MMAP_THRESHOLD = 32 * 1024 * 1024
#: the heap is not trimmed below this much free memory at its top (1 GiB: practically never)
TRIM_THRESHOLD = 1 << 30
_M_TRIM_THRESHOLD = -1  # glibc's <malloc.h> parameter numbers
_M_MMAP_THRESHOLD = -3
# Set by the user: their choice wins.
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def tune_malloc() -> bool:
    """Raise glibc's mmap threshold to 32 MiB and stop trimming the heap, for this process.

    Does nothing (returns False) off Linux, on a C library without ``mallopt`` (musl),
    when ``CENDETECT_MALLOC_TUNING=0``, or when the user already set ``MALLOC_MMAP_THRESHOLD_``,
    ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES``. Returns True when both settings took.
    """
    if not sys.platform.startswith("linux") or os.environ.get("CENDETECT_MALLOC_TUNING") == "0":
        return False
    if any(k in os.environ for k in _USER_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), for benchmark and report headers."""
    import platform

    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"
