"""``cendetect run --engine KIND`` (compile once into the cache) and the engine errors a user
can meet: unknown kind, missing optional package (names the pip extra), artifact from another
torch, CUDA artifact on a CPU-only machine."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from cendetect.cli import main
from cendetect.compile.build import compile_engine
from cendetect.compile.cache import engine_cache_path
from cendetect.config import PreprocessConfig
from cendetect.engine.runners import (
    ENGINE_KINDS,
    EngineError,
    InputSpec,
    Manifest,
    load_engine,
    read_manifest,
)
from cendetect.engine.runners.manifest import file_sha256
from tests.cli.conftest import make_image, write_image


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = main(["run", "--no-progress", *args])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def image(tmp_path: Path) -> Path:
    return write_image(tmp_path / "in" / "a.png", make_image(3))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("CENDETECT_ENGINE_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "cendetect" / "engines"


def _manifest(**changes: object) -> Manifest:
    fields: dict[str, object] = {
        "engine": "onnx",
        "model": "m",
        "classes": ("bar", "mosaic"),
        "input": InputSpec(min=(64, 64), opt=(64, 64), max=(64, 64)),
        "precision": "fp32",
        "device": "cpu",
        "torch_version": torch.__version__,
        "checkpoint_path": "/nonexistent/m.pth",
        "checkpoint_sha256": "0" * 64,
        "preprocess": PreprocessConfig(),
    }
    fields.update(changes)
    return Manifest(**fields)  # type: ignore[arg-type]


def _onnx_file(path: Path, manifest: Manifest) -> Path:
    """A real (one Identity node) ONNX model carrying ``manifest`` in its metadata_props."""
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (cendetect[onnx])")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
    model = helper.make_model(graph)
    helper.set_model_props(model, {"cendetect_manifest.json": manifest.to_json()})
    onnx.save(model, str(path))
    return path


def test_unknown_engine_kind_lists_the_known_ones(image: Path, tmp_path: Path, capsys) -> None:
    rc, _, err = _run(capsys, "--input_path", str(image), "--engine", "tensorflow")
    assert rc == 2
    assert "--engine tensorflow: unknown engine kind" in err
    assert "eager, torchscript, aoti, onnx, openvino, trt" in err
    rc, _, err = _run(capsys, "--input_path", str(image), "--engine", str(tmp_path / "no.onnx"))
    assert rc == 2 and "no.onnx: no such file" in err
    with pytest.raises(EngineError, match="choose one of: torchscript, aoti, onnx, openvino, trt"):
        compile_engine(tmp_path / "any.pth", tmp_path / "x", engine="tensorflow")


def test_engine_kind_compiles_once_into_the_cache(
    image: Path, tmp_path: Path, tiny_ckpt: Path, cache: Path, capsys
) -> None:
    common = ("--input_path", str(image), "--checkpoint", str(tiny_ckpt), "--device", "cpu")
    rc, _, err = _run(
        capsys, *common, "--output_path", str(tmp_path / "e"), "--engine", "torchscript"
    )
    assert rc == 0, err
    assert "compiling torchscript engine" in err
    (artifact,) = cache.iterdir()  # no temporary file left behind
    sha = file_sha256(tiny_ckpt)
    assert artifact == engine_cache_path(tiny_ckpt, "torchscript", cache_dir=cache)
    assert sha[:16] in artifact.name and ".torchscript.cpu.fp32." in artifact.name
    assert read_manifest(artifact).checkpoint_sha256 == sha
    stamp = artifact.stat().st_mtime_ns
    rc, _, err = _run(
        capsys, *common, "--output_path", str(tmp_path / "f"), "--engine", "torchscript"
    )
    assert rc == 0 and "compiling" not in err
    assert artifact.stat().st_mtime_ns == stamp  # reused, not rebuilt
    rc, _, err = _run(capsys, *common, "--output_path", str(tmp_path / "g"), "--engine", "eager")
    assert rc == 0, err
    out_e, out_g = (tmp_path / d / "a.png" for d in ("e", "g"))
    # byte-equal: the fp32 TorchScript engine runs eager's kernels on the same input in one
    # process, no fusion on the CPU (the tiny model measured bit-equal on every ISA level)
    assert out_e.read_bytes() == out_g.read_bytes()


@pytest.mark.slow
def test_openvino_kind_runs_end_to_end(
    image: Path, tmp_path: Path, tiny_ckpt: Path, cache: Path, capsys, monkeypatch
) -> None:
    """``cendetect run --engine openvino``: compiled into the engine cache (the ONNX export,
    manifest engine openvino), OpenVINO's own blob cache under $XDG_CACHE_HOME, output within
    1 % of the eager run's pixels."""
    pytest.importorskip("openvino", reason="openvino is not installed (cendetect[openvino])")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    common = ("--input_path", str(image), "--checkpoint", str(tiny_ckpt), "--device", "cpu")
    rc, _, err = _run(capsys, *common, "--output_path", str(tmp_path / "v"), "--engine", "openvino")
    assert rc == 0, err
    (artifact,) = cache.iterdir()
    assert ".openvino.cpu.fp32." in artifact.name and read_manifest(artifact).engine == "openvino"
    assert any((tmp_path / "xdg" / "cendetect" / "openvino").iterdir())
    rc, _, err = _run(capsys, *common, "--output_path", str(tmp_path / "e"))
    assert rc == 0, err
    import cv2

    ov_out, eager_out = (cv2.imread(str(tmp_path / d / "a.png")) for d in ("v", "e"))
    differ = (ov_out != eager_out).any(axis=2).mean()
    assert differ < 0.01, f"{differ:.2%} of the pixels differ from the eager run"


