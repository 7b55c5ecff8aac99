"""ONNX engine (``.onnx`` run by onnxruntime): our ops as standard ONNX ops, parity with eager.

The op translations are checked against our kernels on random inputs (NMS including score ties
and groups, exactly; RoIAlign and the multi-level extractor including rois of negative area;
the deformable convolution with points outside the image). The whole detector is compiled once
per session at a small max size and matched against eager on the four fixture images by IoU
(STYLE.md): onnxruntime's convolutions sum in another order than torch's, and the random-weight
fixture amplifies that float noise. PointRend and the cascade with DCN get the same check in
their parity files (``tests/test_parity_*.py``), next to their AOTI engines from the same export.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cendetect import Detector
from cendetect.engine import preprocess
from cendetect.engine.runners import EngineError, load_engine, read_manifest
from tests.compile.matching import engine_parity
from tests.conftest import DATA
from tests.matching import box_iou
from tests.tolerances import BOX_IOU_MIN, reorder_tol

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (cendetect[onnx])")
onnx = pytest.importorskip("onnx", reason="onnx is not installed (cendetect[onnx])")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (cendetect[onnx])")

IMAGES = sorted((DATA / "mmdet" / "images").iterdir())
SMALL = (320, 224)  # img_scale for the test: network inputs up to 320 x 320


@pytest.fixture(scope="session")
def r50_onnx(mmdet2_r50_ckpt: Path, export_engines: Callable[..., dict[str, Path]]) -> Path:
    return export_engines(mmdet2_r50_ckpt, ("onnx",))["onnx"]


@pytest.fixture(scope="module")
def eager(mmdet2_r50_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


def _session(module: torch.nn.Module, args: tuple, dynamic: tuple, path: Path):
    from cendetect.compile.onnx import OPSET, translation_table

    program = torch.export.export(module, args, dynamic_shapes=dynamic)
    onnx_program = torch.onnx.export(
        program, (), dynamo=True, opset_version=OPSET, custom_translation_table=translation_table()
    )
    onnx_program.save(str(path))
    model = onnx.load(str(path))
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, "non-standard ops"
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run(session, *tensors: torch.Tensor) -> list[np.ndarray]:
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), tensors)}
    return session.run(None, feeds)


class _Nms(torch.nn.Module):
    def forward(self, boxes, scores, idxs):
        return (
            torch.ops.cendetect.batched_nms(boxes, scores, idxs, 0.5),
            torch.ops.cendetect.nms(boxes, scores, 0.7),
        )


class _RoiAlign(torch.nn.Module):
    def forward(self, f0, f1, f2, rois):
        scales = [0.25, 0.125, 0.0625]
        return (
            torch.ops.cendetect.multi_level_roi_align([f0, f1, f2], rois, 7, scales, 0, True, 56),
            torch.ops.cendetect.roi_align(f0, rois, [5, 3], 0.25, 2, False),
            torch.ops.cendetect.roi_align(f1, rois, [4, 4], 0.125, 0, True),
        )


def _boxes(g: torch.Generator, n: int, span: float = 100.0) -> torch.Tensor:
    xy = torch.rand((n, 2), generator=g) * span
    wh = torch.rand((n, 2), generator=g) * 40 + 0.5
    return torch.cat([xy, xy + wh], 1)


def test_nms_translation_equals_our_kernel(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    n = torch.export.Dim("n", min=2, max=100_000)
    args = (_boxes(g, 40), torch.rand(40, generator=g), torch.randint(0, 3, (40,), generator=g))
    session = _session(_Nms(), args, ({0: n}, {0: n}, {0: n}), tmp_path / "nms.onnx")
    for trial in range(60):
        count = int(torch.randint(2, 500, (), generator=g))
        boxes, scores = _boxes(g, count), torch.rand(count, generator=g)
        if trial % 3 == 0:  # many equal scores: ties keep the lower index first
            scores = (scores * 8).round() / 8
        groups = int(torch.randint(1, 6, (), generator=g))
        offset = (3, 0, -4)[trial % 3]  # group ids need not start at 0, may be negative
        idxs = torch.randint(0, groups, (count,), generator=g) + offset
        ref = _Nms()(boxes, scores, idxs)
        out = _run(session, boxes, scores, idxs)
        # indices: exact (equal scores keep the lower index on both sides; an IoU within float
        # noise of the threshold would be a tie, which these random boxes do not produce)
        for name, r, o in zip(("batched_nms", "nms"), ref, out):
            assert np.array_equal(r.numpy(), o), f"trial {trial}: {name} differs"
    empty = _run(session, torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.long))
    assert [o.shape for o in empty] == [(0,), (0,)]


def test_roi_align_translations_equal_our_kernels(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(1)
    feats = [torch.randn((2, 8, 64 // s, 80 // s), generator=g) for s in (1, 2, 4)]

    def rois(k: int) -> torch.Tensor:
        xy = torch.rand((k, 2), generator=g) * 260 - 5
        wh = torch.rand((k, 2), generator=g) ** 2 * 250  # small and large: every level
        r = torch.cat([torch.randint(0, 2, (k, 1), generator=g).float(), xy, xy + wh], 1)
        r[:2, 3:] = r[:2, 1:3] - 1  # negative area: zeros (NaN level)
        return r

    k = torch.export.Dim("k", min=2, max=10_000)
    session = _session(_RoiAlign(), (*feats, rois(30)), (None, None, None, {0: k}), tmp_path / "r")
    for trial in range(15):
        r = rois(int(torch.randint(3, 300, (), generator=g)))
        ref = _RoiAlign()(*feats, r)
        out = _run(session, *feats, r)
        # exact: onnxruntime's RoiAlign (plain C++, no per-CPU dispatch) and our kernel (built
        # with -ffp-contract=off) apply mmcv's sampling rule in the same order: pre-computed tap
        # weights, 4 taps per sample, samples in row order, one division (measured bit-equal)
        for i, (a, b) in enumerate(zip(ref, out)):
            np.testing.assert_array_equal(b, a.numpy(), err_msg=f"{trial}/{i}")
    empty = _run(session, *feats, torch.zeros((0, 5)))
    assert [o.shape for o in empty] == [(0, 8, 7, 7), (0, 8, 5, 3), (0, 8, 4, 4)]


class _DeformConv(torch.nn.Module):
    """Offsets from a plain convolution of the input (as DCN does), then the deformable conv."""

    def __init__(
        self,
        channels: int,
        out: int,
        kernel: tuple[int, int],
        stride: int,
        dilation: int,
        groups: int,
        deform_groups: int,
        spread: float,
    ) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(channels * 7 + out + stride + dilation + groups)
        kh, kw = kernel
        self.weight = torch.nn.Parameter(
            torch.randn((out, channels // groups, kh, kw), generator=g)
        )
        self.offset_weight = torch.nn.Parameter(
            torch.randn((deform_groups * 2 * kh * kw, channels, kh, kw), generator=g) * spread
        )
        self.args = ([stride] * 2, [kh // 2 * dilation, kw // 2 * dilation], [dilation] * 2)
        self.groups, self.deform_groups = groups, deform_groups

    def forward(self, x):
        stride, padding, dilation = self.args
        offset = torch.nn.functional.conv2d(x, self.offset_weight, None, stride, padding, dilation)
        offset = offset.round() if self.deform_groups == 2 else offset  # integer taps too
        return torch.ops.cendetect.deform_conv2d(
            x, offset, self.weight, stride, padding, dilation, self.groups, self.deform_groups
        )


@pytest.mark.parametrize(
    ("kernel", "stride", "dilation", "groups", "deform_groups"),
    [((3, 3), 1, 1, 1, 1), ((3, 3), 2, 1, 1, 2), ((1, 3), 1, 2, 2, 1), ((3, 3), 2, 2, 1, 4)],
)
def test_deform_conv_translation_equals_our_kernel(
    tmp_path: Path,
    kernel: tuple[int, int],
    stride: int,
    dilation: int,
    groups: int,
    deform_groups: int,
) -> None:
    """GridSample + MatMul against the C++ kernel (mmcv's sampling rule), with offsets large
    enough that many points fall outside the image, on the border band (-1, 0) and past the
    last pixel; dynamic H/W, the cascade's stride-2 DCN included."""
    module = _DeformConv(8, 6, kernel, stride, dilation, groups, deform_groups, spread=0.6)
    g = torch.Generator().manual_seed(3)
    h, w = torch.export.Dim("h", min=4, max=256), torch.export.Dim("w", min=4, max=256)
    x0 = torch.randn((2, 8, 12, 16), generator=g)
    session = _session(module, (x0,), ({2: h, 3: w},), tmp_path / "dcn.onnx")
    outside = 0.0
    for size in ((12, 16), (9, 23), (31, 7), (4, 4)):
        x = torch.randn((2, 8, *size), generator=g)
        with torch.no_grad():
            ref = module(x)
            offset = torch.nn.functional.conv2d(x, module.offset_weight, None, *module.args)
        (out,) = _run(session, x)
        # GridSample + MatMul sum the 8 x kh x kw products in another order than the C++ kernel,
        # at points moved by onnxruntime's own offset convolution (as deep): three stacked
        # roundings (measured <= 5.3e-5 on outputs up to 27, <= 0.35 of this bound, over the
        # torch ISA levels); a wrong sampling rule moves outputs by O(1)
        tol = reorder_tol(8 * kernel[0] * kernel[1], scale=float(ref.abs().max()), layers=3)
        np.testing.assert_allclose(out, ref.numpy(), rtol=0, atol=tol, err_msg=str(size))
        outside = max(outside, float(offset.abs().max()))
    assert outside > 4.0, "the offsets should reach well outside the image"


@pytest.mark.slow
def test_manifest_and_standard_ops(r50_onnx: Path) -> None:
    m = read_manifest(r50_onnx)
    assert (m.engine, m.precision, m.device) == ("onnx", "fp32", "cpu")
    assert (m.input.min, m.input.opt, m.input.max) == ((64, 64), (224, 320), (320, 320))
    model = onnx.load(str(r50_onnx), load_external_data=False)
    assert {p.key for p in model.metadata_props} >= {"cendetect_manifest.json"}
    ops = {n.op_type for n in model.graph.node}
    assert {"NonMaxSuppression", "RoiAlign"} <= ops
    assert {n.domain for n in model.graph.node} <= {"", "ai.onnx"}, "non-standard ops"
    images = model.graph.input[0].type.tensor_type.shape.dim
    assert images[0].dim_value == 1 and images[2].dim_param and images[3].dim_param


def _parity(
    eager: Detector,
    runner,
    min_fraction: float,
    min_mask_iou: float = 0.98,
    images: list[Path] = IMAGES,
) -> list[str]:
    """:func:`engine_parity` at the small test scale (default: the four fixture images, which
    give four input sizes)."""
    return engine_parity(eager, runner, images, SMALL, min_fraction, min_mask_iou)


@pytest.mark.slow
def test_onnx_matches_eager_at_several_sizes(eager: Detector, r50_onnx: Path) -> None:
    """The default session (graph optimisation 'basic'): every eager detection matched."""
    _parity(eager, load_engine(r50_onnx), min_fraction=1.0)


@pytest.mark.slow
def test_onnx_full_optimisation_nearly_matches(eager: Detector, r50_onnx: Path) -> None:
    """onnxruntime's 'all' level (fused NCHWc convolutions): measured 98/100 on kite, all on
    the other three images; the remaining two are float-noise re-rankings (module docstring)."""
    from cendetect.engine.runners.onnx import load_onnx

    runner = load_engine(r50_onnx)
    runner.program = load_onnx(r50_onnx, torch.device("cpu"), optimization="all")
    _parity(eager, runner, min_fraction=0.95)


@pytest.mark.slow
def test_batch_and_detector_api(eager: Detector, r50_onnx: Path) -> None:
    runner = load_engine(r50_onnx)
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    imgs = [cv2.imread(str(p)) for p in IMAGES[:2]]
    both = runner(preprocess(imgs, cfg))
    for i, img in enumerate(imgs):
        alone = runner(preprocess([img], cfg))
        sel = both[4] == i
        # exact: the runner crops each image of the batch to its own padded size, so the
        # session runs on the very tensor it gets alone
        torch.testing.assert_close(both[0][sel], alone[0], rtol=0, atol=0)
        assert torch.equal(both[2][sel], alone[2])
    det = Detector.from_engine(r50_onnx, refine="off")
    assert det.engine == "onnx" and det.class_names == eager.class_names
    with pytest.raises(EngineError, match="exceeds the largest size .* --max-size"):
        det(IMAGES[0])  # full-size pre-processing: larger than the 320x320 build


@pytest.mark.slow
def test_smallest_size_runs(eager: Detector, r50_onnx: Path) -> None:
    """64-pixel sides (the spec's min): the ONNX graph has no shape guards and computes them
    (the torch.export program itself refuses sides of 64 with a 5-level FPN, test_trt_engine)."""
    runner = load_engine(r50_onnx)
    g = torch.Generator().manual_seed(0)
    for h, w in ((64, 64), (64, 320)):
        x = torch.randn((1, 3, h, w), generator=g)
        sizes, factors = torch.tensor([[h, w]]), torch.ones((1, 4))
        with torch.inference_mode():
            ref = eager.model(x, sizes, factors)
        out = runner.program(x, sizes, factors)
        assert torch.equal(out[2], ref[2]), (h, w)
        # two float32 implementations of the network: boxes matched by IoU as in engine_parity
        ious = box_iou(out[0].numpy(), ref[0].numpy()).diagonal()
        assert (ious >= BOX_IOU_MIN).all(), (h, w, ious.min())
