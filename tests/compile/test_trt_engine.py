"""TensorRT engine (``--engine trt``): everything up to the program torch_tensorrt consumes.

torch_tensorrt cannot be installed on this project's machines (it needs a CUDA build of torch
and the TensorRT wheels; the lent GPU machines have no TensorRT either), so the TensorRT
compile-and-run test skips itself naming the missing package. What runs here: the exported
program TensorRT is handed (dynamic min/opt/max spec, our ops as calls that stay in torch, eager's
results within 1e-4), the ``torch_tensorrt.Input`` specs, and the ``.ep`` container with its
manifest (on the plain exported program: a real ``torch.export.save`` archive, not TensorRT's).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import pytest
import torch

from cendetect import Detector
from cendetect.compile.build import compile_engine
from cendetect.compile.export import export_program
from cendetect.compile.trt import (
    add_manifest,
    fit_spec,
    input_shapes,
    program_size_range,
    torch_executed_ops,
)
from cendetect.engine import preprocess, to_detections
from cendetect.engine.runners import InputSpec, Manifest, load_engine, read_manifest
from cendetect.engine.runners.manifest import file_sha256
from tests.compile.matching import match_detections
from tests.conftest import DATA

IMAGES = sorted((DATA / "mmdet" / "images").iterdir())
SMALL = (320, 224)  # img_scale for the test: network inputs up to 320 x 320
SPEC = InputSpec(min=(64, 64), opt=(224, 320), max=(320, 320))


@pytest.fixture(scope="module")
def eager(mmdet2_r50_ckpt: Path) -> Detector:
    return Detector.from_checkpoint(mmdet2_r50_ckpt, device="cpu", refine="off")


@pytest.fixture(scope="module")
def program(eager: Detector) -> torch.export.ExportedProgram:
    """The program ``compile_engine(engine='trt')`` hands to torch_tensorrt (here on the CPU)."""
    return export_program(eager.model.eval(), SPEC, eager.preprocess_cfg.size_divisor, "cpu")


def test_input_specs_follow_the_manifest() -> None:
    image, sizes, factors = input_shapes(SPEC)
    assert image["min_shape"] == (1, 3, 64, 64)
    assert image["opt_shape"] == (1, 3, 224, 320)
    assert image["max_shape"] == (1, 3, 320, 320)
    assert image["dtype"] == torch.float32
    assert sizes == {"shape": (1, 2), "dtype": torch.int64}
    assert factors == {"shape": (1, 4), "dtype": torch.float32}
    static = input_shapes(InputSpec(min=(96, 128), opt=(96, 128), max=(96, 128)))[0]
    assert static == {"shape": (1, 3, 96, 128), "dtype": torch.float32}


@pytest.mark.slow
def test_program_has_the_dynamic_spec(program: torch.export.ExportedProgram) -> None:
    name = program.graph_signature.user_inputs[0]
    images = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    for side in images.meta["val"].shape[2:]:
        (sym,) = side.node.expr.free_symbols
        assert int(side.node.expr.subs(sym, 7)) == 7 * 32  # multiples of the size divisor
    # asked 64..320; the exporter specialises the 1-pixel stride-64 FPN level of a 64-pixel
    # side away, so the program takes 96..320 and TensorRT's min_shape is raised to it
    assert program_size_range(program) == ((96, 96), (320, 320))
    fitted = fit_spec(SPEC, program)
    assert (fitted.min, fitted.opt, fitted.max) == ((96, 96), (224, 320), (320, 320))
    assert input_shapes(fitted)[0]["min_shape"] == (1, 3, 96, 96)
    module = program.module()
    with pytest.raises(Exception, match="Guard failed"):  # what TensorRT would be handed
        module(torch.zeros(1, 3, 64, 96), torch.tensor([[64, 96]]), torch.ones(1, 4))


@pytest.mark.slow
def test_our_ops_are_calls_left_to_torch(program: torch.export.ExportedProgram) -> None:
    ours = {
        n.target
        for n in program.graph.nodes
        if n.op == "call_function"
        and getattr(n.target, "namespace", "") in ("cendetect", "cendetect_export")
    }
    assert ours <= torch_executed_ops(), ours - torch_executed_ops()
    ops = torch.ops.cendetect
    assert {ops.batched_nms.default, ops.multi_level_roi_align.default} <= ours


@pytest.mark.slow
def test_program_matches_eager(eager: Detector, program: torch.export.ExportedProgram) -> None:
    module = program.module()
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    sizes = set()
    for path in IMAGES:
        batch = preprocess([cv2.imread(str(path))], cfg)
        sizes.add(tuple(batch.images.shape[-2:]))
        with torch.inference_mode():
            ref_raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
            out_raw = module(batch.images, batch.image_sizes, batch.scale_factors)
        assert ref_raw[0].shape[0] > 0, f"{path.name}: the test needs detections"
        # the torch.export tier (STYLE.md): floats within 1e-4, labels and image ids equal; the
        # program's module runs eager's ATen kernels in this process, so floats differ only
        # where a decomposition fuses or reorders an operation
        assert torch.equal(ref_raw[2], out_raw[2]), path.name
        assert torch.equal(ref_raw[4], out_raw[4]), path.name
        for k in (0, 1, 3):  # boxes, scores, mask probabilities
            torch.testing.assert_close(out_raw[k], ref_raw[k], rtol=1e-4, atol=1e-4)
    assert len(sizes) >= 3, sizes


@pytest.mark.slow
def test_ep_container_carries_the_manifest(
    program: torch.export.ExportedProgram, mmdet2_r50_ckpt: Path, eager: Detector, tmp_path: Path
) -> None:
    manifest = Manifest(
        engine="trt",
        model="r50",
        classes=eager.class_names,
        input=SPEC,
        precision="fp16",
        device="cuda",
        torch_version=torch.__version__,
        checkpoint_path=str(mmdet2_r50_ckpt),
        checkpoint_sha256=file_sha256(mmdet2_r50_ckpt),
        preprocess=eager.preprocess_cfg,
    )
    raw = tmp_path / "raw.ep"
    torch.export.save(program, raw)
    out = tmp_path / "r50.ep"
    add_manifest(raw, manifest, out)
    assert read_manifest(out) == manifest
    extra = {"cendetect_manifest.json": ""}
    torch.export.load(out, extra_files=extra)
    assert extra["cendetect_manifest.json"] == manifest.to_json()


def test_tensorrt_compile_and_run(eager: Detector, mmdet2_r50_ckpt: Path, tmp_path: Path) -> None:
    pytest.importorskip(
        "torch_tensorrt",
        reason="torch_tensorrt is not installed (pip install 'cendetect[trt]'; needs CUDA torch "
        "and TensorRT, which this machine lacks): the TensorRT build cannot run here",
    )
    if not torch.cuda.is_available():
        pytest.skip("TensorRT engines need a CUDA device; torch sees none")
    out = tmp_path / "r50.ep"
    compile_engine(
        mmdet2_r50_ckpt,
        out,
        engine="trt",
        device="cuda",
        precision="fp16",
        min_size=(64, 64),
        opt_size=(224, 320),
        max_size=(320, 320),
    )
    runner = load_engine(out)
    cfg = dataclasses.replace(eager.preprocess_cfg, img_scale=SMALL)
    for path in IMAGES:
        batch = preprocess([cv2.imread(str(path))], cfg)
        with torch.inference_mode():
            ref_raw = eager.model(batch.images, batch.image_sizes, batch.scale_factors)
        out_raw = tuple(t.cpu() for t in runner(batch))
        (ref,) = to_detections(ref_raw, batch, eager.class_names, eager.mask_threshold)
        (got,) = to_detections(out_raw, batch, eager.class_names, eager.mask_threshold)
        # fp16 on random weights drifts far (docs/engines.md, Precision): the bar is that the
        # engine runs the spec's sizes and returns the contract, with some detections matched
        rep = match_detections(ref, got, box_iou_thr=0.5)
        assert len(got) > 0 and rep.matched > 0, path.name
