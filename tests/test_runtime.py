"""cendetect.runtime.tune_malloc: large buffers come from the heap after it, and the user's own
malloc settings or the opt-out leave glibc alone. Each case runs in a fresh interpreter."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only"
)

# Prints tune_malloc's answer, then how many bytes glibc holds in mmap'ed blocks after a
# 16 MiB allocation (mallinfo2's hblkhd; glibc >= 2.33).
_PROBE = textwrap.dedent(
    """
    import ctypes, json
    from cendetect.runtime import tune_malloc

    class MallInfo2(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
            "uordblks", "fordblks", "keepcost")]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    tuned = tune_malloc()
    before = libc.mallinfo2().hblkhd
    p = libc.malloc(16 << 20)
    during = libc.mallinfo2().hblkhd
    libc.free(p)
    print(json.dumps({"tuned": tuned, "mmapped": during - before}))
    """
)


def _probe(**env: str) -> dict:
    import json

    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES",)}
    base = {k: v for k, v in base.items() if not k.startswith("MALLOC_")}
    base.pop("CENDETECT_MALLOC_TUNING", None)
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, env={**base, **env}
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_large_buffers_come_from_the_heap_after_tuning() -> None:
    plain = _probe(CENDETECT_MALLOC_TUNING="0")
    assert plain == {"tuned": False, "mmapped": pytest.approx(16 << 20, rel=0.01)}
    tuned = _probe()
    assert tuned == {"tuned": True, "mmapped": 0}


@pytest.mark.parametrize(
    "env",
    [{"MALLOC_MMAP_THRESHOLD_": "65536"}, {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"}],
)
def test_the_users_malloc_settings_win(env: dict[str, str]) -> None:
    assert _probe(**env)["tuned"] is False
