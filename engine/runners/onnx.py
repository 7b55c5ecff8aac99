"""ONNX artifacts at run time: the manifest in ``metadata_props``, and an onnxruntime session.

The manifest is read by scanning the top-level fields of the ``ModelProto`` protobuf (the graph
and its weights are skipped by length, never parsed), so neither ``onnx`` nor ``onnxruntime``
is needed to refuse an artifact, and a 180 MB model is not read into memory for it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import BinaryIO

import torch
from torch import Tensor

from cendetect.engine.runners.manifest import EngineError, require_engine_package

__all__ = ["ORT_OPTIMIZATION", "load_onnx", "read_onnx_metadata"]

#: onnxruntime graph optimisation level of cendetect sessions: ``'basic'`` (constant folding,
#: redundant node removal). ``'all'`` adds the NCHWc layout and fused convolution kernels, whose
#: different float summation order, amplified by the random-weight R50 fixture, moves 2 of 100
#: detections of one fixture image past the IoU 0.99 match (tests/compile/test_onnx_engine.py);
#: ``'basic'`` matches eager on all four.
ORT_OPTIMIZATION = "basic"
_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "all": "ORT_ENABLE_ALL"}
#: ModelProto.metadata_props and StringStringEntryProto.{key, value} (onnx.proto)
_METADATA_FIELD, _KEY_FIELD, _VALUE_FIELD = 14, 1, 2


def _varint(fh: BinaryIO) -> int | None:
    shift = result = 0
    while True:
        byte = fh.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if byte[0] < 0x80:
            return result
        shift += 7
        if shift > 63:
            return None


def _fields(fh: BinaryIO, end: int) -> list[tuple[int, bytes]] | None:
    """Length-delimited fields of one small message (a metadata entry), or None if malformed."""
    out = []
    while fh.tell() < end:
        tag = _varint(fh)
        if tag is None or tag & 7 != 2:
            return None
        size = _varint(fh)
        if size is None or fh.tell() + size > end:
            return None
        out.append((tag >> 3, fh.read(size)))
    return out


def read_onnx_metadata(path: str | os.PathLike, key: str) -> str | None:
    """The value of ``metadata_props[key]`` of an ONNX model file, or None.

    None also when the file is not a well-formed protobuf message (not an ONNX model).
    """
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        while fh.tell() < size:
            tag = _varint(fh)
            if tag is None:
                return None
            field, wire = tag >> 3, tag & 7
            if wire == 0:
                if _varint(fh) is None:
                    return None
            elif wire == 1:
                fh.seek(8, os.SEEK_CUR)
            elif wire == 5:
                fh.seek(4, os.SEEK_CUR)
            elif wire == 2:
                length = _varint(fh)
                if length is None or fh.tell() + length > size:
                    return None
                if field != _METADATA_FIELD:
                    fh.seek(length, os.SEEK_CUR)
                    continue
                entry = _fields(fh, fh.tell() + length)
                if entry is None:
                    return None
                d = dict(entry)
                if d.get(_KEY_FIELD, b"").decode("utf-8", "replace") == key:
                    return d.get(_VALUE_FIELD, b"").decode("utf-8")
            else:
                return None
    return None


def load_onnx(
    path: str | os.PathLike, device: torch.device, optimization: str = ORT_OPTIMIZATION
) -> Callable[..., tuple[Tensor, ...]]:
    """An onnxruntime session of ``path`` as ``(images, image_sizes, scale_factors) -> outputs``.

    CPU: ``CPUExecutionProvider``. CUDA: ``CUDAExecutionProvider`` (the ``onnxruntime-gpu``
    build), refused when this onnxruntime lacks it. Inputs go through host memory (numpy);
    outputs come back as tensors on ``device``.

    Args:
        path: a ``.onnx`` made by ``cendetect-compile --engine onnx``.
        device: ``cpu`` or ``cuda``.
        optimization: ``'basic'`` (default, see :data:`ORT_OPTIMIZATION`), ``'all'`` or
            ``'disable'``: onnxruntime's graph optimisation level.

    Raises:
        EngineError: onnxruntime missing (names the pip extra), or no CUDA provider.
    """
    require_engine_package("onnx", ("onnxruntime",))
    import onnxruntime as ort

    if optimization not in _LEVELS:
        raise EngineError(f"optimization {optimization!r}: choose one of {', '.join(_LEVELS)}")
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError(
                f"engine {path}: this onnxruntime has no CUDAExecutionProvider (providers: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu or load "
                "it with device='cpu'",
                path=path,
            )
        providers: list[object] = [
            ("CUDAExecutionProvider", {"device_id": device.index or 0}),
            "CPUExecutionProvider",
        ]
    else:
        providers = ["CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[optimization])
    options.log_severity_level = 3  # errors only: shape-inference notes are not for users
    session = ort.InferenceSession(os.fspath(path), options, providers=providers)
    names = [i.name for i in session.get_inputs()]

    def run(images: Tensor, image_sizes: Tensor, scale_factors: Tensor) -> tuple[Tensor, ...]:
        feeds = {
            n: t.detach().cpu().contiguous().numpy()
            for n, t in zip(names, (images, image_sizes, scale_factors))
        }
        return tuple(torch.from_numpy(o).to(device) for o in session.run(None, feeds))

    run.session = session  # type: ignore[attr-defined]  (for inspection and tests)
    return run
