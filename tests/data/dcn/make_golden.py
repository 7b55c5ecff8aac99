"""Makes golden.npz (mmcv 1.7.2 ``DeformConv2d``) and backbone_golden.npz (mmdet 2.28.2 R50-DCN).

Runs ONLY in the peer venv that has mmcv-full 1.7.2 (never in cendetect's own environment, which
must not import mmcv):

    PYTHONPATH=/work/peers/tvstub /work/peers/mmdet2/bin/python tests/data/dcn/make_golden.py

Each case ``k`` stores ``k/input``, ``k/offset``, ``k/weight`` (float32), ``k/params`` (int64:
stride h, w, padding h, w, dilation h, w, groups, deform_groups), mmcv's output ``k/out`` and,
for the cases with ``grad=True``, the gradients of ``(out * k/grad_out).sum()`` with respect to
input, offset and weight from mmcv's own backward kernels. Offsets are random with a few samples
placed far outside the image and a few exactly on integer positions.

backbone_golden.npz: mmdetection's ``ResNet`` built from the backbone of
``tests/data/mmdet/cascade_mask_rcnn_r50_fpn_dconv/config.py`` (DCN in c3-c5) with that fixture's
seeded weights (``tests/weights.py``, plain torch), run on ``torch.randn(1, 3, 96, 128)`` from
``torch.Generator().manual_seed(BACKBONE_SEED)``: ``input_sum`` (to check the input regenerates
identically), ``c5`` (the last stage's output) and ``mean_c2`` .. ``mean_c5`` (per-channel means of
each stage's output), and ``max_offset`` (the largest |offset| any DCN layer predicted).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from mmcv.ops import DeformConv2d
from mmcv.ops.deform_conv import DeformConv2dPack
from mmdet.models import build_backbone

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))
from tests.weights import rebuild_state_dict  # noqa: E402  (plain torch + numpy)

BACKBONE_SEED = 7

# (batch, channels, height, width, out_channels, kernel (h, w), stride, padding, dilation,
#  groups, deform_groups, grad)
CASES = [
    (2, 4, 9, 11, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, True),
    (1, 8, 10, 7, 4, (3, 3), (2, 1), (0, 2), (1, 2), 2, 2, True),
    (3, 6, 12, 13, 6, (2, 3), (2, 2), (1, 0), (2, 1), 3, 3, False),
    (2, 16, 17, 15, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1, False),
]


def main() -> None:
    g = torch.Generator().manual_seed(20240601)
    arrays: dict[str, np.ndarray] = {}
    for k, (b, c, h, w, co, ks, st, pad, dil, groups, dg, grad) in enumerate(CASES):
        conv = DeformConv2d(c, co, ks, st, pad, dil, groups, dg, bias=False)
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
        x = torch.randn(b, c, h, w, generator=g)
        ho = (h + 2 * pad[0] - dil[0] * (ks[0] - 1) - 1) // st[0] + 1
        wo = (w + 2 * pad[1] - dil[1] * (ks[1] - 1) - 1) // st[1] + 1
        off = torch.randn(b, dg * 2 * ks[0] * ks[1], ho, wo, generator=g) * 3
        far = torch.rand(off.shape, generator=g) < 0.05
        off[far] = off[far] * 20  # far outside the image
        whole = torch.rand(off.shape, generator=g) < 0.05
        off[whole] = off[whole].round()  # exactly on pixels
        x.requires_grad_(grad)
        off.requires_grad_(grad)
        out = conv(x, off)
        p = f"case{k}/"
        arrays[p + "input"] = x.detach().numpy()
        arrays[p + "offset"] = off.detach().numpy()
        arrays[p + "weight"] = conv.weight.detach().numpy()
        arrays[p + "params"] = np.array([*st, *pad, *dil, groups, dg], dtype=np.int64)
        arrays[p + "out"] = out.detach().numpy()
        if grad:
            grad_out = torch.randn(out.shape, generator=g)
            (out * grad_out).sum().backward()
            arrays[p + "grad_out"] = grad_out.numpy()
            arrays[p + "grad_input"] = x.grad.numpy()
            arrays[p + "grad_offset"] = off.grad.numpy()
            arrays[p + "grad_weight"] = conv.weight.grad.numpy()
    path = Path(__file__).with_name("golden.npz")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({len(CASES)} cases)")


def backbone() -> None:
    arch = REPO / "tests" / "data" / "mmdet" / "cascade_mask_rcnn_r50_fpn_dconv"
    namespace: dict = {}
    exec((arch / "config.py").read_text(), namespace)  # the fixture's plain-dict config text
    model = build_backbone(namespace["model"]["backbone"])
    weights = rebuild_state_dict(arch)
    prefix = "backbone."
    state = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
    model.load_state_dict(state, strict=True)
    model.eval()  # mmdet's ResNet.train() returns None, so not chained
    offsets = []

    def hook(mod: DeformConv2dPack, inputs: tuple, output: torch.Tensor) -> None:
        offsets.append(mod.conv_offset(inputs[0]).abs().max().item())

    for mod in model.modules():
        if isinstance(mod, DeformConv2dPack):
            mod.register_forward_hook(hook)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(BACKBONE_SEED))
    with torch.no_grad():
        outs = model(x)
    arrays = {
        "input_sum": np.array(x.double().sum().item()),
        "c5": outs[-1].numpy(),
        "max_offset": np.array(max(offsets)),
    }
    for i, out in enumerate(outs):
        arrays[f"mean_c{i + 2}"] = out.mean(dim=(0, 2, 3)).numpy()
    path = Path(__file__).with_name("backbone_golden.npz")
    np.savez_compressed(path, **arrays)
    print(f"wrote {path} ({len(offsets)} DCN layers, max |offset| {max(offsets):.1f})")


if __name__ == "__main__":
    main()
    backbone()
