"""Reduced precision where it is safe: convolutions and fully connected layers only.

FP16 (CUDA) and BF16 (CPU) artifacts store the weights of every ``Conv2d``, ``ConvTranspose2d``
and ``Linear`` (backbone, neck, RPN and RoI heads) in the low dtype, except the backbone's
first stages up to ``fp32_stride`` (default 2: the stem), which keep float32 weights and read
the float32 image: on the trained default model, rounding the image and those high-resolution
layers cost most of the agreement with fp32 (mean mask IoU over 304 images 0.956 all-bf16,
0.985 with the stem float32; docs/engines.md). Everything the model computes after an
explicit ``.float()`` stays float32: anchor generation, box decoding, sigmoid scores, NMS,
score thresholds and the mask probabilities (``cendetect.models.rpn`` / ``roi_heads``);
RoIAlign pools in float32 as mmdet's ``force_fp32`` extractor does. The wrapper is plain
tensor code, so TorchScript, ``torch.export``, AOTInductor and TensorRT all see the same
graph; no autocast region is needed at run time.

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
from cendetect.models.mobilenet_v2 import ARCH_SETTINGS, ConvBNAct, MobileNetV2
from cendetect.models.resnet import Bottleneck, ResNet

__all__ = [
    "DEFAULT_FP32_STRIDE",
    "DTYPES",
    "LowPrecision",
    "backbone_stages",
    "fold_frozen_batchnorm",
    "mask_heads",
    "with_precision",
]

#: fp16/bf16 engines keep the image and the backbone layers up to this output stride in float32
#: (the stem: ResNet's ``conv1``, MobileNetV2's ``conv1`` and ``layer1``). Rounding their
#: weights and activations costs the most agreement with fp32 per FLOP (docs/engines.md,
#: "Precision"); 0 puts every convolution in the low dtype.
DEFAULT_FP32_STRIDE = 2

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


def backbone_stages(backbone: nn.Module) -> list[tuple[str, int]]:
    """The weighted stages of ``backbone`` in forward order: ``(attribute name, output stride)``.

    ResNet: ``conv1`` (2; its BatchNorm, ReLU and the stride-4 max-pool follow), ``layer1..4``
    (4, 8, 16, 32). MobileNetV2: ``conv1`` (2), ``layer1..7`` (2, 4, 8, 16, 16, 32, 32),
    ``conv2`` (32). Other backbones: ``[]`` (no float32 stages possible).
    """
    if isinstance(backbone, MobileNetV2):
        stride, stages = 2, [("conv1", 2)]
        for i, (_, _, _, s) in enumerate(ARCH_SETTINGS, start=1):
            stride *= s
            stages.append((f"layer{i}", stride))
        return stages + [("conv2", stride)]
    if isinstance(backbone, ResNet):
        return [("conv1", 2), ("layer1", 4), ("layer2", 8), ("layer3", 16), ("layer4", 32)]
    return []


def _backbone_outputs(backbone: nn.Module) -> set[str]:
    """Names of the stages whose outputs the backbone returns (the neck's inputs)."""
    indices = getattr(backbone, "out_indices", [])
    names = [name for name, _ in backbone_stages(backbone)]
    # out_indices count the stages after the stem (ResNet layer1.., MobileNetV2 layer1..conv2)
    return {names[i + 1] for i in indices if i + 1 < len(names)}


class _CastInput(nn.Module):
    """Runs ``module`` on its input cast to the engine's low dtype: where float32 stages end."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.half = dtype == torch.float16  # a bool: TorchScript has no dtype attributes

    def forward(self, x: Tensor) -> Tensor:
        return self.module(x.to(torch.float16) if self.half else x.to(torch.bfloat16))


class _CastInputs(nn.Module):
    """``_CastInput`` for a module taking a list of feature maps (the FPN neck)."""

    def __init__(self, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.half = dtype == torch.float16

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        if self.half:
            return self.module([x.to(torch.float16) for x in xs])
        return self.module([x.to(torch.bfloat16) for x in xs])


class LowPrecision(nn.Module):
    """Runs ``model`` with its convolution/linear layers in ``dtype``.

    ``forward(images [B,3,H,W] float32, image_sizes [B,2] int64, scale_factors [B,4] float32)``
    returns the model's raw detections; boxes, scores and mask probabilities are float32.

    ``fp32_stride`` > 0 keeps the backbone stages whose output stride is at most that
    (:func:`backbone_stages`) in float32 with their float32 weights, feeds them the float32
    image, and casts their output to ``dtype`` where the next stage or the neck reads it.
    """

    # ``fp32_stages``: backbone stages kept float32 (attribute names of ``model.backbone``);
    # Python-side information, not part of the scripted program
    __jit_ignored_attributes__ = ["fp32_stages"]

    def __init__(
        self,
        model: nn.Module,
        dtype: torch.dtype,
        channels_last: bool | None = None,
        fold_batchnorm: bool = True,
        nchw_mask_heads: bool = False,
        fp32_stride: int = 0,
    ) -> None:
        super().__init__()
        if fp32_stride < 0:
            raise ValueError(f"fp32_stride must be >= 0, got {fp32_stride}")
        self.model = copy.deepcopy(model)
        if fold_batchnorm:
            fold_frozen_batchnorm(self.model)
        self.full = dtype == torch.float32  # the fp32 channels-last variant: no cast
        backbone = getattr(self.model, "backbone", None)
        stages = backbone_stages(backbone) if backbone is not None and not self.full else []
        kept = [name for name, stride in stages if stride <= fp32_stride]
        self.fp32_stages = kept
        skip = {id(m) for name in kept for m in getattr(backbone, name).modules()}
        for module in self.model.modules():
            if isinstance(module, _LOW_PRECISION_LAYERS) and id(module) not in skip:
                module.to(dtype)
        if kept:
            assert backbone is not None
            if len(kept) < len(stages):
                first_low = stages[len(kept)][0]
                setattr(backbone, first_low, _CastInput(getattr(backbone, first_low), dtype))
            if _backbone_outputs(backbone) & set(kept):
                self.model.neck = _CastInputs(self.model.neck, dtype)
        self.half = dtype == torch.float16
        self.fp32_input = bool(kept)  # the stem is float32: the image is not rounded
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
        if self.full or self.fp32_input:
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
    fp32_stride: int | None = None,
) -> nn.Module:
    """The model an engine of ``precision`` is built from.

    ``'fp32'``: ``model`` itself (bit-equal to eager), or with ``channels_last=True`` a
    :class:`LowPrecision` float32 copy with folded BatchNorm in channels-last memory (faster on
    CPUs, equal to eager only up to float rounding). ``'fp16'`` / ``'bf16'``: a
    :class:`LowPrecision` copy; ``channels_last`` None runs bf16 channels-last and fp16 NCHW.
    ``nchw_mask_heads``: with channels-last, keep the mask heads' weights NCHW (what AOTInductor
    builds need, see the module docstring). ``fp32_stride``: fp16/bf16 keep the image and the
    backbone stages up to this output stride float32 (None: :data:`DEFAULT_FP32_STRIDE`; 0: none).
    """
    if precision not in DTYPES:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(DTYPES)}")
    if precision == "fp32" and not channels_last:
        return model
    stride = DEFAULT_FP32_STRIDE if fp32_stride is None else fp32_stride
    low = LowPrecision(
        model,
        DTYPES[precision],
        channels_last=channels_last,
        nchw_mask_heads=nchw_mask_heads,
        fp32_stride=stride if precision != "fp32" else 0,
    )
    return low.eval()
