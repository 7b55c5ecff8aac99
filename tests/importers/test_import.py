"""Import detectron2 (.pkl, .pth) and maskrcnn-benchmark (.pth) checkpoints written with their
exact key layouts from the seeded R-50 parity-fixture weights."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest
import torch

from cendetect import Detector
from cendetect.checkpoint import Checkpoint
from cendetect.errors import CheckpointError
from cendetect.importers import ImportedCheckpoint, load_any
from cendetect.models import build_model
from tests.conftest import DATA
from tests.importers import layouts
from tests.weights import rebuild_state_dict

IMAGE = DATA / "mmdet" / "images" / "china_640x427.jpg"
#: a smaller network input than the families' 800 x 1333, to keep CPU tests fast
SMALL = (352, 224)


@pytest.fixture(scope="module")
def ours() -> dict[str, torch.Tensor]:
    """Our (mmdet-named) weights: the seeded mask_rcnn_r50_fpn fixture, 2 classes."""
    return rebuild_state_dict(DATA / "mmdet" / "mask_rcnn_r50_fpn")


def _same_weights(imported: ImportedCheckpoint, ours: dict[str, torch.Tensor]) -> None:
    # exact: importing renames and reorders tensors, it never computes with them
    assert set(imported.state_dict) == set(ours)
    for k, v in ours.items():
        if k.endswith("num_batches_tracked"):  # neither family stores it
            assert int(imported.state_dict[k]) == 0
        else:
            assert torch.equal(imported.state_dict[k], v), k


def _strict_load(imported: ImportedCheckpoint) -> torch.nn.Module:
    model = build_model(imported.model_config, num_classes=imported.num_classes)
    model.load_state_dict(imported.state_dict, strict=True)
    return model


@pytest.mark.parametrize("protocol", [2, 4])
def test_detectron2_pkl(ours: dict, tmp_path: Path, protocol: int) -> None:
    path = layouts.save_detectron2_pkl(
        layouts.to_detectron2(ours), tmp_path / "model_final.pkl", protocol
    )
    imported = load_any(path)
    assert isinstance(imported, ImportedCheckpoint)
    assert (imported.family, imported.depth, imported.num_classes) == ("detectron2", 50, 2)
    assert imported.ignored == ()  # every key mapped onto a parameter
    _same_weights(imported, ours)
    model = _strict_load(imported)
    cfg = imported.model_config
    assert cfg["backbone"]["style"] == "caffe"  # STRIDE_IN_1X1 = True
    layer = cfg["roi_head"]["bbox_roi_extractor"]["roi_layer"]
    assert (layer["aligned"], layer["sampling_ratio"]) == (True, 0)  # ROIAlignV2
    assert model.rpn_head.detectron_coder and model.rpn_head.coder_offset == 0.0
    assert model.roi_head.coder_weights == [10.0, 10.0, 5.0, 5.0]
    pre = imported.preprocess
    assert (pre.mean, pre.std, pre.to_rgb) == ((103.53, 116.28, 123.675), (1.0, 1.0, 1.0), False)
    assert (pre.img_scale, pre.size_divisor) == ((1333, 800), 32)


def test_detectron2_training_pth_and_old_buffers(ours: dict, tmp_path: Path) -> None:
    d2 = layouts.to_detectron2(ours)
    # checkpoints of older detectron2 versions also saved these buffers
    d2["pixel_mean"] = torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1)
    d2["pixel_std"] = torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1)
    for i, stride in enumerate((4, 8, 16, 32, 64)):
        w = torch.tensor([0.5, 1.0, 2.0])
        side = (8 * stride) ** 2 / w
        ws = side.sqrt()
        hs = w * ws
        cell = torch.stack([-ws / 2, -hs / 2, ws / 2, hs / 2], 1)
        d2[f"proposal_generator.anchor_generator.cell_anchors.{i}"] = cell
    for legacy in (False, True):
        path = layouts.save_detectron2_pth(d2, tmp_path / f"model_final_{legacy}.pth", legacy)
        imported = load_any(path, "detectron2", stride_in_1x1=False)
        assert imported.family == "detectron2"
        assert len(imported.ignored) == 5  # the anchor buffers, checked against ours
        assert imported.preprocess.mean == (100.0, 110.0, 120.0)
        assert imported.preprocess.std == (1.0, 2.0, 3.0)
        assert imported.model_config["backbone"]["style"] == "pytorch"
        _same_weights(imported, ours)


def test_maskrcnn_benchmark_pth(ours: dict, tmp_path: Path) -> None:
    mb = layouts.to_maskrcnn_benchmark(ours)
    path = layouts.save_maskrcnn_benchmark_pth(mb, tmp_path / "model_final.pth")
    assert all(k.startswith("module.") for k in torch.load(path, weights_only=True)["model"])
    imported = load_any(path)
    assert (imported.family, imported.depth, imported.num_classes) == ("maskrcnn_benchmark", 50, 2)
    assert sum("cell_anchors" in k for k in imported.ignored) == 5
    _same_weights(imported, ours)  # background row moved last, its regressors dropped
    model = _strict_load(imported)
    layer = imported.model_config["roi_head"]["mask_roi_extractor"]["roi_layer"]
    assert (layer["aligned"], layer["sampling_ratio"]) == (False, 2)
    assert model.rpn_head.nms_offset == 1.0 and model.roi_head.coder_offset == 1.0
    assert model.roi_head.bbox_roi_extractor.legacy_levels
    assert model.backbone.bn1.eps == 0.0  # FrozenBatchNorm2d without epsilon
    assert model.rpn_head.base_anchors[0].tolist() == layouts.LEGACY_P2_ANCHORS
    assert imported.preprocess.mean == (102.9801, 115.9465, 122.7717)


def test_wrong_anchor_buffers_are_refused(ours: dict, tmp_path: Path) -> None:
    mb = layouts.to_maskrcnn_benchmark(ours)
    path = layouts.save_maskrcnn_benchmark_pth(mb, tmp_path / "a.pth")
    ckpt = torch.load(path, weights_only=True)
    ckpt["model"]["module.rpn.anchor_generator.cell_anchors.2"] += 1
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match="cell_anchors.2"):
        load_any(path)


def test_unknown_and_missing_keys_are_named(ours: dict, tmp_path: Path) -> None:
    d2 = layouts.to_detectron2(ours)
    extra = {**d2, "roi_heads.keypoint_head.conv1.weight": torch.zeros(1)}
    with pytest.raises(CheckpointError, match="keypoint_head"):
        load_any(layouts.save_detectron2_pkl(extra, tmp_path / "extra.pkl"))
    missing = {k: v for k, v in d2.items() if "mask_fcn3.bias" not in k}
    with pytest.raises(CheckpointError, match="mask_fcn3.bias"):
        load_any(layouts.save_detectron2_pkl(missing, tmp_path / "missing.pkl"))


def test_format_override(ours: dict, tmp_path: Path, mmdet2_r50_ckpt: Path) -> None:
    path = layouts.save_detectron2_pkl(layouts.to_detectron2(ours), tmp_path / "m.pkl")
    with pytest.raises(CheckpointError, match="look like detectron2"):
        load_any(path, "maskrcnn_benchmark")
    assert isinstance(load_any(mmdet2_r50_ckpt), Checkpoint)
    assert isinstance(load_any(mmdet2_r50_ckpt, "mmdet"), Checkpoint)
    with pytest.raises(CheckpointError, match="look like mmdet"):
        load_any(mmdet2_r50_ckpt, "detectron2")
    with pytest.raises(ValueError, match="not one of"):
        load_any(path, "caffe2")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch CENDETECT_PKL_EXECUTED",))


def test_malicious_pkl_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": {"a": _Evil()}, "__author__": "x"}, protocol=2))
    with pytest.raises(CheckpointError, match=r"refused: it references (posix|nt)\.system"):
        load_any(path)
    assert not (tmp_path / "CENDETECT_PKL_EXECUTED").exists()
    # a Detectron1 / Caffe2 blobs file is recognised and refused with a clear message
    blobs = tmp_path / "detectron1.pkl"
    blobs.write_bytes(pickle.dumps({"blobs": {}}, protocol=2))
    with pytest.raises(CheckpointError, match="Caffe2 / Detectron1"):
        load_any(blobs)


def _detector(path: Path, **kwargs) -> Detector:
    det = Detector.from_checkpoint(path, **kwargs)
    det.preprocess_cfg = dataclasses.replace(det.preprocess_cfg, img_scale=SMALL)
    return det


def _distinctive(sd: dict, prefix: str, favoured: int) -> dict:
    """Class scores that ignore the features: every roi gets logit 10 for row ``favoured``."""
    out = dict(sd)
    w = sd[f"{prefix}.weight"]
    out[f"{prefix}.weight"] = torch.zeros_like(w)
    bias = torch.zeros(w.shape[0])
    bias[favoured] = 10.0
    out[f"{prefix}.bias"] = bias
    return out


@pytest.mark.slow
def test_detectron2_class_order_end_to_end(ours: dict, tmp_path: Path) -> None:
    # detectron2 rows: [bar, mosaic, background]; row 1 favoured must come out as label 1
    d2 = _distinctive(layouts.to_detectron2(ours), "roi_heads.box_predictor.cls_score", 1)
    det = _detector(layouts.save_detectron2_pkl(d2, tmp_path / "m.pkl"), classes=["bar", "mosaic"])
    assert det.checkpoint_format == "detectron2"
    res = det(IMAGE)
    assert len(res) > 0 and set(res.labels.tolist()) == {1}
    assert res.masks.shape == (len(res), 427, 640)


@pytest.mark.slow
def test_maskrcnn_benchmark_class_order_end_to_end(ours: dict, tmp_path: Path) -> None:
    # maskrcnn-benchmark rows: [background, bar, mosaic]; row 1 favoured must be label 0
    mb = layouts.to_maskrcnn_benchmark(ours)
    prefix = "roi_heads.box.predictor.cls_score"
    path = layouts.save_maskrcnn_benchmark_pth(_distinctive(mb, prefix, 1), tmp_path / "a.pth")
    det = _detector(path)
    assert det.checkpoint_format == "maskrcnn_benchmark"
    res = det(IMAGE)
    assert len(res) > 0 and set(res.labels.tolist()) == {0}
    # row 0 (background) favoured: every object score is e**-10 / (...) < 0.05, no detection
    path = layouts.save_maskrcnn_benchmark_pth(_distinctive(mb, prefix, 0), tmp_path / "b.pth")
    assert len(_detector(path)(IMAGE)) == 0


@pytest.mark.slow
def test_imported_model_scripts_like_eager(ours: dict, tmp_path: Path) -> None:
    from cendetect.detector import read_image
    from cendetect.engine.preprocess import preprocess

    path = layouts.save_maskrcnn_benchmark_pth(layouts.to_maskrcnn_benchmark(ours), tmp_path / "a")
    det = _detector(path)
    batch = preprocess([read_image(IMAGE)], det.preprocess_cfg)
    args = (batch.images, batch.image_sizes, batch.scale_factors)
    with torch.inference_mode():
        eager = det.model(*args)
        scripted = torch.jit.script(det.model)(*args)
    assert eager[0].shape[0] > 0
    # exact: TorchScript runs the same ATen/oneDNN/oneMKL kernels and our ops on the same
    # inputs in this process (no CPU fuser), so every sum keeps its order
    for a, b in zip(eager, scripted):
        assert torch.equal(a, b)


def test_cli_loads_a_pkl_and_reports_the_family(
    ours: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from cendetect.cli.common import add_model_args, load_detector

    path = layouts.save_detectron2_pkl(layouts.to_detectron2(ours), tmp_path / "model_final.pkl")
    parser = argparse.ArgumentParser()
    add_model_args(parser)
    args = parser.parse_args(["--checkpoint", str(path), "--device", "cpu"])
    det = load_detector(args)
    assert det.checkpoint_format == "detectron2" and det.class_names == ("class_0", "class_1")
    assert "imported a detectron2 checkpoint" in capsys.readouterr().err
    args = parser.parse_args(
        ["--checkpoint", str(path), "--device", "cpu", "--checkpoint-format", "maskrcnn_benchmark"]
    )
    from cendetect.cli.common import CliError

    with pytest.raises(CliError, match="look like detectron2"):
        load_detector(args)
