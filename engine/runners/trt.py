"""Loading Torch-TensorRT artifacts (``.ep``: an exported program whose TensorRT subgraphs are
``torch.ops.tensorrt.execute_engine`` calls, made by ``cendetect-compile --engine trt``).

Untested here: torch_tensorrt needs a CUDA build of torch and TensorRT, neither of which this
project's machines have (docs/engines.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch

from cendetect.engine.runners.manifest import EngineError, require_engine_package

__all__ = ["load_trt"]


def load_trt(path: str | os.PathLike, device: torch.device) -> Callable[..., object]:
    """Load ``path`` with ``torch_tensorrt.load`` and return its module.

    ``torch_tensorrt`` must be imported before deserialising: it registers the
    ``tensorrt::execute_engine`` op the program calls; our own ops (NMS, RoIAlign, kept in
    torch) are registered by importing :mod:`cendetect.ops`.

    Raises:
        EngineError: torch_tensorrt missing (names the ``trt`` pip extra), or ``device`` is not
            a CUDA device (TensorRT engines run on NVIDIA GPUs only).
    """
    require_engine_package("trt")
    if device.type != "cuda":
        raise EngineError(
            f"engine {path}: TensorRT engines run on NVIDIA GPUs; load it with device='cuda'",
            path=path,
        )
    import torch_tensorrt

    import cendetect.engine.runners.export_ops  # noqa: F401  (torch.ops.cendetect_export.*)
    import cendetect.ops  # noqa: F401  (torch.ops.cendetect.*, executed in torch)

    with torch.cuda.device(device):
        program = torch_tensorrt.load(os.fspath(path))
    return program.module()
