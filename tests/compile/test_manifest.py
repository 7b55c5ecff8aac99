"""Artifact manifest, input sizes and the refusals that protect ``Detector.from_engine``."""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import pytest
import torch

from cendetect import Detector
from cendetect.compile.build import (
    compile_engine,
    compile_engines,
    default_input_spec,
    input_spec,
    parse_size,
)
from cendetect.compile.cli import main as compile_main
from cendetect.config import PreprocessConfig
from cendetect.engine.runners import EngineError, InputSpec, Manifest, read_manifest
from tests.compile.conftest import rewrite_manifest


def _manifest(**changes: object) -> Manifest:
    base = Manifest(
        engine="torchscript",
        model="m",
        classes=("bar", "mosaic"),
        input=InputSpec(min=(64, 64), opt=(800, 1344), max=(1344, 1344)),
        precision="fp32",
        device="cpu",
        torch_version=torch.__version__,
        checkpoint_path="/nonexistent/m.pth",
        checkpoint_sha256="0" * 64,
        preprocess=PreprocessConfig(),
    )
    return dataclasses.replace(base, **changes)


def test_manifest_json_round_trip() -> None:
    m = _manifest(precision="bf16", mask_threshold=0.4)
    assert Manifest.from_json(m.to_json()) == m


def test_sizes() -> None:
    assert parse_size("800x1344") == (800, 1344)
    assert parse_size("640") == (640, 640)
    with pytest.raises(ValueError, match="HEIGHTxWIDTH"):
        parse_size("big")
    spec = default_input_spec(PreprocessConfig())
    assert spec == InputSpec(min=(64, 64), opt=(800, 1344), max=(1344, 1344))
    fixed = default_input_spec(PreprocessConfig(img_scale=(1000, 600), keep_ratio=False))
    assert fixed.min == fixed.max == (608, 1024)
    assert input_spec(PreprocessConfig(), input_size=(300, 500)).max == (320, 512)
    assert input_spec(PreprocessConfig(), max_size=(320, 320)).opt == (320, 320)
    with pytest.raises(ValueError, match="min <= opt <= max"):
        input_spec(PreprocessConfig(), min_size=(640, 640), max_size=(320, 320))
    with pytest.raises(ValueError, match=">= 64"):
        input_spec(PreprocessConfig(), min_size=(32, 32))


def test_read_manifest_refuses_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no such file"):
        read_manifest(tmp_path / "missing.ts")
    plain = tmp_path / "plain.ts"
    plain.write_bytes(b"not a zip")
    with pytest.raises(EngineError, match="not a zip archive"):
        read_manifest(plain)
    other = tmp_path / "other.ts"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("archive/data.pkl", b"")
    with pytest.raises(EngineError, match="not written by cendetect-compile"):
        Detector.from_engine(other, refine="off")


def test_compile_refuses_bad_options(mmdet2_r50_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.ts"
    with pytest.raises(EngineError, match="unknown engine 'tensorflow'"):
        compile_engine(mmdet2_r50_ckpt, out, engine="tensorflow")
    with pytest.raises(EngineError, match="--fp16 is for CUDA"):
        compile_engine(mmdet2_r50_ckpt, out, precision="fp16")
    with pytest.raises(EngineError, match="TorchScript engine takes any input size"):
        compile_engine(mmdet2_r50_ckpt, out, max_size=(320, 320))
    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="no CUDA device"):
            compile_engine(mmdet2_r50_ckpt, out, device="cuda")
    assert not out.exists()


def test_cli_errors(mmdet2_r50_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        compile_main(["--checkpoint", str(mmdet2_r50_ckpt), "--engine", "tensorflow"])
    assert "unknown engine" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compile_main(["--model", "mask_rcnn_r50_fpn", "--model_directory", str(tmp_path)])
    assert f"no weights at {tmp_path / 'mask_rcnn_r50_fpn.pth'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compile_main(["--model", "yolo"])
    assert "--model yolo: unknown" in capsys.readouterr().err
    rc = compile_main(["--checkpoint", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "a.ts")])
    assert rc == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_artifact_manifest_records_the_build(r50_ts: Path, mmdet2_r50_ckpt: Path) -> None:
    from cendetect.engine.runners.manifest import file_sha256

    m = read_manifest(r50_ts)
    assert (m.engine, m.precision, m.device) == ("torchscript", "fp32", "cpu")
    assert m.classes == ("bar", "mosaic")
    assert m.torch_version == torch.__version__
    assert m.checkpoint_sha256 == file_sha256(mmdet2_r50_ckpt)
    assert m.input.any_size
    det = Detector.from_engine(r50_ts, refine="off")
    assert det.engine == "torchscript"
    assert det.class_names == ("bar", "mosaic")


