"""Small building blocks shared by the architectures.

Parameter and buffer names follow mmcv/mmdetection so that their state dicts load with
``strict=True``: a ``ConvModule`` without a norm layer stores its convolution as ``.conv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d whose statistics never update (mmdet ``norm_eval=True``).

    The affine ``weight``/``bias`` stay parameters (trainable unless the stage is frozen); the
    running statistics are buffers that are only read. Keeps ``num_batches_tracked`` so the state
    dict has exactly mmdetection's keys. Evaluation is ``F.batch_norm(training=False)``, the very
    kernel mmdetection's eval-mode BatchNorm runs: a hand-written ``x * scale + shift`` differs
    in the last bit, and through ResNet-101 that moved thin masks by a pixel (parity tests).

    ``affine_form`` (set for maskrcnn-benchmark imports, ``models/conventions.py``) evaluates
    exactly that hand-written form instead, as maskrcnn-benchmark's ``FrozenBatchNorm2d`` does:
    ``scale = weight * running_var.rsqrt()``, ``shift = bias - running_mean * scale``,
    ``x * scale + shift`` (a multiply and an add, each rounded; no epsilon). Against its
    fixture that halves the median score difference (docs/checkpoints.md).
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.affine_form = False
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: Tensor) -> Tensor:
        if self.affine_form:
            scale = self.weight.to(x.dtype) * (self.running_var.to(x.dtype) + self.eps).rsqrt()
            shift = self.bias.to(x.dtype) - self.running_mean.to(x.dtype) * scale
            return x * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1)
        return F.batch_norm(
            x,
            self.running_mean.to(x.dtype),
            self.running_var.to(x.dtype),
            self.weight.to(x.dtype),
            self.bias.to(x.dtype),
            False,
            0.0,
            self.eps,
        )

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"


class ConvModule(nn.Module):
    """Convolution (+ optional ReLU) stored under ``.conv``, as mmcv's ``ConvModule`` names it."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        relu: bool = True,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=True)
        self.relu = relu

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.relu:
            x = torch.relu(x)
        return x


def first_k(x: Tensor, k: int) -> Tensor:
    """``x[:k]`` without a shape guard under ``torch.export``.

    Plain slicing makes the exporter decide ``len(x) < k`` for the example input and bake that
    into the program, which then refuses larger images; ``torch.sym_min`` keeps it symbolic.
    TorchScript has no ``sym_min`` and takes the plain branch.
    """
    if torch.jit.is_scripting():
        return x[: min(x.shape[0], k)]
    return x[: torch.sym_min(x.shape[0], k)]
