"""``torch.ops.cendetect.deform_conv2d`` (DCNv1) against references, mmcv's golden outputs and in
TorchScript / torch.export / AOTInductor; the DCN layer and the ResNet DCN build."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import cendetect.ops
from cendetect.config_text import ConfigError, parse_config_text
from cendetect.models.build import build_backbone
from cendetect.models.dcn import DCNConfig, DeformConv2dPack
from cendetect.models.resnet import ResNet
from cendetect.ops import _extension, deform_conv_op
from cendetect.ops.deform_conv_op import deform_conv2d_torch
from tests.ops.reference import reorder_bound
from tests.tolerances import reorder_tol

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")

DATA = Path(__file__).parent.parent / "data"

# (batch, channels, height, width, out_channels, kernel, stride, padding, dilation, groups,
#  deform_groups)
CONFIGS = [
    (2, 4, 7, 9, 6, (3, 3), (1, 1), (1, 1), (1, 1), 1, 1),
    (1, 4, 8, 6, 4, (3, 3), (2, 2), (1, 1), (1, 1), 2, 2),
    (2, 6, 9, 8, 4, (3, 2), (1, 2), (0, 2), (2, 1), 2, 3),
    (1, 2, 5, 5, 2, (1, 1), (1, 1), (0, 0), (1, 1), 1, 2),
    (3, 4, 6, 7, 8, (3, 3), (2, 1), (2, 0), (1, 2), 4, 1),
]


def _out_size(h: int, w: int, k: tuple, s: tuple, p: tuple, d: tuple) -> tuple[int, int]:
    return (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1, (
        w + 2 * p[1] - d[1] * (k[1] - 1) - 1
    ) // s[1] + 1


def make_inputs(
    cfg: tuple,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    spread: float = 3,
    on_pixels: float = 0.05,
):
    """Random input, offsets (5% far outside the image, ``on_pixels`` on whole pixels), weight."""
    b, c, h, w, co, k, s, p, d, groups, dg = cfg
    g = torch.Generator().manual_seed(seed)
    ho, wo = _out_size(h, w, k, s, p, d)
    x = torch.randn(b, c, h, w, generator=g, dtype=torch.float64)
    off = torch.randn(b, dg * 2 * k[0] * k[1], ho, wo, generator=g, dtype=torch.float64) * spread
    far = torch.rand(off.shape, generator=g) < 0.05
    off[far] *= 30
    whole = torch.rand(off.shape, generator=g) < on_pixels
    off[whole] = off[whole].round()
    weight = torch.randn(co, c // groups, *k, generator=g, dtype=torch.float64)
    args = ([*s], [*p], [*d], groups, dg)
    return x.to(dtype), off.to(dtype), weight.to(dtype), args


def naive_deform_conv2d(
    x: Tensor, off: Tensor, weight: Tensor, stride, padding, dilation, groups, dg
) -> Tensor:
    """Loops straight from mmcv's rule, in float64 (independent of both implementations)."""
    xs, os_, ws = x.double().numpy(), off.double().numpy(), weight.double().numpy()
    b, c, h, w = xs.shape
    co, cg, kh, kw = ws.shape
    ho, wo = os_.shape[2:]

    def pixel(plane: np.ndarray, yy: int, xx: int) -> float:
        return float(plane[yy, xx]) if 0 <= yy < h and 0 <= xx < w else 0.0

    def sample(plane: np.ndarray, y: float, x_: float) -> float:
        if not (-1 < y < h and -1 < x_ < w):
            return 0.0
        y0, x0 = math.floor(y), math.floor(x_)
        ly, lx = y - y0, x_ - x0
        return (
            (1 - ly) * (1 - lx) * pixel(plane, y0, x0)
            + (1 - ly) * lx * pixel(plane, y0, x0 + 1)
            + ly * (1 - lx) * pixel(plane, y0 + 1, x0)
            + ly * lx * pixel(plane, y0 + 1, x0 + 1)
        )

    cols = np.zeros((b, c, kh, kw, ho, wo))
    for n in range(b):
        for ch in range(c):
            grp = ch // (c // dg)
            for i in range(kh):
                for j in range(kw):
                    t = grp * 2 * kh * kw + 2 * (i * kw + j)
                    for oy in range(ho):
                        for ox in range(wo):
                            y = oy * stride[0] - padding[0] + i * dilation[0] + os_[n, t, oy, ox]
                            xx = ox * stride[1] - padding[1] + j * dilation[1]
                            xx = xx + os_[n, t + 1, oy, ox]
                            cols[n, ch, i, j, oy, ox] = sample(xs[n, ch], y, xx)
    out = np.zeros((b, co, ho, wo))
    per_group = co // groups
    for o in range(co):
        grp = o // per_group
        block = cols[:, grp * cg : (grp + 1) * cg]
        out[:, o] = np.einsum("bcijyx,cij->byx", block, ws[o])
    return torch.from_numpy(out)


