"""Which CPU code paths torch, oneDNN, oneMKL and Inductor take in this process, and how to
make them take another's.

A float32 sum comes out in a different order, and so with different last bits, depending on
the instruction set each library picks at run time: ATen's vectorized kernels
(``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``), oneMKL's GEMMs behind
``nn.Linear`` (``MKL_ENABLE_INSTRUCTIONS``) and Inductor's generated C++ (it follows
``ATEN_CPU_CAPABILITY``). An AMD EPYC and an Intel Xeon with AMX run different paths of all
four, so :data:`ISA_LEVELS` lets one machine run the code paths of several CPUs (down to what
it has itself); ``tests/isa_matrix.py`` runs the numerics tests under each.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass

#: the variables an ISA level sets; each is removed from the environment when a level leaves
#: it unset, so that the library picks the best path of this CPU
ISA_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


@dataclass(frozen=True)
class IsaLevel:
    """One CPU code path of every library, set through environment variables.

    Attributes:
        name: short name (``default``, ``avx2``, ``avx512``, ``avx512_bf16``, ``native``).
        aten: ``ATEN_CPU_CAPABILITY`` (``None``: unset, the best this CPU has).
        onednn: ``ONEDNN_MAX_CPU_ISA``.
        mkl: ``MKL_ENABLE_INSTRUCTIONS``.
        cpu_flags: ``/proc/cpuinfo`` flags this level needs (a CPU without them cannot run it).
        like: which machines take this path on their own.
    """

    name: str
    aten: str | None
    onednn: str | None
    mkl: str | None
    cpu_flags: tuple[str, ...]
    like: str

    def environ(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """``base`` (default: this process's environment) with this level's variables set and
        the ones it leaves unset removed."""
        env = dict(os.environ if base is None else base)
        for var, value in zip(ISA_VARIABLES, (self.aten, self.onednn, self.mkl), strict=True):
            if value is None:
                env.pop(var, None)
            else:
                env[var] = value
        return env


ISA_LEVELS: dict[str, IsaLevel] = {
    level.name: level
    for level in (
        IsaLevel("default", "default", "SSE41", "SSE4_2", ("sse4_1", "sse4_2"),
                 "any x86-64 CPU (torch's scalar fallback, oneDNN SSE4.1)"),
        IsaLevel("avx2", "avx2", "AVX2", "AVX2", ("avx2", "fma"),
                 "AVX2 CPUs without AVX-512: AMD EPYC up to Zen 3, older Xeons"),
        IsaLevel("avx512", "avx512", "AVX512_CORE", "AVX512", ("avx512f", "avx512bw"),
                 "AVX-512 without BF16 (Xeon Skylake/Cascade Lake)"),
        IsaLevel("avx512_bf16", "avx512", "AVX512_CORE_BF16", "AVX512",
                 ("avx512f", "avx512bw", "avx512_bf16"),
                 "AVX-512 BF16 without AMX: AMD EPYC Zen 4/5, Xeon Cooper Lake"),
        IsaLevel("native", None, None, None, (),
                 "whatever this CPU has (on a Xeon with AMX: AMX for bf16)"),
    )
}  # fmt: skip


def cpu_model() -> str:
    """The CPU's model name, family/model numbers and widest vector extensions, from
    ``/proc/cpuinfo`` (a VM often names only "Intel(R) Xeon(R) Processor")."""
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("model name", "cpu family", "model") and key not in info:
                    info[key] = value.strip()
                if not line.strip() and info:
                    break
    except OSError:
        return "unknown"
    flags = cpu_flags()
    ext = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (
        f"{info.get('model name', 'unknown')} (family {info.get('cpu family', '?')}, "
        f"model {info.get('model', '?')}; {' '.join(ext) or 'no AVX2'})"
    )


def cpu_flags() -> set[str]:
    """The instruction-set flags of ``/proc/cpuinfo`` (empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def missing_flags(level: IsaLevel) -> list[str]:
    """The flags ``level`` needs that this CPU lacks (empty: it can run here)."""
    have = cpu_flags()
    return [f for f in level.cpu_flags if f not in have]


_PROBE = r"""
import torch
x = torch.randn(1, 32, 32, 32)
w = torch.randn(32, 32, 3, 3)
torch.nn.functional.conv2d(x, w)                       # oneDNN, float32
torch.nn.functional.conv2d(x.bfloat16(), w.bfloat16())  # oneDNN, bf16 where the ISA has it
torch.randn(256, 128) @ torch.randn(128, 256)           # oneMKL SGEMM
from torch._inductor import cpu_vec_isa
isa = cpu_vec_isa.pick_vec_isa()
print("ATEN", torch.backends.cpu.get_cpu_capability())
print("INDUCTOR", str(isa) if isa else "scalar")
"""


def probe(env: dict[str, str] | None = None) -> dict[str, str]:
    """Start a Python with ``env`` and report the code path each library took there.

    Returns ``{'aten': ..., 'onednn': ..., 'mkl': ..., 'inductor': ...}``: torch's CPU
    capability, the ISA oneDNN's verbose log names, the one oneMKL's verbose log names and
    Inductor's vector ISA (``'scalar'``: none). A value that could not be read is ``'?'``.
    """
    env = dict(os.environ if env is None else env)
    env.update(ONEDNN_VERBOSE="1", MKL_VERBOSE="1")
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True
    ).stdout
    found = {"aten": "?", "onednn": "?", "mkl": "?", "inductor": "?"}
    for line in out.splitlines():
        if line.startswith("ATEN "):
            found["aten"] = line.split(" ", 1)[1]
        elif line.startswith("INDUCTOR "):
            found["inductor"] = line.split(" ", 1)[1]
        elif "onednn_verbose" in line and ",isa:" in line:
            found["onednn"] = line.split(",isa:", 1)[1].strip()
        elif line.startswith("MKL_VERBOSE") and "for Intel(R) 64 architecture" in line:
            m = re.search(r"architecture (.*?)(?: enabled processors|, Lnx|$)", line)
            found["mkl"] = m.group(1) if m else line
    return found


def active_variables() -> str:
    """The ISA variables set in this process, for a report header (``'none'``: all unset)."""
    set_ = [f"{v}={os.environ[v]}" for v in ISA_VARIABLES if v in os.environ]
    return " ".join(set_) or "none"
