"""The custom ops inside TorchScript (with save/load) and torch.export, and their errors."""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from torch import Tensor

import cendetect.ops
from cendetect.ops import _extension

# TorchScript is deprecated upstream and warns on every call; these tests use it on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")


def inputs() -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(40, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(40, 2, generator=g) * 60 + 1], dim=1)
    feats = [torch.randn(2, 4, 32 // 2**i, 40 // 2**i, generator=g) for i in range(3)]
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=g).float(), boxes], dim=1)
    return {
        "boxes": boxes,
        "scores": torch.rand(40, generator=g),
        "idxs": torch.randint(0, 3, (40,), generator=g),
        "feats": feats,
        "rois": rois,
    }


class Head(torch.nn.Module):
    """Every op once, the way model code calls them."""

    def __init__(self) -> None:
        super().__init__()
        self.scales = [1 / 4, 1 / 8, 1 / 16]

    def forward(
        self, boxes: Tensor, scores: Tensor, idxs: Tensor, feats: list[Tensor], rois: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        keep = torch.ops.cendetect.nms(boxes, scores, 0.5)
        keep_b = torch.ops.cendetect.batched_nms(boxes, scores, idxs, 0.5)
        pooled = torch.ops.cendetect.roi_align(feats[0], rois, [7, 7], 0.25, 0, True)
        multi = torch.ops.cendetect.multi_level_roi_align(feats, rois, 7, self.scales, 0, True, 56)
        return keep, keep_b, pooled, multi


class WrapperHead(torch.nn.Module):
    """The same through the documented Python wrappers, which must script too."""

    def forward(
        self, boxes: Tensor, scores: Tensor, idxs: Tensor, feats: list[Tensor], rois: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        keep = cendetect.ops.nms(boxes, scores, 0.5)
        keep_b = cendetect.ops.batched_nms(boxes, scores, idxs, 0.5)
        pooled = cendetect.ops.roi_align(feats[0], rois, [7, 7], 0.25, 0, True)
        multi = cendetect.ops.multi_level_roi_align(
            feats, rois, 7, [1 / 4, 1 / 8, 1 / 16], 0, True, 56
        )
        return keep, keep_b, pooled, multi


def assert_same(got: tuple[Tensor, ...], expected: tuple[Tensor, ...]) -> None:
    """Exactly equal: TorchScript, torch.export and aot_eager call the same kernels of our ops
    on the same inputs in one process (indices, pooled floats and gathered boxes alike)."""
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


@pytest.mark.parametrize("module", [Head, WrapperHead])
def test_torchscript_save_load(module: type[torch.nn.Module]) -> None:
    x = inputs()
    eager = module()(**x)
    assert len(eager[0]) < 40  # suppression happened
    scripted = torch.jit.script(module())
    assert_same(scripted(**x), eager)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    assert_same(loaded(**x), eager)
    assert "cendetect::batched_nms" in str(loaded.inlined_graph)


def test_torch_export_with_dynamic_sizes(tmp_path) -> None:
    x = inputs()

    class Detect(torch.nn.Module):
        def forward(self, boxes: Tensor, scores: Tensor, feats: list[Tensor], rois: Tensor):
            keep = torch.ops.cendetect.nms(boxes, scores, 0.5)
            pooled = torch.ops.cendetect.multi_level_roi_align(
                feats, rois, 7, [1 / 4, 1 / 8, 1 / 16], 0, True, 56
            )
            return boxes[keep], pooled

    args = (x["boxes"], x["scores"], x["feats"], x["rois"])
    n, k = torch.export.Dim("n"), torch.export.Dim("k")
    dynamic = ({0: n}, {0: n}, [None, None, None], {0: k})
    program = torch.export.export(Detect(), args, dynamic_shapes=dynamic)
    targets = {str(node.target) for node in program.graph.nodes}
    assert {"cendetect.nms.default", "cendetect.multi_level_roi_align.default"} <= targets
    path = tmp_path / "detect.pt2"
    torch.export.save(program, path)
    loaded = torch.export.load(path).module()
    # Other sizes than at export time: the number of kept boxes is data-dependent.
    smaller = (x["boxes"][:25], x["scores"][:25], x["feats"], x["rois"][:30])
    assert_same(loaded(*smaller), Detect()(*smaller))
    assert_same(loaded(*args), Detect()(*args))


def test_export_reports_shape_errors() -> None:
    class Bad(torch.nn.Module):
        def forward(self, boxes: Tensor, scores: Tensor) -> Tensor:
            return torch.ops.cendetect.nms(boxes, scores, 0.5)

    with pytest.raises(Exception, match=r"boxes must have shape \[N, 4\]"):
        torch.export.export(Bad(), (torch.zeros(4, 5), torch.zeros(4)))


def test_scripted_call_reports_value_errors() -> None:
    @torch.jit.script
    def run(boxes: Tensor, scores: Tensor) -> Tensor:
        return torch.ops.cendetect.nms(boxes, scores, 0.5)

    with pytest.raises(Exception, match=r"scores must have shape \[N\]"):
        run(torch.zeros(4, 4), torch.zeros(3))


def test_missing_extension_says_how_to_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_extension, "_C", None)
    monkeypatch.setattr(_extension, "_IMPORT_ERROR", ImportError("No module named cendetect._C"))
    assert not cendetect.ops.has_ops()
    x = inputs()
    with pytest.raises(RuntimeError, match=r"pip install -e \."):
        cendetect.ops.nms(x["boxes"], x["scores"], 0.5)
    with pytest.raises(RuntimeError, match="cendetect._C"):
        cendetect.ops.roi_align(x["feats"][0], x["rois"], [7, 7], 0.25, 0, True)
    # Empty inputs need no kernel.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cendetect.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)


def test_torch_compile_fullgraph() -> None:
    # aot_eager runs dynamo and the fake kernels (data-dependent nms size included) without
    # paying for inductor's C++ compilation; the op is opaque to either backend.
    x = inputs()
    model = Head()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    assert_same(compiled(**x), model(**x))