def _op(x: Tensor, off: Tensor, weight: Tensor, args: tuple) -> Tensor:
    return cendetect.ops.deform_conv2d(x, off, weight, *args)


def _depth(weight: Tensor) -> int:
    """Terms of one output's sum: in_channels / groups * kh * kw."""
    return weight.shape[1] * weight.shape[2] * weight.shape[3]


def _reorder(weight: Tensor, out: Tensor, layers: int = 1) -> float:
    """Two orders of this convolution's sums (its GEMM vs another's), in ``out``'s dtype."""
    return reorder_bound(out.dtype, _depth(weight), float(out.abs().max()), layers)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_matches_naive_loops(cfg: tuple) -> None:
    x, off, weight, args = make_inputs(cfg, torch.float64)
    expected = naive_deform_conv2d(x, off, weight, *args)
    # float64 GEMMs and einsum sum in different orders
    tol = _reorder(weight, expected)
    torch.testing.assert_close(_op(x, off, weight, args), expected, rtol=0, atol=tol)
    torch.testing.assert_close(
        deform_conv2d_torch(x, off, weight, *args), expected, rtol=0, atol=tol
    )
    x32, off32, w32 = x.float(), off.float(), weight.float()
    got = _op(x32, off32, w32, args)
    assert got.dtype == torch.float32
    # float32 arithmetic against float64 on the same (rounded) inputs: two stacked float32
    # stages, the bilinear samples (positions, 4 taps) and the convolution's sum
    expected = naive_deform_conv2d(x32, off32, w32, *args)
    tol = reorder_tol(_depth(weight), float(expected.abs().max()), layers=2)
    torch.testing.assert_close(got.double(), expected, rtol=0, atol=tol)


@pytest.mark.parametrize("cfg", CONFIGS)
def test_samples_equal_torch_reference_bit_for_bit(cfg: tuple) -> None:
    # One-hot weights make every output channel one column of the im2col buffer, so the kernel's
    # bilinear samples are compared exactly with the pure-torch reference's (mmcv's rounding).
    b, c, h, w, _, k, s, p, d, _, dg = cfg
    cfg = (b, c, h, w, c * k[0] * k[1], k, s, p, d, 1, dg)
    x, off, _, args = make_inputs(cfg, torch.float32, seed=1)
    eye = torch.eye(c * k[0] * k[1]).reshape(-1, c, *k)
    got = _op(x, off, eye, args)
    assert torch.equal(got, deform_conv2d_torch(x, off, eye, *args))
    assert (got == 0).float().mean() < 0.9  # offsets do not throw everything outside


@pytest.mark.parametrize("cfg", CONFIGS)
def test_float32_matches_torch_reference(cfg: tuple) -> None:
    x, off, weight, args = make_inputs(cfg, torch.float32, seed=2)
    got = _op(x, off, weight, args)
    # equal columns (above); the GEMMs may block differently (oneMKL: by shape and alignment)
    want = deform_conv2d_torch(x, off, weight, *args)
    torch.testing.assert_close(got, want, rtol=0, atol=_reorder(weight, want))