@pytest.mark.slow
def test_onnx_kind_runs_end_to_end(
    image: Path, tmp_path: Path, tiny_ckpt: Path, cache: Path, capsys
) -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (cendetect[onnx])")
    common = ("--input_path", str(image), "--checkpoint", str(tiny_ckpt), "--device", "cpu")
    rc, _, err = _run(capsys, *common, "--output_path", str(tmp_path / "o"), "--engine", "onnx")
    assert rc == 0, err
    (artifact,) = cache.iterdir()
    assert artifact.suffix == ".onnx" and read_manifest(artifact).engine == "onnx"
    rc, _, err = _run(capsys, *common, "--output_path", str(tmp_path / "e"))
    assert rc == 0, err
    import cv2

    onnx_out, eager_out = (cv2.imread(str(tmp_path / d / "a.png")) for d in ("o", "e"))
    differ = (onnx_out != eager_out).any(axis=2).mean()
    assert differ < 0.01, f"{differ:.2%} of the pixels differ from the eager run"


def test_cache_key_covers_contents_kind_precision_device(tmp_path: Path, tiny_ckpt: Path) -> None:
    base = engine_cache_path(tiny_ckpt, "onnx", cache_dir=tmp_path)
    assert base.suffix == ".onnx" and torch.__version__.split("+")[0] in base.name
    others = {
        engine_cache_path(tiny_ckpt, "aoti", cache_dir=tmp_path),
        engine_cache_path(tiny_ckpt, "onnx", device="cuda", cache_dir=tmp_path),
        engine_cache_path(tiny_ckpt, "torchscript", precision="bf16", cache_dir=tmp_path),
        engine_cache_path(tiny_ckpt, "onnx", cache_dir=tmp_path, sha256="f" * 64),
    }
    assert base not in others and len(others) == 4
    # a low-precision key names the float32-stage policy: entries built under another default
    # (all-bf16 engines before the float32 stem) are not reused
    bf16 = engine_cache_path(tiny_ckpt, "torchscript", precision="bf16", cache_dir=tmp_path)
    from cendetect.compile.precision import DEFAULT_FP32_STRIDE

    assert f".bf16-s{DEFAULT_FP32_STRIDE}." in bf16.name
    with pytest.raises(EngineError, match="unknown engine 'tf'"):
        engine_cache_path(tiny_ckpt, "tf", cache_dir=tmp_path)


def test_missing_onnxruntime_names_the_extra(
    image: Path, tmp_path: Path, tiny_ckpt: Path, cache: Path, capsys, monkeypatch
) -> None:
    artifact = _onnx_file(tmp_path / "m.onnx", _manifest())
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    fix = re.escape("pip install 'cendetect[onnx]'")
    rc, _, err = _run(
        capsys, "--input_path", str(image), "--checkpoint", str(tiny_ckpt), "--engine", "onnx",
        "--device", "cpu",
    )  # fmt: skip
    assert rc == 2 and re.search(fix, err), err
    assert not cache.exists() or not any(cache.iterdir())
    with pytest.raises(EngineError, match=fix):
        compile_engine(tiny_ckpt, tmp_path / "x.onnx", engine="onnx")
    with pytest.raises(EngineError, match=fix):
        load_engine(artifact)


def test_missing_torch_tensorrt_names_the_extra(
    image: Path, tmp_path: Path, tiny_ckpt: Path, cache: Path, capsys, monkeypatch
) -> None:
    from cendetect.compile.trt import add_manifest

    monkeypatch.setitem(sys.modules, "torch_tensorrt", None)  # absent here anyway
    fix = re.escape("pip install 'cendetect[trt]'")
    rc, _, err = _run(
        capsys, "--input_path", str(image), "--checkpoint", str(tiny_ckpt), "--engine", "trt",
        "--device", "cpu",
    )  # fmt: skip
    assert rc == 2 and re.search(fix, err), err
    with pytest.raises(EngineError, match=fix):
        compile_engine(tiny_ckpt, tmp_path / "x.ep", engine="trt", device="cuda")

    class AddOne(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + 1

    raw = tmp_path / "raw.ep"
    torch.export.save(torch.export.export(AddOne(), (torch.ones(2),)), raw)
    artifact = tmp_path / "m.ep"
    add_manifest(raw, _manifest(engine="trt", device="cpu"), artifact)
    with pytest.raises(EngineError, match=fix):
        load_engine(artifact)


def test_onnx_artifact_from_another_torch_is_refused(tmp_path: Path) -> None:
    old = _onnx_file(tmp_path / "old.onnx", _manifest(torch_version="2.4.1+cu121"))
    with pytest.raises(EngineError, match="built with torch 2.4.1") as info:
        load_engine(old)
    assert "cendetect-compile --checkpoint /nonexistent/m.pth --engine onnx" in str(info.value)


def test_cuda_onnx_artifact_on_a_cpu_only_machine(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the CPU-only refusal cannot be shown here")
    gpu = _onnx_file(tmp_path / "gpu.onnx", _manifest(device="cuda"))
    with pytest.raises(EngineError, match="built for CUDA but torch sees no CUDA device"):
        load_engine(gpu)


def test_every_kind_has_a_suffix_and_cli_choice() -> None:
    assert ENGINE_KINDS == {
        "torchscript": ".ts", "aoti": ".pt2", "onnx": ".onnx", "openvino": ".onnx", "trt": ".ep"
    }  # fmt: skip
