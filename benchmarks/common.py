"""What the benchmark scripts share: timing, load measurement, memory, tables.

Standard library only at import (the mmdetection peer's venv imports it too); ``read_image``
and ``cpu_name`` import OpenCV / cendetect when called.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

__all__ = [
    "REPO",
    "cpu_busy_s",
    "cpu_name",
    "fmt",
    "markdown_table",
    "peak_rss_mb",
    "read_image",
    "time_calls",
    "timed_call",
    "wait_quiet",
]


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB (Linux reports ``ru_maxrss`` in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def cpu_busy_s() -> float:
    """Seconds of CPU time all processes of the machine have used (``/proc/stat``), or 0."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed_call(
    fn: Callable[[], Any], sync: Callable[[], None] | None = None
) -> tuple[float, float, Any]:
    """(wall seconds, cores other processes kept busy meanwhile, result) of one call;
    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before the clock stops."""
    busy0, own0, t0 = cpu_busy_s(), time.process_time(), time.perf_counter()
    out = fn()
    if sync is not None:
        sync()
    wall = time.perf_counter() - t0
    busy, own = cpu_busy_s() - busy0, time.process_time() - own0
    return wall, max(busy - own, 0.0) / wall, out


def time_calls(
    fn: Callable[[], Any],
    warmup: int,
    repeats: int,
    quiet_cores: float = 0.0,
    max_calls: int = 0,
    sync: Callable[[], None] | None = None,
) -> tuple[list[float], list[float], Any]:
    """Wall times of the timed calls after ``warmup``, and the CPU cores that other processes
    kept busy during each (machine CPU time from ``/proc/stat`` minus ours, over the wall time).

    Exactly ``repeats`` calls; with ``quiet_cores > 0``, calls go on until ``repeats`` of them saw
    other processes use fewer than ``quiet_cores`` cores, or ``max_calls`` calls were made.
    """
    out: Any = None
    for _ in range(warmup):
        out = fn()
    if sync is not None:
        sync()
    times: list[float] = []
    others: list[float] = []

    def enough() -> bool:
        if len(times) < repeats:
            return False
        if quiet_cores <= 0 or len(times) >= max_calls:
            return True
        return sum(o < quiet_cores for o in others) >= repeats

    while not enough():
        wall, other, out = timed_call(fn, sync)
        times.append(wall)
        others.append(other)
    return times, others, out


def wait_quiet(max_wait_s: float, threshold_cores: float = 0.1, sample_s: float = 5.0) -> float:
    """Wait (at most ``max_wait_s``) until the machine uses < ``threshold_cores`` over a sample.

    Returns the busy cores of the last sample.
    """
    deadline = time.monotonic() + max_wait_s
    while True:
        b0 = cpu_busy_s()
        time.sleep(sample_s)
        cores = (cpu_busy_s() - b0) / sample_s
        if cores < threshold_cores or time.monotonic() >= deadline:
            return cores


def read_image(path: str) -> Any:
    """A BGR uint8 image (OpenCV), or RuntimeError naming the file."""
    import cv2

    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise RuntimeError(f"{path}: cannot read")
    return img


def fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown_table(rows: list[list[str]]) -> str:
    """A Markdown table; ``rows[0]`` is the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU model (``cendetect.runtime.cpu_name``)."""
    sys.path.insert(0, str(REPO))
    from cendetect.runtime import cpu_name as name

    return name()


def median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time in ms of ``repeats`` calls after ``warmup`` untimed ones, and the last
    call's result."""
    times, _, out = time_calls(fn, warmup, repeats)
    return statistics.median(times) * 1e3, out