def test_zero_offsets_give_plain_convolution() -> None:
    for cfg in CONFIGS:
        for dtype in (torch.float64, torch.float32):
            x, off, weight, args = make_inputs(cfg, dtype)
            s, p, d, groups, _ = args
            expected = F.conv2d(x, weight, None, s, p, d, groups)
            got = _op(x, torch.zeros_like(off), weight, args)
            # whole-pixel samples are exact; oneDNN's convolution sums in its own order
            torch.testing.assert_close(got, expected, rtol=0, atol=_reorder(weight, expected))


def test_whole_pixel_offsets_shift_the_input() -> None:
    # Every tap moved by (dy, dx) = (+1, -2) pixels: a plain convolution (no padding) of the
    # input padded so that padded[Y, X] = input[Y - ph + 1, X - pw - 2], zeros outside.
    x, off, weight, args = make_inputs(CONFIGS[0], torch.float64)
    shift = torch.zeros_like(off)
    shift[:, 0::2], shift[:, 1::2] = 1.0, -2.0
    ph, pw = args[1]
    shifted = F.pad(x, (pw + 2, pw - 2, ph - 1, ph + 1))
    expected = F.conv2d(shifted, weight, None, args[0], 0, args[2], args[3])
    got = _op(x, shift, weight, args)  # exact samples; oneDNN sums in its own order
    torch.testing.assert_close(got, expected, rtol=0, atol=_reorder(weight, expected))


def test_non_contiguous_inputs() -> None:
    x, off, weight, args = make_inputs(CONFIGS[2], torch.float32, seed=3)
    expected = _op(x, off, weight, args)
    x_nc = x.transpose(2, 3).contiguous().transpose(2, 3)
    off_nc = torch.zeros(*off.shape[:3], 2 * off.shape[3])[:, :, :, ::2]
    off_nc.copy_(off)
    w_nc = weight.permute(1, 0, 2, 3).contiguous().permute(1, 0, 2, 3)
    assert not (x_nc.is_contiguous() or off_nc.is_contiguous() or w_nc.is_contiguous())
    # the op copies its inputs to contiguous buffers: the same values through the same kernels
    assert torch.equal(_op(x_nc, off_nc, w_nc, args), expected)


def test_empty_batch_and_channels() -> None:
    x, off, weight, args = make_inputs(CONFIGS[1])
    out = _op(x[:0], off[:0], weight, args)
    assert out.shape == (0, 4, 4, 3)
    out = _op(x, off, weight[:0], args)
    assert out.shape == (1, 0, 4, 3)


def test_half_precision_is_computed_in_float32() -> None:
    x, off, weight, args = make_inputs(CONFIGS[0], torch.float32, spread=1)
    for dtype in (torch.float16, torch.bfloat16):
        xh, oh, wh = x.to(dtype), off.to(dtype), weight.to(dtype)
        got = _op(xh, oh, wh, args)
        assert got.dtype == dtype
        # widened exactly, computed by the same float32 kernels, rounded once: exact
        expected = _op(xh.float(), oh.float(), wh.float(), args).to(dtype)
        assert torch.equal(got, expected)


def test_images_and_row_bands_are_chunked_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    x, off, weight, args = make_inputs((3, 4, 13, 11, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1, 2))
    whole = _op(x, off, weight, args)
    per_image = 4 * 9 * 13 * 11
    # equal columns; oneMKL blocks GEMMs of other widths differently (sums of 4 x 3 x 3 terms)
    tol = _reorder(weight, whole)
    for budget in (2 * per_image, per_image - 1, 4 * 9 * 11 * 3, 1):  # images, then row bands
        monkeypatch.setattr(deform_conv_op, "_MAX_COLUMN_ELEMENTS", budget)
        torch.testing.assert_close(_op(x, off, weight, args), whole, rtol=0, atol=tol)


