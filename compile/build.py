"""Checkpoint -> model -> engine artifacts with their manifests (``compile_engine``,
``compile_engines`` for several engines of one checkpoint from one export)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

import cendetect
from cendetect.config import PreprocessConfig
from cendetect.engine.runners import ENGINE_KINDS, PRECISIONS, EngineError, InputSpec, Manifest
from cendetect.engine.runners.manifest import file_sha256, require_engine_package

__all__ = ["compile_engine", "compile_engines", "default_input_spec", "input_spec", "parse_size"]

#: the smallest dynamic input side: the exporter needs k >= 2 multiples of the divisor
_MIN_STEPS = 2


def parse_size(text: str) -> tuple[int, int]:
    """``'800x1344'`` (height x width) or ``'1344'`` (square) -> ``(h, w)``."""
    parts = text.lower().replace(",", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {text!r}: expected HEIGHTxWIDTH such as 800x1344") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise ValueError(f"size {text!r}: expected two positive ints, HEIGHTxWIDTH")
    return values[0], values[1]


def _round_up(size: tuple[int, int], d: int) -> tuple[int, int]:
    return (-(-size[0] // d) * d, -(-size[1] // d) * d)


def default_input_spec(cfg: PreprocessConfig) -> InputSpec:
    """Sizes every image the pre-processing can produce: up to the padded long edge squared.

    With ``keep_ratio`` an image fits ``img_scale`` in either orientation, so both sides are at
    most its long edge (padded); ``opt`` is the landscape ``short x long`` size. Without it every
    input is exactly ``img_scale`` (w, h) padded: a static shape.
    """
    d = max(cfg.size_divisor, 1)
    if not cfg.keep_ratio:
        w, h = cfg.img_scale
        size = _round_up((h, w), d)
        return InputSpec(min=size, opt=size, max=size)
    long, short = max(cfg.img_scale), min(cfg.img_scale)
    if cfg.resize == "maskrcnn_benchmark":
        # its size rule rounds the short side up before truncating the long one, which can
        # pass MAX_SIZE_TEST by up to half the aspect ratio (1334 x 417 for 1333): one more
        # size-divisor step covers ratios up to 2 * d
        long += d
    lo = _MIN_STEPS * d
    return InputSpec(min=(lo, lo), opt=_round_up((short, long), d), max=_round_up((long, long), d))


def input_spec(
    cfg: PreprocessConfig,
    min_size: tuple[int, int] | None = None,
    opt_size: tuple[int, int] | None = None,
    max_size: tuple[int, int] | None = None,
    input_size: tuple[int, int] | None = None,
) -> InputSpec:
    """The spec from command-line sizes (each ``(h, w)``), defaults filled from ``cfg``.

    Sizes are rounded up to the size divisor. ``input_size`` makes a static shape.

    Raises:
        ValueError: ``input_size`` combined with min/opt/max, or min <= opt <= max violated.
    """
    d = max(cfg.size_divisor, 1)
    if input_size is not None:
        if min_size or opt_size or max_size:
            raise ValueError("--input-size makes a static shape; drop --min/--opt/--max-size")
        size = _round_up(input_size, d)
        return InputSpec(min=size, opt=size, max=size)
    default = default_input_spec(cfg)
    lo = _round_up(min_size, d) if min_size else default.min
    hi = _round_up(max_size, d) if max_size else default.max
    if opt_size:
        opt = _round_up(opt_size, d)
    else:  # the default, moved inside the asked range
        opt = tuple(min(max(o, a), b) for o, a, b in zip(default.opt, lo, hi))  # type: ignore[assignment]
    if min(lo) < _MIN_STEPS * d and lo != hi:
        raise ValueError(
            f"--min-size {lo[0]}x{lo[1]}: a dynamic shape needs sides >= {_MIN_STEPS * d} "
            f"({_MIN_STEPS} x size divisor {d}); smaller images are zero-padded up to it"
        )
    if not (lo[0] <= opt[0] <= hi[0] and lo[1] <= opt[1] <= hi[1]):
        raise ValueError(
            f"sizes must satisfy min <= opt <= max per side, got min {lo}, opt {opt}, max {hi}"
        )
    return InputSpec(min=lo, opt=opt, max=hi)


def compile_engine(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike,
    *,
    engine: str = "torchscript",
    precision: str = "fp32",
    device: str = "cpu",
    model: str | None = None,
    classes: Sequence[str] | None = None,
    min_size: tuple[int, int] | None = None,
    opt_size: tuple[int, int] | None = None,
    max_size: tuple[int, int] | None = None,
    input_size: tuple[int, int] | None = None,
    channels_last: bool = False,
    fp32_stride: int | None = None,
    config: str | os.PathLike | None = None,
) -> Manifest:
    """Build the artifact of ``checkpoint`` at ``output`` and return its manifest.

    Args:
        checkpoint: mmdetection 2.x/3.x checkpoint or bare state dict.
        output: the artifact file to write.
        engine: ``'torchscript'`` (any input size), or an export engine built for the
            ``spec`` sizes: ``'aoti'`` (``.pt2``), ``'onnx'`` (``.onnx``, fp32),
            ``'trt'`` (``.ep``, CUDA, needs torch_tensorrt).
        precision: ``'fp32'``; ``'fp16'`` needs ``device='cuda'``; ``'bf16'`` is for the CPU.
        device: ``'cpu'`` or ``'cuda'``: where the artifact will run.
        model: zoo name; needed for a bare state dict, and becomes the manifest's model name.
        classes: class names for a checkpoint without them.
        min_size, opt_size, max_size: network-input ``(h, w)`` range of an export engine
            (default :func:`default_input_spec`); ``input_size``: one static size instead.
        channels_last: TorchScript only: an fp32 engine in channels-last memory with BatchNorm
            folded into the convolutions (faster on CPUs; equal to eager up to float rounding,
            not bit for bit). bf16 TorchScript engines are channels-last anyway.
        fp32_stride: fp16/bf16 only: the image and the backbone stages whose output stride is
            at most this stay float32 (None: ``DEFAULT_FP32_STRIDE`` = 2, the stem; 0: every
            convolution in the low dtype). Recorded in the manifest.
        config: the training config file applied to the checkpoint (an mmdetection ``.py``,
            a detectron2 / maskrcnn-benchmark ``.yaml``), see ``Detector.from_checkpoint``.

    Raises:
        EngineError: unknown engine or precision, fp16 on the CPU, CUDA asked for without CUDA,
            the engine's optional package missing (names the pip extra).
    """
    manifests = compile_engines(
        checkpoint,
        {engine: output},
        precision=precision,
        device=device,
        model=model,
        classes=classes,
        min_size=min_size,
        opt_size=opt_size,
        max_size=max_size,
        input_size=input_size,
        channels_last=channels_last,
        fp32_stride=fp32_stride,
        config=config,
    )
    return manifests[engine]


def compile_engines(
    checkpoint: str | os.PathLike,
    outputs: Mapping[str, str | os.PathLike],
    *,
    precision: str = "fp32",
    device: str = "cpu",
    model: str | None = None,
    classes: Sequence[str] | None = None,
    min_size: tuple[int, int] | None = None,
    opt_size: tuple[int, int] | None = None,
    max_size: tuple[int, int] | None = None,
    input_size: tuple[int, int] | None = None,
    channels_last: bool = False,
    fp32_stride: int | None = None,
    config: str | os.PathLike | None = None,
) -> dict[str, Manifest]:
    """Build several engines of one checkpoint: ``outputs`` maps engine kind -> artifact file.

    The checkpoint is read once, and the export engines (``aoti``, ``onnx``, ``trt``) share one
    ``torch.export`` program, which is about half of each one's build time. Every option means
    what it means for :func:`compile_engine` and applies to every engine; all are checked
    before anything is built. Returns each engine's manifest, keyed like ``outputs``.
    """
    from cendetect.detector import Detector

    if not outputs:
        raise EngineError("no engine to build: outputs is empty")
    sizes = (min_size, opt_size, max_size, input_size)
    for engine in outputs:
        _check_options(engine, precision, device, any(sizes), channels_last)
    stride = _fp32_stride(precision, fp32_stride)
    if "openvino" in outputs and fp32_stride is not None:
        raise EngineError(
            "--fp32-stride does not apply to --engine openvino: OpenVINO's bf16 hint chooses "
            "its own bf16 layers"
        )
    det = Detector.from_checkpoint(
        checkpoint, device=device, model=model, classes=classes, config=config
    )
    pre = det.preprocess_cfg
    base = Manifest(
        engine="",
        model=model or Path(checkpoint).stem,
        classes=det.class_names,
        input=input_spec(pre, *sizes),
        precision=precision,
        device=device,
        torch_version=torch.__version__,
        checkpoint_path=str(Path(checkpoint).resolve()),
        checkpoint_sha256=file_sha256(checkpoint),
        preprocess=pre,
        mask_threshold=det.mask_threshold,
        cendetect_version=cendetect.__version__,
        layout="nchw",
        fp32_stride=stride,
        paste=det.paste,
    )
    manifests: dict[str, Manifest] = {}
    program: torch.export.ExportedProgram | None = None
    translated: dict[int, Any] = {}  # id(program) -> its ONNX translation (done once)
    layout = "nchw"
    for engine, output in outputs.items():
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        manifest = dataclasses.replace(base, engine=engine)
        if engine == "openvino":
            # the float32 graph whatever the precision: OpenVINO's bf16 hint picks its own bf16
            # layers at load time (engine/runners/openvino.py)
            from cendetect.compile.export import export_program

            if precision == "fp32" and program is not None:
                fp32 = program  # the fp32 program of an onnx/aoti output of this call
            else:
                fp32 = export_program(det.model, base.input, max(pre.size_divisor, 1), device)
                if precision == "fp32":
                    program = fp32  # later onnx/aoti outputs of this call reuse it
            manifest = dataclasses.replace(manifest, layout="nchw", fp32_stride=0)
            _write_onnx(fp32, manifest, output, translated)
            manifests[engine] = manifest
            continue
        if engine == "torchscript":
            from cendetect.compile.torchscript import save_torchscript

            net = _ready(
                det.model, precision, channels_last=True if channels_last else None, stride=stride
            )
            runs_nhwc = bool(getattr(net, "channels_last", False))
            manifest = dataclasses.replace(
                manifest,
                input=dataclasses.replace(manifest.input, any_size=True),
                layout="channels_last" if runs_nhwc else "nchw",
            )
            save_torchscript(net, manifest, output)
            manifests[engine] = manifest
            continue
        if program is None:
            from cendetect.compile.export import export_program

            # bf16 export engines run channels-last like bf16 TorchScript (the default model's
            # AOTI forward: 72-76 ms instead of 106-109 ms NCHW), except the mask heads: AOTI
            # miscompiles channels-last convolutions over the data-dependent number of
            # detections (mean mask IoU 0.56 on the samples; tests/compile/
            # test_precision_default_model.py). fp32 stays the eager model itself, fp16 NCHW.
            net = _ready(
                det.model,
                precision,
                channels_last=precision == "bf16",
                nchw_mask_heads=True,
                stride=stride,
            )
            layout = "channels_last" if getattr(net, "channels_last", False) else "nchw"
            program = export_program(net, base.input, max(pre.size_divisor, 1), device)
        manifest = dataclasses.replace(manifest, layout=layout)
        if engine == "onnx":
            _write_onnx(program, manifest, output, translated)
        elif engine == "trt":
            from cendetect.compile.trt import save_trt

            manifest = save_trt(program, manifest, output)  # min fitted to the program
        else:
            from cendetect.compile.aoti import save_aoti
            from cendetect.compile.trt import fit_spec

            # the exporter can narrow the range asked for (a 64-pixel side makes the stride-64
            # FPN level 1 pixel, which it specialises away): record what the program takes,
            # so the runner pads smaller images up to it instead of failing a shape guard
            manifest = dataclasses.replace(manifest, input=fit_spec(manifest.input, program))
            save_aoti(program, manifest, output)
        manifests[engine] = manifest
    return manifests


def _write_onnx(
    program: torch.export.ExportedProgram,
    manifest: Manifest,
    output: str | os.PathLike,
    translated: dict[int, Any],
) -> None:
    """Write ``program`` as ONNX under ``manifest``, translating it only the first time (an fp32
    ``onnx`` and ``openvino`` output of one call are the same graph under two manifests)."""
    from cendetect.compile.onnx import translate_onnx, write_onnx

    if id(program) not in translated:
        translated[id(program)] = translate_onnx(program)
    write_onnx(translated[id(program)], manifest, output)


def _check_options(
    engine: str, precision: str, device: str, sized: bool, channels_last: bool
) -> None:
    """Refuse an engine/option combination before any work, with the fix in the message."""
    if engine not in ENGINE_KINDS:
        raise EngineError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINE_KINDS)}")
    require_engine_package(engine)  # onnx / trt: names the pip extra when missing
    if precision not in PRECISIONS:
        raise EngineError(
            f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}"
        )
    if device not in ("cpu", "cuda"):
        raise EngineError(f"unknown device {device!r}; choose 'cpu' or 'cuda'")
    if engine == "openvino" and device != "cpu":
        raise EngineError(
            "--engine openvino runs on the CPU (OpenVINO's CPU plugin): drop --device"
        )
    if device == "cuda" and not torch.cuda.is_available():
        raise EngineError(
            "--device cuda: torch sees no CUDA device on this machine; build CUDA engines on a "
            "machine with the GPU they will run on, or use --device cpu"
        )
    if precision == "fp16" and device != "cuda":
        raise EngineError("--fp16 is for CUDA engines (CPU half convolutions are slow); use --bf16")
    if engine == "trt" and device != "cuda":
        raise EngineError("--engine trt builds TensorRT engines for NVIDIA GPUs: add --device cuda")
    if engine == "openvino" and device != "cpu":
        raise EngineError(
            "--engine openvino runs on the CPU (OpenVINO's CPU plugin): drop --device"
        )
    if engine == "openvino" and precision not in ("fp32", "bf16"):
        raise EngineError(
            f"--engine openvino runs fp32 or bf16 (OpenVINO's inference precision hint), not "
            f"{precision}"
        )
    if engine == "onnx" and precision != "fp32":
        raise EngineError(
            f"--engine onnx builds float32 models only (got {precision}); drop --fp16/--bf16, "
            "or use --engine torchscript/aoti for low precision"
        )
    if engine == "torchscript" and sized:
        raise EngineError(
            "--min/--opt/--max/--input-size apply to export engines (aoti, onnx, trt); a "
            "TorchScript engine takes any input size"
        )
    if channels_last and engine != "torchscript":
        raise EngineError(
            f"--channels-last is for TorchScript fp32 engines; --engine {engine} builds fp32 "
            "NCHW (and --bf16 channels-last, with the mask heads NCHW)"
        )


def _fp32_stride(precision: str, fp32_stride: int | None) -> int:
    """The float32-stage stride an artifact of ``precision`` gets (0 for fp32 engines)."""
    from cendetect.compile.precision import DEFAULT_FP32_STRIDE

    if precision == "fp32":
        if fp32_stride:
            raise EngineError(
                f"--fp32-stride {fp32_stride} applies to --bf16/--fp16 engines; an fp32 engine "
                "runs every layer in float32 already"
            )
        return 0
    if fp32_stride is None:
        return DEFAULT_FP32_STRIDE
    if fp32_stride < 0:
        raise EngineError(f"--fp32-stride must be 0 or more, got {fp32_stride}")
    return fp32_stride


def _ready(
    model: torch.nn.Module,
    precision: str,
    channels_last: bool | None = None,
    nchw_mask_heads: bool = False,
    stride: int = 0,
) -> torch.nn.Module:
    from cendetect.compile.precision import with_precision

    return with_precision(
        model.eval(),
        precision,
        channels_last=channels_last,
        nchw_mask_heads=nchw_mask_heads,
        fp32_stride=stride,
    )
