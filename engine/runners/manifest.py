"""The manifest every engine artifact carries, and the checks made before an artifact is loaded.

An artifact is one file: a zip archive (TorchScript's ``torch.jit.save`` format, AOTInductor's
``.pt2`` package, a TensorRT ``.ep`` exported program) holding ``cendetect_manifest.json`` in its
``extra/`` folder, or an ONNX model holding it in ``metadata_props``. The manifest is
read with :mod:`zipfile`, without deserialising the program, so that an artifact built by another
torch version is refused with a readable message before torch tries to run it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cendetect.config import PreprocessConfig

__all__ = [
    "ENGINE_EXTRAS",
    "ENGINE_KINDS",
    "MANIFEST_NAME",
    "PRECISIONS",
    "EngineError",
    "InputSpec",
    "Manifest",
    "check_compatible",
    "file_sha256",
    "read_manifest",
    "require_engine_package",
]

#: the file name of the manifest inside an artifact's ``extra/`` folder
MANIFEST_NAME = "cendetect_manifest.json"
#: engine kind -> file suffix of its artifact
ENGINE_KINDS: dict[str, str] = {
    "torchscript": ".ts",
    "aoti": ".pt2",
    "onnx": ".onnx",
    "openvino": ".onnx",  # the same ONNX export, run by OpenVINO (engine/runners/openvino.py)
    "trt": ".ep",
}
#: engine kind -> (module it needs at build and run time, pip extra that installs it)
ENGINE_EXTRAS: dict[str, tuple[tuple[str, ...], str]] = {
    "onnx": (("onnxruntime", "onnx", "onnxscript"), "onnx"),
    "openvino": (("openvino", "onnx", "onnxscript"), "openvino"),
    "trt": (("torch_tensorrt",), "trt"),
}
PRECISIONS = ("fp32", "fp16", "bf16")
FORMAT_VERSION = 1


class EngineError(ValueError):
    """An engine artifact cannot be built or loaded here; the message says why and what to do.

    Attributes:
        path: the artifact (or checkpoint) the error is about, if any.
    """

    def __init__(self, message: str, *, path: str | os.PathLike | None = None) -> None:
        super().__init__(message)
        self.path = None if path is None else os.fspath(path)


@dataclass(frozen=True)
class InputSpec:
    """Network-input sizes an artifact accepts, ``(height, width)`` in pixels after padding.

    Every size is a multiple of ``size_divisor``. ``min == opt == max`` is a static shape;
    ``any_size=True`` marks a program that takes any batch and size (TorchScript).

    Attributes:
        min: smallest ``(h, w)``; smaller batches are zero-padded up to it.
        opt: the size the engine is tuned for (TensorRT's ``opt_shape``).
        max: largest ``(h, w)``; larger batches are refused.
        batch: images per call the program was built for (export engines run one at a time).
        any_size: the program takes any batch and size (``min``/``max`` are then informative).
    """

    min: tuple[int, int]
    opt: tuple[int, int]
    max: tuple[int, int]
    batch: int = 1
    any_size: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "min": list(self.min),
            "opt": list(self.opt),
            "max": list(self.max),
            "batch": self.batch,
            "any_size": self.any_size,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        return cls(
            min=(int(d["min"][0]), int(d["min"][1])),
            opt=(int(d["opt"][0]), int(d["opt"][1])),
            max=(int(d["max"][0]), int(d["max"][1])),
            batch=int(d.get("batch", 1)),
            any_size=bool(d.get("any_size", False)),
        )


@dataclass(frozen=True)
class Manifest:
    """What an artifact is and how it was made (stored as JSON inside the artifact).

    Attributes:
        engine: a key of ``ENGINE_KINDS`` (``'torchscript'``, ``'aoti'``, ``'onnx'``, ``'trt'``).
        model: the model name (zoo name, else the checkpoint's file stem).
        classes: class names in label order.
        input: network-input sizes the program accepts.
        precision: ``'fp32'``, ``'fp16'`` (CUDA) or ``'bf16'`` (CPU): the dtype of the
            convolutions and fully connected layers; box decoding, NMS and thresholds are fp32.
        device: ``'cpu'`` or ``'cuda'``: where the program was built to run.
        torch_version: ``torch.__version__`` of the build.
        checkpoint_path: absolute path of the checkpoint the artifact was built from.
        checkpoint_sha256: hex digest of that checkpoint file.
        preprocess: the model's resize/normalise/pad settings.
        mask_threshold: binarisation threshold of the pasted masks.
        cendetect_version: version of the package that built it.
        format_version: version of this manifest layout.
        layout: ``'nchw'`` or ``'channels_last'``: the memory format the program's
            convolutions run in (channels-last: BatchNorm folded into the convolutions).
        fp32_stride: fp16/bf16 artifacts: the image and the backbone stages up to this output
            stride run in float32 (0: every convolution in the low dtype; artifacts built
            before this field existed are 0).
        paste: how the masks are pasted: ``'mmdet'`` or ``'legacy'`` (maskrcnn-benchmark
            checkpoints; artifacts built before this field existed are ``'mmdet'``).
    """

    engine: str
    model: str
    classes: tuple[str, ...]
    input: InputSpec
    precision: str
    device: str
    torch_version: str
    checkpoint_path: str
    checkpoint_sha256: str
    preprocess: PreprocessConfig
    mask_threshold: float = 0.5
    cendetect_version: str = ""
    format_version: int = FORMAT_VERSION
    layout: str = "nchw"
    fp32_stride: int = 0
    paste: str = "mmdet"

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["classes"] = list(self.classes)
        d["input"] = self.input.as_dict()
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: str = "<manifest>") -> Manifest:
        try:
            d = json.loads(text)
            pre = d["preprocess"]
            return cls(
                engine=str(d["engine"]),
                model=str(d["model"]),
                classes=tuple(str(c) for c in d["classes"]),
                input=InputSpec.from_dict(d["input"]),
                precision=str(d["precision"]),
                device=str(d["device"]),
                torch_version=str(d["torch_version"]),
                checkpoint_path=str(d["checkpoint_path"]),
                checkpoint_sha256=str(d["checkpoint_sha256"]),
                preprocess=PreprocessConfig(
                    img_scale=tuple(pre["img_scale"]),
                    keep_ratio=bool(pre["keep_ratio"]),
                    mean=tuple(pre["mean"]),
                    std=tuple(pre["std"]),
                    to_rgb=bool(pre["to_rgb"]),
                    size_divisor=int(pre["size_divisor"]),
                    resize=str(pre.get("resize", "mmcv")),  # artifacts before the field: mmcv
                ),
                mask_threshold=float(d.get("mask_threshold", 0.5)),
                cendetect_version=str(d.get("cendetect_version", "")),
                format_version=int(d.get("format_version", FORMAT_VERSION)),
                layout=str(d.get("layout", "nchw")),
                fp32_stride=int(d.get("fp32_stride", 0)),
                paste=str(d.get("paste", "mmdet")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise EngineError(
                f"{source}: the engine manifest is malformed ({type(exc).__name__}: {exc})",
                path=source,
            ) from None


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def require_engine_package(kind: str, modules: tuple[str, ...] | None = None) -> None:
    """Refuse an engine whose optional package is not installed, naming the pip extra.

    Args:
        kind: engine kind (``'onnx'``, ``'trt'``; kinds without an extra always pass).
        modules: the modules to check (default: all of the kind's, ``ENGINE_EXTRAS``).

    Raises:
        EngineError: ``pip install 'cendetect[EXTRA]'`` in the message.
    """
    if kind not in ENGINE_EXTRAS:
        return
    needed, extra = ENGINE_EXTRAS[kind]
    for module in modules or needed:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise EngineError(
                f"--engine {kind} needs the Python package {module!r}, which cannot be imported "
                f"here ({exc}); install it with: pip install 'cendetect[{extra}]'"
            ) from None


def read_manifest(path: str | os.PathLike) -> Manifest:
    """Read the manifest of an artifact without loading its program.

    Raises:
        EngineError: the file is missing, is not a zip archive, or holds no cendetect manifest.
    """
    p = Path(path)
    if not p.is_file():
        raise EngineError(f"engine {p}: no such file", path=p)
    if not zipfile.is_zipfile(p):
        from cendetect.engine.runners.onnx import read_onnx_metadata

        text = read_onnx_metadata(p, MANIFEST_NAME)  # an ONNX model keeps it in metadata_props
        if text is not None:
            return Manifest.from_json(text, source=str(p))
        raise EngineError(
            f"engine {p}: not a cendetect engine artifact (not a zip archive); build one with "
            "`cendetect-compile --checkpoint MODEL.pth --engine torchscript -o ENGINE.ts`",
            path=p,
        )
    with zipfile.ZipFile(p) as zf:
        # TorchScript stores it as <archive>/extra/NAME, a .pt2 package as package/extra/NAME.
        names = [n for n in zf.namelist() if n.endswith(f"extra/{MANIFEST_NAME}")]
        if not names:
            raise EngineError(
                f"engine {p}: no {MANIFEST_NAME} inside; this file was not written by "
                "cendetect-compile. Rebuild it with `cendetect-compile --checkpoint MODEL.pth`",
                path=p,
            )
        text = zf.read(names[0]).decode("utf-8")
    return Manifest.from_json(text, source=str(p))


def _base_version(version: str) -> str:
    # '2.13.0+cpu' and '2.13.0+cu128' run each other's TorchScript; the local tag only names the
    # build variant, while the device is checked separately.
    return version.split("+", 1)[0]


def rebuild_hint(manifest: Manifest, path: str | os.PathLike) -> str:
    """The ``cendetect-compile`` command line that rebuilds the artifact at ``path``."""
    cmd = [
        "cendetect-compile",
        f"--checkpoint {manifest.checkpoint_path}",
        f"--engine {manifest.engine}",
        f"--device {manifest.device}",
    ]
    if manifest.precision != "fp32":
        cmd.append(f"--{manifest.precision}")
    spec = manifest.input
    if not spec.any_size and spec.min == spec.max:
        cmd.append(f"--input-size {spec.max[0]}x{spec.max[1]}")
    elif not spec.any_size:
        cmd += [
            f"--min-size {spec.min[0]}x{spec.min[1]}",
            f"--opt-size {spec.opt[0]}x{spec.opt[1]}",
            f"--max-size {spec.max[0]}x{spec.max[1]}",
        ]
    cmd.append(f"-o {os.fspath(path)}")
    return " ".join(cmd)


def check_compatible(
    manifest: Manifest,
    path: str | os.PathLike,
    device: torch.device,
    checkpoint: str | os.PathLike | None = None,
) -> None:
    """Refuse an artifact this machine should not run, with the command that rebuilds it.

    Checks, in order: the engine kind is known; the torch version (without its local tag)
    equals the one that built it; a CUDA engine has a CUDA device; the checkpoint it was built
    from (``checkpoint``, else the path recorded in the manifest when that file still exists)
    still hashes to the recorded sha256.

    Raises:
        EngineError: naming the artifact, the mismatch and the ``cendetect-compile`` command.
    """
    rebuild = f"Rebuild it with: {rebuild_hint(manifest, path)}"
    if manifest.engine not in ENGINE_KINDS:
        raise EngineError(
            f"engine {path}: unknown engine kind {manifest.engine!r} (this cendetect knows "
            f"{', '.join(ENGINE_KINDS)}); it was built by cendetect {manifest.cendetect_version}",
            path=path,
        )
    if _base_version(manifest.torch_version) != _base_version(torch.__version__):
        raise EngineError(
            f"engine {path} was built with torch {manifest.torch_version} but this is torch "
            f"{torch.__version__}; compiled programs are tied to the torch that built them. "
            + rebuild,
            path=path,
        )
    if manifest.device == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            f"engine {path} was built for CUDA but torch sees no CUDA device on this machine. "
            f"Build a CPU engine instead: {rebuild_hint(_on_cpu(manifest), path)}",
            path=path,
        )
    if manifest.device == "cuda" and device.type != "cuda":
        raise EngineError(
            f"engine {path} was built for CUDA but device={device} was asked for. Load it "
            f"with device='cuda', or build a CPU engine: {rebuild_hint(_on_cpu(manifest), path)}",
            path=path,
        )
    if manifest.device == "cpu" and device.type != "cpu":
        raise EngineError(
            f"engine {path} was built for the CPU but device={device} was asked for. "
            f"Load it with device='cpu', or build a CUDA engine: "
            f"{rebuild_hint(dataclasses.replace(manifest, device=device.type), path)}",
            path=path,
        )
    ckpt = Path(checkpoint) if checkpoint is not None else Path(manifest.checkpoint_path)
    if checkpoint is not None and not ckpt.is_file():
        raise EngineError(f"checkpoint {ckpt}: no such file", path=ckpt)
    if ckpt.is_file():
        digest = file_sha256(ckpt)
        if digest != manifest.checkpoint_sha256:
            raise EngineError(
                f"engine {path} was built from a checkpoint with sha256 "
                f"{manifest.checkpoint_sha256[:16]}..., but {ckpt} now hashes to "
                f"{digest[:16]}...: the weights changed since the engine was built. "
                + rebuild.replace(manifest.checkpoint_path, str(ckpt)),
                path=path,
            )


def _on_cpu(manifest: Manifest) -> Manifest:
    precision = "fp32" if manifest.precision == "fp16" else manifest.precision
    return dataclasses.replace(manifest, device="cpu", precision=precision)