def test_device_path_falls_back_to_torch() -> None:
    # Without torchvision (this machine), other devices run deform_conv2d_torch; run that path on
    # CPU tensors to check its plumbing (dtype handling, argument order).
    x, off, weight, args = make_inputs(CONFIGS[2], torch.float16, spread=1)
    s, p, d, groups, dg = args
    got = deform_conv_op._deform_conv2d_device(x, off, weight, s, p, d, groups, dg)
    assert got.dtype == torch.float16
    # both compute in float32 (GEMMs blocked alike or not) and round once to float16: one
    # float16 ulp (2**-10 of the value) beyond their float32 difference
    want = _op(x, off, weight, args)
    tol = reorder_tol(_depth(weight), float(want.abs().max()))
    torch.testing.assert_close(got, want, rtol=2.0**-10, atol=tol)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"offset": (1, 18, 4, 3)}, r"offset must have shape"),
        ({"weight": (6, 3, 3, 3)}, r"expects 6 input channels, but input has 4"),
        ({"groups": 4}, r"groups=4 must be >= 1 and divide"),
        ({"deform_groups": 3}, r"deform_groups=3"),
        ({"stride": [0, 1]}, r"stride must be two ints >= 1"),
        ({"input": (1, 4, 1, 1), "padding": [0, 0]}, r"too small"),
    ],
)
def test_errors_say_what_is_wrong(change: dict, message: str) -> None:
    kwargs = {
        "input": torch.zeros(1, 4, 8, 6),
        "offset": torch.zeros(1, 36, 8, 6),
        "weight": torch.zeros(6, 2, 3, 3),
        "stride": [1, 1],
        "padding": [1, 1],
        "dilation": [1, 1],
        "groups": 2,
        "deform_groups": 2,
    }
    for key, value in change.items():
        kwargs[key] = torch.zeros(value) if isinstance(value, tuple) else value
    with pytest.raises(ValueError, match=message):
        cendetect.ops.deform_conv2d(**kwargs)


def test_missing_extension_says_how_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extension, "_C", None)
    monkeypatch.setattr(_extension, "_IMPORT_ERROR", ImportError("No module named cendetect._C"))
    x, off, weight, args = make_inputs(CONFIGS[0])
    with pytest.raises(RuntimeError, match=r"pip install -e \."):
        _op(x, off, weight, args)


@pytest.mark.parametrize("cfg", [CONFIGS[0], CONFIGS[2]])
def test_gradcheck(cfg: tuple) -> None:
    b, c, h, w, co, k, s, p, d, groups, dg = cfg
    small = (1, c, min(h, 5), min(w, 5), groups, k, s, p, d, groups, dg)
    # No sample on a whole pixel: bilinear interpolation has a kink there (finite differences
    # straddle it); mmcv's gradients at whole pixels are compared in test_matches_mmcv_golden.
    x, off, weight, args = make_inputs(small, torch.float64, seed=4, spread=1.5, on_pixels=0)
    x.requires_grad_()
    off.requires_grad_()
    weight.requires_grad_()
    # Forward: the C++ kernel; backward: autograd through deform_conv2d_torch. float64, and the
    # output is linear in each input element between whole pixels: central differences are
    # exact but for rounding (~1e-16 |out| / eps = 1e-9), far inside gradcheck's 1e-5 / 1e-3.
    assert torch.autograd.gradcheck(lambda a, o, wt: _op(a, o, wt, args), (x, off, weight))


def _golden_case(z: dict, k: int) -> tuple[Tensor, Tensor, Tensor, tuple]:
    p = f"case{k}/"
    x, off, w = (torch.from_numpy(z[p + n]) for n in ("input", "offset", "weight"))
    prm = z[p + "params"].tolist()
    return x, off, w, (prm[0:2], prm[2:4], prm[4:6], prm[6], prm[7])


