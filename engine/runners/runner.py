"""``EngineRunner``: a loaded artifact behind the one call every engine answers.

It takes the shared pre-processing's :class:`~cendetect.engine.preprocess.Batch` and returns the
raw-detection contract (DESIGN.md), so :func:`~cendetect.engine.postprocess.to_detections`
serves every engine unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from cendetect.engine.postprocess import RawDetections
from cendetect.engine.preprocess import Batch
from cendetect.engine.runners.manifest import (
    EngineError,
    Manifest,
    check_compatible,
    read_manifest,
)

__all__ = ["EngineRunner", "load_engine"]


class EngineRunner:
    """A compiled program plus its manifest.

    Args:
        program: ``(images [B,3,H,W], image_sizes [B,2], scale_factors [B,4]) -> RawDetections``.
        manifest: what the program is (input sizes, precision, classes...).
        device: where its inputs must live.
        path: the artifact file, for messages.
    """

    def __init__(
        self,
        program: Callable[..., object],
        manifest: Manifest,
        device: torch.device,
        path: str | os.PathLike,
    ) -> None:
        self.program = program
        self.manifest = manifest
        self.device = device
        self.path = Path(path)

    @property
    def concurrent(self) -> bool:
        """Whether calls from several threads run side by side (False: one at a time)."""
        return bool(getattr(self.program, "concurrent", True))

    def __call__(self, batch: Batch) -> RawDetections:
        """Run a pre-processed batch; returns boxes in network-input pixels, as eager does."""
        batch = batch.to(self.device)
        spec = self.manifest.input
        if spec.any_size:  # TorchScript: any batch, any size, as eager
            return self._call(batch.images, batch.image_sizes, batch.scale_factors)
        # Exported programs are built for one image: run the images one by one, each cropped
        # to its own padded size (as if it had been pre-processed alone), then concatenate.
        outs: list[RawDetections] = []
        divisor = max(self.manifest.preprocess.size_divisor, 1)
        for i in range(batch.images.shape[0]):
            h, w = (int(v) for v in batch.image_sizes[i])
            ph, pw = -(-h // divisor) * divisor, -(-w // divisor) * divisor
            image = self._fit(batch.images[i : i + 1, :, :ph, :pw])
            boxes, scores, labels, masks, _ = self._call(
                image, batch.image_sizes[i : i + 1], batch.scale_factors[i : i + 1]
            )
            ids = torch.full_like(labels, i)
            outs.append((boxes, scores, labels, masks, ids))
        return tuple(torch.cat([o[k] for o in outs]) for k in range(5))  # type: ignore[return-value]

    def _call(self, images: Tensor, image_sizes: Tensor, scale_factors: Tensor) -> RawDetections:
        out = self.program(images, image_sizes, scale_factors)
        return tuple(out)  # type: ignore[return-value]

    def _fit(self, image: Tensor) -> Tensor:
        """Zero-pad ``[1, 3, h, w]`` up to the program's minimum size; refuse over its maximum.

        The padding is the same zeros the pre-processing pads with (normalised space), only more
        of it; it can move detections that touch the bottom/right image border by float noise.
        """
        spec = self.manifest.input
        h, w = image.shape[-2:]
        if h > spec.max[0] or w > spec.max[1]:
            raise EngineError(
                f"engine {self.path}: network input {h}x{w} exceeds the largest size it was built "
                f"for, {spec.max[0]}x{spec.max[1]}; rebuild it with a larger --max-size",
                path=self.path,
            )
        ph, pw = max(h, spec.min[0]), max(w, spec.min[1])
        if (ph, pw) != (h, w):
            image = F.pad(image, (0, pw - w, 0, ph - h))
        return image


def load_engine(
    path: str | os.PathLike,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> EngineRunner:
    """Load a ``cendetect-compile`` artifact after checking it may run here.

    Args:
        path: the artifact (``.ts`` TorchScript, ``.pt2`` AOTInductor, ``.onnx`` ONNX run by
            onnxruntime or by OpenVINO, as its manifest says, ``.ep`` Torch-TensorRT).
        device: where to run; default the device it was built for.
        checkpoint: verify the artifact against this checkpoint file (default: the checkpoint
            path recorded at build time, when that file still exists).

    Raises:
        EngineError: unknown engine, other torch version, CUDA engine without CUDA, checkpoint
            changed since the build: each with the command that rebuilds it; the engine's
            optional package (onnxruntime, torch_tensorrt) missing, naming the pip extra.
    """
    manifest = read_manifest(path)
    dev = torch.device(device if device is not None else manifest.device)
    check_compatible(manifest, path, dev, checkpoint)
    if manifest.engine == "torchscript":
        from cendetect.engine.runners.torchscript import load_torchscript

        program: Callable[..., object] = load_torchscript(path, dev)
    elif manifest.engine == "onnx":
        from cendetect.engine.runners.onnx import load_onnx

        program = load_onnx(path, dev)
    elif manifest.engine == "openvino":
        from cendetect.engine.runners.openvino import load_openvino

        program = load_openvino(path, dev, manifest.precision)
    elif manifest.engine == "trt":
        from cendetect.engine.runners.trt import load_trt

        program = load_trt(path, dev)
    else:  # "aoti": check_compatible refused every other kind
        from cendetect.engine.runners.aoti import load_aoti

        program = load_aoti(path, dev)
    return EngineRunner(program, manifest, dev, path)