@pytest.mark.slow
def test_refuses_other_torch_version(r50_ts: Path, tmp_path: Path) -> None:
    old = rewrite_manifest(r50_ts, tmp_path / "old.ts", torch_version="2.4.1+cu121")
    with pytest.raises(EngineError, match="built with torch 2.4.1") as info:
        Detector.from_engine(old, refine="off")
    assert "Rebuild it with: cendetect-compile --checkpoint" in str(info.value)


@pytest.mark.slow
def test_refuses_changed_checkpoint(r50_ts: Path, mmdet2_r50_ckpt: Path, tmp_path: Path) -> None:
    changed = tmp_path / "retrained.pth"
    changed.write_bytes(mmdet2_r50_ckpt.read_bytes() + b"\0")
    with pytest.raises(EngineError, match="weights changed since the engine was built") as info:
        Detector.from_engine(r50_ts, checkpoint=changed, refine="off")
    assert f"cendetect-compile --checkpoint {changed}" in str(info.value)
    moved = rewrite_manifest(r50_ts, tmp_path / "moved.ts", checkpoint_path=str(changed))
    with pytest.raises(EngineError, match="weights changed"):
        Detector.from_engine(
            moved, refine="off"
        )  # the recorded checkpoint path now holds other weights


@pytest.mark.slow
def test_refuses_unknown_engine_and_cuda_without_cuda(r50_ts: Path, tmp_path: Path) -> None:
    odd = rewrite_manifest(r50_ts, tmp_path / "odd.ts", engine="tflite")
    with pytest.raises(EngineError, match="unknown engine kind 'tflite'"):
        Detector.from_engine(odd, refine="off")
    gpu = rewrite_manifest(r50_ts, tmp_path / "gpu.ts", device="cuda", precision="fp16")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU-only refusal cannot be shown here")
    with pytest.raises(EngineError, match="built for CUDA") as info:
        Detector.from_engine(gpu, refine="off")
    assert "--device cpu" in str(info.value)


def test_several_engines_share_one_export(
    mmdet2_r50_ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """compile_engines: one torch.export for all export engines (OpenVINO's fp32 graph too),
    each saved from it with its own manifest, and one ONNX translation for the ``onnx`` and
    ``openvino`` files (the builds themselves are exercised by the export_engines fixture)."""
    import cendetect.compile.aoti as aoti
    import cendetect.compile.export as export
    import cendetect.compile.onnx as onnx_mod
    import cendetect.compile.trt as trt

    program = object()
    calls: list[str] = []
    saved: dict[str, tuple[object, Manifest]] = {}
    monkeypatch.setattr(export, "export_program", lambda *a: calls.append("export") or program)
    monkeypatch.setattr(trt, "fit_spec", lambda spec, prog: spec)
    monkeypatch.setattr(aoti, "save_aoti", lambda p, m, o: saved.update({"aoti": (p, m)}))
    monkeypatch.setattr(
        onnx_mod, "translate_onnx", lambda p: calls.append("translate") or ("onnx of", p)
    )
    monkeypatch.setattr(onnx_mod, "write_onnx", lambda t, m, o: saved.update({m.engine: (t[1], m)}))
    outputs = {"aoti": tmp_path / "a.pt2", "onnx": tmp_path / "a.onnx"}
    try:
        import openvino  # noqa: F401

        outputs["openvino"] = tmp_path / "a.openvino.onnx"
    except ImportError:  # the openvino extra is optional
        pass
    manifests = compile_engines(mmdet2_r50_ckpt, outputs, max_size=(320, 320))
    assert calls == ["export", "translate"]
    assert {k: v[0] for k, v in saved.items()} == dict.fromkeys(outputs, program)
    assert {k: m.engine for k, m in manifests.items()} == {k: k for k in outputs}
    assert len({m.input for m in manifests.values()}) == 1
    assert len({m.checkpoint_sha256 for m in manifests.values()}) == 1


def test_several_engines_are_all_checked_first(
    mmdet2_r50_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    outputs = {"aoti": tmp_path / "a.pt2", "torchscript": tmp_path / "a.ts"}
    with pytest.raises(EngineError, match="TorchScript engine takes any input size"):
        compile_engines(mmdet2_r50_ckpt, outputs, max_size=(320, 320))
    assert not any(tmp_path.iterdir())  # the aoti engine was not built either
    ckpt = str(mmdet2_r50_ckpt)
    with pytest.raises(SystemExit):
        compile_main(["--checkpoint", ckpt, "--engine", "aoti,tensorflow"])
    assert "--engine tensorflow: unknown engine" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compile_main(["--checkpoint", ckpt, "--engine", "aoti,onnx", "-o", str(tmp_path / "x")])
    assert "leave it out when building several engines" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compile_main(["--checkpoint", ckpt, "--engine", "aoti,aoti"])
    assert "give each engine once" in capsys.readouterr().err