def test_matches_mmcv_golden() -> None:
    """Outputs and gradients of mmcv 1.7.2's CPU DeformConv2d (tests/data/dcn/make_golden.py)."""
    z = dict(np.load(DATA / "dcn" / "golden.npz"))
    cases = sorted({key.split("/")[0] for key in z})
    assert len(cases) == 4
    n_grad = 0
    for k in range(len(cases)):
        x, off, weight, args = _golden_case(z, k)
        expected = torch.from_numpy(z[f"case{k}/out"])
        got = _op(x, off, weight, args)
        # mmcv summed on the golden's machine, in its GEMM's order: the samples are the same
        torch.testing.assert_close(got, expected, rtol=0, atol=_reorder(weight, expected))
        if f"case{k}/grad_out" not in z:
            continue
        n_grad += 1
        leaves = [t.clone().requires_grad_() for t in (x, off, weight)]
        out = _op(*leaves, args)
        (out * torch.from_numpy(z[f"case{k}/grad_out"])).sum().backward()
        # Terms per gradient entry (flattened sums, each in mmcv's or autograd's own order):
        # input: out_channels / groups per column times every tap and output position that may
        # sample the pixel; offset: 4 taps of each channel of its deform group times
        # out_channels / groups; weight: batch * Ho * Wo.
        (b, c), (co, _, kh, kw), hw = x.shape[:2], weight.shape, out[0, 0].numel()
        per_group, dg = co // args[3], args[4]
        depth = {
            "grad_input": per_group * kh * kw * hw,
            "grad_offset": c // dg * 4 * per_group,
            "grad_weight": b * hw,
        }
        for name, leaf in zip(("grad_input", "grad_offset", "grad_weight"), leaves, strict=True):
            e = torch.from_numpy(z[f"case{k}/{name}"])
            tol = reorder_tol(depth[name], float(e.abs().max()))
            torch.testing.assert_close(leaf.grad, e, rtol=0, atol=tol)
    assert n_grad == 2


