"""Reduced precision where it is safe: convolutions and fully connected layers only.

FP16 (CUDA) and BF16 (CPU) artifacts store the weights of every ``Conv2d``, ``ConvTranspose2d``
and ``Linear`` (backbone, neck, RPN and RoI heads) in the low dtype and feed the network a
low-precision image. Everything the model computes after an explicit ``.float()`` stays
float32: anchor generation, box decoding, sigmoid scores, NMS, score thresholds and the mask
probabilities (``cendetect.models.rpn`` / ``roi_heads``); RoIAlign pools in float32 as mmdet's
``force_fp32`` extractor does. Frozen BatchNorm keeps float32 statistics and casts them to the
feature dtype. The wrapper is plain tensor code, so TorchScript, ``torch.export``, AOTInductor
and TensorRT all see the same graph; no autocast region is needed at run time.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["DTYPES", "LowPrecision", "with_precision"]

#: precision name -> dtype of the convolution / linear weights
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

_LOW_PRECISION_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


class LowPrecision(nn.Module):
    """Runs ``model`` with its convolution/linear layers in ``dtype``.

    ``forward(images [B,3,H,W] float32, image_sizes [B,2] int64, scale_factors [B,4] float32)``
    returns the model's raw detections; boxes, scores and mask probabilities are float32.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        for module in self.model.modules():
            if isinstance(module, _LOW_PRECISION_LAYERS):
                module.to(dtype)
        self.half = dtype == torch.float16

    def forward(
        self, images: Tensor, image_sizes: Tensor, scale_factors: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        # A bool rather than a dtype attribute: TorchScript types module attributes strictly
        # (and has no Tensor.bfloat16()).
        x = images.to(torch.float16) if self.half else images.to(torch.bfloat16)
        return self.model(x, image_sizes, scale_factors)


def with_precision(model: nn.Module, precision: str) -> nn.Module:
    """``model`` itself for ``'fp32'``, else a :class:`LowPrecision` copy of it."""
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    if precision == "fp32":
        return model
    return LowPrecision(model, DTYPES[precision]).eval()
