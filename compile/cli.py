"""``cendetect-compile``: build engine artifacts from a checkpoint (a thin layer over
:func:`cendetect.compile.compile_engines`).

Examples::

    cendetect-compile --checkpoint mask_rcnn_r50_fpn.pth -o r50.ts
    cendetect-compile --checkpoint r50.pth --engine aoti --max-size 1344x1344 -o r50.pt2
    cendetect-compile --checkpoint r50.pth --engine onnx -o r50.onnx  # needs cendetect[onnx]
    cendetect-compile --checkpoint r50.pth --engine trt --device cuda --fp16 -o r50.ep  # [trt]
    cendetect-compile --checkpoint r50.pth --engine torchscript --device cuda --fp16 -o r50_fp16.ts
    cendetect-compile --checkpoint r50.pth --engine aoti,onnx  # one export, two artifacts
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cendetect.engine.runners import ENGINE_KINDS, Manifest

__all__ = ["main"]


def _size(text: str) -> tuple[int, int]:
    from cendetect.compile.build import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cendetect-compile",
        description="Compile a Mask R-CNN checkpoint into one engine artifact (the manifest "
        "inside records model, classes, input sizes, precision, torch version and the "
        "checkpoint's sha256). Load it with cendetect.Detector.from_engine(PATH).",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        help="mmdetection 2.x/3.x checkpoint or bare state dict (.pth), or a detectron2 / "
        "maskrcnn-benchmark Mask R-CNN checkpoint",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="the checkpoint's training config, read as data: an mmdetection .py config "
        "(replaces the embedded one) or a detectron2 / maskrcnn-benchmark config.yaml",
    )
    p.add_argument(
        "--model",
        help="model name (see 'cendetect models'). Alone, it compiles the bundled default model "
        "(mobilenet_v2_fpn) or {model_directory}/{model}.pth as CenDetect's det.py finds it; with "
        "--checkpoint, the architecture of a bare state dict. Also the manifest's model name",
    )
    p.add_argument(
        "--model_directory",
        type=Path,
        default=Path("models"),
        help="folder holding {model}.pth for --model without --checkpoint (default %(default)s)",
    )
    p.add_argument(
        "--engine",
        default="torchscript",
        help=f"one of {', '.join(ENGINE_KINDS)}, or several separated by commas (written with "
        "their default names; the export engines share one torch.export)",
    )
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where it will run")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="float16 convolutions (CUDA)")
    prec.add_argument("--bf16", action="store_true", help="bfloat16 convolutions (CPU)")
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="TorchScript fp32: channels-last memory with BatchNorm folded into the convolutions "
        "(faster on CPUs; equal to eager up to float rounding). bf16 is channels-last anyway",
    )
    p.add_argument(
        "--fp32-stride",
        type=int,
        metavar="N",
        help="with --bf16/--fp16: the image and the backbone layers whose output stride is at "
        "most N stay float32 (default 2: the stem, the layers that cost most agreement with "
        "fp32 per FLOP; 0: every convolution in the low dtype). docs/engines.md, Precision",
    )
    p.add_argument("--min-size", type=_size, help="smallest network input HxW (export engines)")
    p.add_argument("--opt-size", type=_size, help="input HxW the engine is tuned for")
    p.add_argument("--max-size", type=_size, help="largest network input HxW")
    p.add_argument("--input-size", type=_size, help="one static network input HxW")
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        help="artifact file (default: next to the "
        "checkpoint, named after it, engine and precision)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 usage or input error)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.checkpoint is None:
        if not args.model:
            parser.error("give --model NAME or --checkpoint PATH")
        from cendetect.zoo import DEFAULT_MODEL, MODEL_ZOO, default_checkpoint

        if args.model not in MODEL_ZOO:
            parser.error(f"--model {args.model}: unknown; known: {', '.join(sorted(MODEL_ZOO))}")
        bundled = default_checkpoint() if args.model == DEFAULT_MODEL else None
        args.checkpoint = bundled or args.model_directory / f"{args.model}.pth"
        if not args.checkpoint.is_file():
            parser.error(
                f"--model {args.model}: no weights at {args.checkpoint} (--model_directory "
                f"{args.model_directory}); pass the checkpoint with --checkpoint PATH"
            )
    engines = [e.strip() for e in args.engine.split(",") if e.strip()]
    for engine in engines:
        if engine not in ENGINE_KINDS:
            parser.error(
                f"--engine {engine}: unknown engine; choose one of {', '.join(ENGINE_KINDS)}"
            )
    if not engines or len(set(engines)) != len(engines):
        parser.error(f"--engine {args.engine}: give each engine once")
    if args.output is not None and len(engines) > 1:
        parser.error("-o/--output names one artifact: leave it out when building several engines")
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    from cendetect.zoo import default_checkpoint

    # next to the checkpoint, except for the bundled one: never write into the installed package
    bundled = args.checkpoint == default_checkpoint()
    outputs: dict[str, Path] = {}
    for engine in engines:
        name = f"{args.checkpoint.stem}.{engine}.{args.device}.{precision}"
        if args.channels_last and precision == "fp32":
            name += "-nhwc"
        name += ENGINE_KINDS[engine]
        default = Path(name) if bundled else args.checkpoint.with_name(name)
        outputs[engine] = args.output or default
    from cendetect.compile.build import compile_engines

    start = time.perf_counter()
    try:
        manifests = compile_engines(
            args.checkpoint,
            outputs,
            precision=precision,
            device=args.device,
            model=args.model,
            fp32_stride=args.fp32_stride,
            min_size=args.min_size,
            opt_size=args.opt_size,
            max_size=args.max_size,
            input_size=args.input_size,
            channels_last=args.channels_last,
            config=args.config,
        )
    except ValueError as exc:  # EngineError, CheckpointError, ConfigError, bad sizes
        print(f"cendetect-compile: error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.perf_counter() - start
    for engine, manifest in manifests.items():
        _report(outputs[engine], manifest, elapsed)
    return 0


def _report(output: Path, manifest: Manifest, elapsed: float) -> None:
    """One line per artifact written: what it is and what it takes."""
    spec_text = (
        "any size"
        if manifest.input.any_size
        else f"{manifest.input.min}..{manifest.input.max} (opt {manifest.input.opt})"
    )
    precision = manifest.precision
    if manifest.fp32_stride:
        precision += f", float32 up to stride {manifest.fp32_stride}"
    print(
        f"wrote {output}: {manifest.engine} {precision} ({manifest.layout}) on "
        f"{manifest.device}, "
        f"model {manifest.model}, classes {list(manifest.classes)}, input {spec_text}, "
        f"{elapsed:.1f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