class _Net(nn.Module):
    """A DCN layer as ResNet uses it, with non-zero offsets."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.dcn = DeformConv2dPack(4, 6, 3, stride=2, padding=1, deform_groups=2)
        with torch.no_grad():
            self.dcn.conv_offset.weight.normal_(0, 0.3)
            self.dcn.conv_offset.bias.normal_(0, 1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(self.dcn(x))


def test_layer_state_dict_names_and_zero_init() -> None:
    layer = DeformConv2dPack(8, 16, 3, padding=1, deform_groups=2)
    shapes = {k: tuple(v.shape) for k, v in layer.state_dict().items()}
    assert shapes == {
        "weight": (16, 8, 3, 3),
        "conv_offset.weight": (36, 8, 3, 3),
        "conv_offset.bias": (36,),
    }
    x = torch.randn(1, 8, 10, 9)
    want = F.conv2d(x, layer.weight, None, 1, 1)  # oneDNN: its own order of the 72-term sums
    torch.testing.assert_close(layer(x), want, rtol=0, atol=_reorder(layer.weight, want))


def test_torchscript_save_load() -> None:
    x = torch.randn(2, 4, 11, 14)
    net = _Net().eval()
    eager = net(x)
    scripted = torch.jit.script(net)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    # the same kernels (oneDNN's convolution, our op) on the same inputs in one process: exact
    torch.testing.assert_close(loaded(x), eager, rtol=0, atol=0)
    assert "cendetect::deform_conv2d" in str(loaded.inlined_graph)


def _export(net: nn.Module, x: Tensor) -> torch.export.ExportedProgram:
    h, w = torch.export.Dim("h", min=8, max=512), torch.export.Dim("w", min=8, max=512)
    return torch.export.export(net, (x,), dynamic_shapes=({2: h, 3: w},))


def test_torch_export_dynamic_size(tmp_path: Path) -> None:
    net = _Net().eval()
    program = _export(net, torch.randn(1, 4, 16, 20))
    targets = {str(node.target) for node in program.graph.nodes}
    assert "cendetect.deform_conv2d.default" in targets
    torch.export.save(program, tmp_path / "dcn.pt2")
    loaded = torch.export.load(tmp_path / "dcn.pt2").module()
    for shape in ((1, 4, 16, 20), (1, 4, 23, 9)):
        x = torch.randn(shape)
        # the exported graph runs the same ATen kernels and our op, eagerly: exact
        torch.testing.assert_close(loaded(x), net(x), rtol=0, atol=0)


def test_torch_compile_fullgraph() -> None:
    net = _Net().eval()
    x = torch.randn(1, 4, 12, 12)
    compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
    # aot_eager traces, then runs the same ATen kernels and our opaque op eagerly: exact
    torch.testing.assert_close(compiled(x), net(x), rtol=0, atol=0)


@pytest.mark.slow
def test_aoti_package(tmp_path: Path) -> None:
    net = _Net().eval()
    program = _export(net, torch.randn(1, 4, 16, 20))
    path = torch._inductor.aoti_compile_and_package(
        program, package_path=str(tmp_path / "dcn_aoti.pt2")
    )
    compiled = torch._inductor.aoti_load_package(path)
    for shape in ((1, 4, 16, 20), (1, 4, 31, 17)):
        x = torch.randn(shape)
        want = net(x)
        # Inductor runs conv_offset in its own layout and order; the offsets' noise moves the
        # DCN's samples: two stacked 4 x 3 x 3-term layers (as in the R50-DCN golden test)
        tol = reorder_tol(36, float(want.abs().max()), layers=2)
        torch.testing.assert_close(compiled(x), want, rtol=0, atol=tol)


# --- ResNet with DCN (mmdet ``dcn=dict(type='DCN')``, ``stage_with_dcn``) ---------------------


@pytest.mark.parametrize("flavour", ["mmdet", "mmdet3"])
def test_resnet_dcn_state_dict_matches_mmdet(flavour: str) -> None:
    folder = DATA / flavour / "cascade_mask_rcnn_r50_fpn_dconv"
    cfg = parse_config_text((folder / "config.py").read_text())
    backbone = build_backbone(cfg["model"]["backbone"])
    keys = json.loads((folder / "keys.json").read_text())
    expected = {k.removeprefix("backbone."): tuple(s) for k, s, _ in keys if "backbone." in k}
    got = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert got == expected
    assert isinstance(backbone.layer2[0].conv2, DeformConv2dPack)
    assert isinstance(backbone.layer1[2].conv2, nn.Conv2d)


def _dcn_convs(model: ResNet) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, DeformConv2dPack)]


def test_fallback_on_stride_as_mmdet() -> None:
    # mmdet pops fallback_on_stride from the dcn dict all blocks share: only the first block
    # built with DCN (layer2.0) gets a plain conv. Checked against mmdet 2.28.2's ResNet.
    stages = (False, True, True, True)
    plain = _dcn_convs(ResNet(dcn=DCNConfig(), stage_with_dcn=stages))
    fallback = _dcn_convs(ResNet(dcn=DCNConfig(fallback_on_stride=True), stage_with_dcn=stages))
    assert plain[0] == "layer2.0.conv2" and len(plain) == 13
    assert fallback == plain[1:]


def test_build_refuses_unsupported_dcn() -> None:
    base = {"type": "ResNet", "depth": 50, "stage_with_dcn": (False, True, True, True)}
    with pytest.raises(ConfigError, match="DCNv2"):
        build_backbone({**base, "dcn": {"type": "DCNv2", "deform_groups": 1}})
    with pytest.raises(ConfigError, match="modulated"):
        build_backbone({**base, "dcn": {"type": "DCNv2"}})
    with pytest.raises(ConfigError, match=r"\['groups'\]"):
        build_backbone({**base, "dcn": {"type": "DCN", "groups": 2}})
    with pytest.raises(ConfigError, match="4 entries"):
        build_backbone({**base, "dcn": {"type": "DCN"}, "stage_with_dcn": (True,)})
    model = build_backbone({**base, "dcn": {"type": "DCN", "deformable_groups": 2}})
    assert model.layer4[2].conv2.deform_groups == 2


@pytest.mark.slow
def test_resnet_dcn_backbone_matches_mmdet_golden(fixture_threads: int) -> None:
    """The fixture's R50-DCN backbone (seeded weights) against mmdetection 2.28.2's ResNet with
    mmcv's DeformConv2dPack (tests/data/dcn/make_golden.py: ``backbone_golden.npz``), with the
    golden's 2 torch threads.

    mmcv summed in the order of the machine that made the golden, we in this machine's: each
    stage is compared within :func:`tests.tolerances.reorder_tol` of its widest convolution
    (3 x 3 x 64 .. 3 x 3 x 512 terms) through the convolutions on its longest path (10, 22,
    40, 49), at the scale of its largest value. Measured on the ISA levels of docs/testing.md:
    c5 within 4.4e-3 of 59 (AVX2), the bound is 9.4e-2; a wrong offset, sampling or DCN layer
    moves c3..c5 by whole percents.
    """
    from tests.tolerances import reorder_tol
    from tests.weights import _DTYPES, _seeded_tensor, scalar_normals

    golden = dict(np.load(DATA / "dcn" / "backbone_golden.npz"))
    arch = DATA / "mmdet" / "cascade_mask_rcnn_r50_fpn_dconv"
    cfg = parse_config_text((arch / "config.py").read_text())
    backbone = build_backbone(cfg["model"]["backbone"]).eval()
    # The fixture rule (tests/weights.py) for the backbone entries only: the whole cascade
    # model's weights take ~10 s to rebuild.
    seed = int(json.loads((arch / "expected.json").read_text())["seed"])
    keys = json.loads((arch / "keys.json").read_text())
    state = {
        name.removeprefix("backbone."): _seeded_tensor(seed, name, shape, _DTYPES[dtype])
        for name, shape, dtype in keys
        if name.startswith("backbone.")
    }
    with np.load(arch / "overrides.npz") as overrides:
        for name in overrides.files:
            if name.startswith("backbone."):
                state[name.removeprefix("backbone.")] = torch.from_numpy(overrides[name].copy())
    backbone.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(7))
    # the golden's input regenerates (exactly on ATen's vectorized sampler; within 2.1e-6 per
    # value on its scalar one, tests/weights.py)
    exact = x.double().sum().item() == float(golden["input_sum"])
    assert exact or (scalar_normals() and abs(x.double().sum() - golden["input_sum"]) < 0.1)
    assert float(golden["max_offset"]) > 2  # the offsets really move the samples
    with torch.no_grad():
        outs = backbone(x)
    c5 = torch.from_numpy(golden["c5"])
    depth = {2: 9 * 64, 3: 9 * 128, 4: 9 * 256, 5: 9 * 512}
    layers = {2: 10, 3: 22, 4: 40, 5: 49}
    tol = {c: reorder_tol(depth[c], float(out.abs().max()), layers[c]) for c, out in
           zip(depth, outs, strict=True)}  # fmt: skip
    torch.testing.assert_close(outs[-1], c5, rtol=0, atol=tol[5])
    for i, out in enumerate(outs):
        mean = torch.from_numpy(golden[f"mean_c{i + 2}"])
        # a channel's mean is off by at most its values' largest error
        torch.testing.assert_close(out.mean(dim=(0, 2, 3)), mean, rtol=0, atol=tol[i + 2])
