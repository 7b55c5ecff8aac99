"""OpenVINO on cendetect's ONNX export: the ``openvino`` engine (CPU).

The artifact is the same standard-ops ONNX file as the ``onnx`` engine (manifest in its
``metadata_props``, engine ``"openvino"``), compiled at load time by OpenVINO's CPU plugin.
``fp32`` artifacts run with ``INFERENCE_PRECISION_HINT=f32``; ``bf16`` artifacts hold the same
float32 graph and run with the ``bf16`` hint: OpenVINO itself chooses which layers compute in
bf16 (on CPUs without AVX-512 BF16 or AMX it falls back to f32). OpenVINO's compiled blob is
cached in ``$XDG_CACHE_HOME/cendetect/openvino`` (``CACHE_DIR``), so only the first load of an
artifact pays for the compilation.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from cendetect.engine.runners.manifest import EngineError, require_engine_package

__all__ = ["HINTS", "load_openvino", "openvino_cache_dir"]

#: manifest precision -> OpenVINO INFERENCE_PRECISION_HINT
HINTS = {"fp32": "f32", "bf16": "bf16"}


def openvino_cache_dir() -> Path:
    """Where OpenVINO keeps compiled blobs: ``$XDG_CACHE_HOME/cendetect/openvino``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cendetect" / "openvino"


def load_openvino(
    path: str | os.PathLike,
    device: torch.device,
    precision: str = "fp32",
    threads: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Callable[..., tuple[Tensor, ...]]:
    """A compiled OpenVINO model of ``path`` as ``(images, image_sizes, scale_factors) ->
    outputs`` (the raw-detection contract, tensors on the CPU).

    Args:
        path: an ``.onnx`` made by ``cendetect-compile --engine openvino``.
        device: must be the CPU (OpenVINO's CPU plugin).
        precision: ``'fp32'`` or ``'bf16'`` (the inference precision hint).
        threads: inference threads (default: torch's intra-op thread count).
        cache_dir: OpenVINO's model cache (default :func:`openvino_cache_dir`; ``''``: none).

    Raises:
        EngineError: openvino missing (names the pip extra), a CUDA device, an unknown
            precision.
    """
    require_engine_package("openvino", ("openvino",))
    import openvino as ov

    if device.type != "cpu":
        raise EngineError(
            f"engine {path}: the openvino engine runs on the CPU; load it with device='cpu'",
            path=path,
        )
    if precision not in HINTS:
        raise EngineError(f"engine {path}: openvino precision {precision!r} is not fp32 or bf16")
    core = ov.Core()
    cache = openvino_cache_dir() if cache_dir is None else cache_dir
    if cache:
        Path(cache).mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": os.fspath(cache)})
    config = {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": int(threads or torch.get_num_threads()),
    }
    compiled = core.compile_model(os.fspath(path), "CPU", config)
    outputs = list(compiled.outputs)
    local = threading.local()

    def run(images: Tensor, image_sizes: Tensor, scale_factors: Tensor) -> tuple[Tensor, ...]:
        request = getattr(local, "request", None)
        if request is None:  # an infer request is not shared between threads
            request = local.request = compiled.create_infer_request()
        feeds = [
            t.detach().cpu().contiguous().numpy() for t in (images, image_sizes, scale_factors)
        ]
        result = request.infer(feeds)
        return tuple(torch.from_numpy(np.array(result[o], copy=True)) for o in outputs)

    run.compiled = compiled  # type: ignore[attr-defined]  (for inspection and tests)
    run.concurrent = False  # type: ignore[attr-defined]  (one stream: calls queue anyway)
    return run
