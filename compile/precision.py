"""Reduced precision where it is safe: convolutions and fully connected layers only.

FP16 (CUDA) and BF16 (CPU) artifacts store the weights of every ``Conv2d``, ``ConvTranspose2d``
and ``Linear`` (backbone, neck, RPN and RoI heads) in the low dtype and feed the network a
low-precision image. Everything the model computes after an explicit ``.float()`` stays
float32: anchor generation, box decoding, sigmoid scores, NMS, score thresholds and the mask
probabilities (``cendetect.models.rpn`` / ``roi_heads``); RoIAlign pools in float32 as mmdet's
``force_fp32`` extractor does. The wrapper is plain tensor code, so TorchScript,
``torch.export``, AOTInductor and TensorRT all see the same graph; no autocast region is needed
at run time.

Two inference-only rewrites come with the low dtype (fp32 models are left as they are, so that
they stay bit-identical to mmdetection, unless a channels-last fp32 engine is asked for):

- Frozen BatchNorm that directly follows a plain convolution is folded into it, in float64,
  then rounded once to the engine dtype: ``w' = w * g / sqrt(v + eps)``,
  ``b' = b - m * g / sqrt(v + eps)`` (:func:`fold_frozen_batchnorm`). One rounding of the
  convolution's output fewer, and one memory pass per layer fewer. Other Frozen BatchNorms keep
  float32 statistics.
- bf16 models run channels-last (NHWC memory): oneDNN's bf16 convolutions are fastest there
  and the CPU RoIAlign kernel reads channels-last features in place. For export engines the
  mask heads keep NCHW weights (``nchw_mask_heads``): AOTInductor (torch 2.13) miscompiles
  channels-last convolutions whose batch is the data-dependent number of detections (boxes
  exact, mask logits wrong; docs/engines.md, "Workarounds").
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from cendetect.models.layers import FrozenBatchNorm2d
from cendetect.models.mobilenet_v2 import ConvBNAct
from cendetect.models.resnet import Bottleneck, ResNet

__all__ = [
    "DTYPES",
    "LowPrecision",
    "fold_frozen_batchnorm",
    "mask_heads",
    "with_precision",
]

#: precision name -> dtype of the convolution / linear weights
DTYPES: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
}

_LOW_PRECISION_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


# Modules whose forward applies ``bnX`` directly to ``convX``'s output (and nothing in between):
# only there may the pair be folded. nn.Sequential (ResNet's downsample) pairs neighbours.
_CONV_BN_PARENTS = (Bottleneck, ResNet, ConvBNAct)


def _fold_into(conv: nn.Conv2d, bn: FrozenBatchNorm2d) -> None:
    w = conv.weight.detach().to(torch.float64)
    scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
    shift = bn.bias.detach().double() - bn.running_mean.double() * scale
    if conv.bias is not None:
        shift = shift + conv.bias.detach().double() * scale
    dtype = conv.weight.dtype
    conv.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(dtype), requires_grad=False)
    conv.bias = nn.Parameter(shift.to(dtype), requires_grad=False)


def fold_frozen_batchnorm(model: nn.Module) -> int:
    """Folds every Frozen BatchNorm that directly follows a plain ``nn.Conv2d`` into it.

    In place, for inference only: the BatchNorm becomes ``nn.Identity``. Pairs are ``convN`` /
    ``bnN`` (and ``conv`` / ``bn``) children of ResNet, its Bottleneck and MobileNetV2's
    ConvBNAct, and neighbours in an ``nn.Sequential``. Deformable convolutions are left alone.
    Returns how many pairs were folded.
    """
    folded = 0
    for parent in list(model.modules()):
        if isinstance(parent, nn.Sequential):
            order = [name for name, _ in parent.named_children()]
            names = list(zip(order, order[1:], strict=False))
        elif isinstance(parent, _CONV_BN_PARENTS):
            names = [
                ("conv" + name[2:], name)
                for name, child in parent.named_children()
                if name.startswith("bn") and isinstance(child, FrozenBatchNorm2d)
            ]
        else:
            continue
        for conv_name, bn_name in names:
            conv, bn = getattr(parent, conv_name, None), getattr(parent, bn_name, None)
            if type(conv) is nn.Conv2d and isinstance(bn, FrozenBatchNorm2d):
                _fold_into(conv, bn)
                setattr(parent, bn_name, nn.Identity())
                folded += 1
    return folded


class LowPrecision(nn.Module):
    """Runs ``model`` with its convolution/linear layers in ``dtype``.

    ``forward(images [B,3,H,W] float32, image_sizes [B,2] int64, scale_factors [B,4] float32)``
    returns the model's raw detections; boxes, scores and mask probabilities are float32.
    """

    def __init__(
        self,
        model: nn.Module,
        dtype: torch.dtype,
        channels_last: bool | None = None,
        fold_batchnorm: bool = True,
        nchw_mask_heads: bool = False,
    ) -> None:
        super().__init__()
        self.model = copy.deepcopy(model)
        if fold_batchnorm:
            fold_frozen_batchnorm(self.model)
        for module in self.model.modules():
            if isinstance(module, _LOW_PRECISION_LAYERS):
                module.to(dtype)
        self.half = dtype == torch.float16
        self.full = dtype == torch.float32  # the fp32 channels-last variant: no cast
        # bf16 (CPU) runs channels-last: oneDNN's bf16 convolutions need no reorders then, and
        # the CPU RoIAlign kernel reads channels-last features in place.
        self.channels_last = dtype == torch.bfloat16 if channels_last is None else channels_last
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
            if nchw_mask_heads:
                for head in mask_heads(self.model):
                    head.to(memory_format=torch.contiguous_format)

    def forward(
        self, images: Tensor, image_sizes: Tensor, scale_factors: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        # A bool rather than a dtype attribute: TorchScript types module attributes strictly
        # (and has no Tensor.bfloat16()).
        if self.full:
            x = images
        elif self.half:
            x = images.to(torch.float16)
        else:
            x = images.to(torch.bfloat16)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x, image_sizes, scale_factors)


def mask_heads(model: nn.Module) -> list[nn.Module]:
    """Every mask head of ``model``: the ``mask_head`` child of any submodule (Mask R-CNN's and
    PointRend's RoI head; the cascade's is a ``ModuleList`` of one head per stage). Their
    convolutions run on the RoI batch, whose size is the data-dependent number of detections."""
    return [
        m.mask_head for m in model.modules() if isinstance(getattr(m, "mask_head", None), nn.Module)
    ]


def with_precision(
    model: nn.Module,
    precision: str,
    channels_last: bool | None = None,
    nchw_mask_heads: bool = False,
) -> nn.Module:
    """The model an engine of ``precision`` is built from.

    ``'fp32'``: ``model`` itself (bit-equal to eager), or with ``channels_last=True`` a
    :class:`LowPrecision` float32 copy with folded BatchNorm in channels-last memory (faster on
    CPUs, equal to eager only up to float rounding). ``'fp16'`` / ``'bf16'``: a
    :class:`LowPrecision` copy; ``channels_last`` None runs bf16 channels-last and fp16 NCHW.
    ``nchw_mask_heads``: with channels-last, keep the mask heads' weights NCHW (what AOTInductor
    builds need, see the module docstring).
    """
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    if precision == "fp32" and not channels_last:
        return model
    low = LowPrecision(
        model, DTYPES[precision], channels_last=channels_last, nchw_mask_heads=nchw_mask_heads
    )
    return low.eval()
