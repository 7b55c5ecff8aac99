"""Engines compiled on demand and kept in a cache (``cendetect run --engine KIND``).

An artifact is compiled once per (checkpoint contents, engine kind, precision, device, torch
version, model name) and reused by later runs. The file name holds that key, so a changed
checkpoint, another torch or another precision gets its own artifact. The folder is
``$CENDETECT_ENGINE_CACHE`` if set, else ``$XDG_CACHE_HOME/cendetect/engines`` (default
``~/.cache/cendetect/engines``). Writes are atomic: the artifact is built under a temporary
name in the same folder and renamed into place, so a concurrent run never sees half a file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

import torch

from cendetect.engine.runners import ENGINE_KINDS, EngineError
from cendetect.engine.runners.manifest import file_sha256, require_engine_package

__all__ = ["cached_engine", "engine_cache_dir", "engine_cache_path"]


def engine_cache_dir() -> Path:
    """The cache folder (not created here)."""
    if os.environ.get("CENDETECT_ENGINE_CACHE"):
        return Path(os.environ["CENDETECT_ENGINE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cendetect" / "engines"


def engine_cache_path(
    checkpoint: str | os.PathLike,
    kind: str,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    model: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    sha256: str | None = None,
    config: str | os.PathLike | None = None,
) -> Path:
    """Where the artifact of this key lives:
    ``STEM-SHA16[.MODEL][.cfgSHA12].KIND.DEVICE.PREC.tTORCH.SUFFIX`` (``PREC`` of fp16/bf16
    artifacts carries the float32-stage stride: ``bf16-s2``; ``cfgSHA12`` is the digest of the
    ``config`` file's bytes, so an edited config compiles anew).

    ``sha256`` (hex digest of the checkpoint) is computed when not given.
    """
    if kind not in ENGINE_KINDS:
        raise EngineError(f"unknown engine {kind!r}; choose one of: {', '.join(ENGINE_KINDS)}")
    digest = sha256 or file_sha256(checkpoint)
    torch_version = torch.__version__.split("+", 1)[0]
    parts = [f"{Path(checkpoint).stem}-{digest[:16]}"]
    if model:
        parts.append(model)
    if config is not None:
        parts.append(f"cfg{file_sha256(config)[:12]}")
    if precision != "fp32":
        from cendetect.compile.precision import DEFAULT_FP32_STRIDE

        # the float32-stage policy changes what a low-precision artifact computes: a cache
        # entry built under another default must not be reused
        precision = f"{precision}-s{DEFAULT_FP32_STRIDE}"
    parts += [kind, device, precision, f"t{torch_version}"]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", ".".join(parts)) + ENGINE_KINDS[kind]
    return Path(cache_dir or engine_cache_dir()) / name


def cached_engine(
    checkpoint: str | os.PathLike,
    kind: str,
    *,
    precision: str = "fp32",
    device: str = "cpu",
    model: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
    config: str | os.PathLike | None = None,
) -> Path:
    """The cached artifact of ``checkpoint`` as ``kind``, compiled first if it is not there.

    Args:
        checkpoint: mmdetection checkpoint or bare state dict.
        kind: a key of ``ENGINE_KINDS``.
        precision, device, model: as for :func:`cendetect.compile.compile_engine`
            (default input sizes).
        cache_dir: the cache folder (default :func:`engine_cache_dir`).
        config: the training config applied to the checkpoint (part of the cache key).
        log: called with one line when an artifact is compiled.

    Raises:
        EngineError: unknown kind, the kind's package missing (names the pip extra), or the
            build refused (see ``compile_engine``).
    """
    from cendetect.compile.build import compile_engine

    if kind not in ENGINE_KINDS:
        raise EngineError(f"unknown engine {kind!r}; choose one of: {', '.join(ENGINE_KINDS)}")
    require_engine_package(kind)
    path = engine_cache_path(
        checkpoint, kind, precision=precision, device=device, model=model, cache_dir=cache_dir,
        config=config,
    )  # fmt: skip
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    if log is not None:
        log(f"compiling {kind} engine of {checkpoint} into {path} (once; later runs reuse it)")
    try:
        compile_engine(
            checkpoint, tmp, engine=kind, precision=precision, device=device, model=model,
            config=config,
        )  # fmt: skip
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
