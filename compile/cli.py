"""``cendetect-compile``: build one engine artifact from a checkpoint (a thin layer over
:func:`cendetect.compile.compile_engine`).

Examples::

    cendetect-compile --checkpoint mask_rcnn_r50_fpn.pth -o r50.ts
    cendetect-compile --checkpoint r50.pth --engine aoti --max-size 1344x1344 -o r50.pt2
    cendetect-compile --checkpoint r50.pth --engine torchscript --device cuda --fp16 -o r50_fp16.ts
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cendetect.engine.runners import ENGINE_KINDS

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
        "--checkpoint", type=Path, help="mmdetection 2.x/3.x checkpoint or bare state dict (.pth)"
    )
    p.add_argument(
        "--model",
        help="zoo model name (mask_rcnn_r50_fpn, mask_rcnn_r101_fpn): the architecture of a "
        "bare state dict, and the model name in the manifest",
    )
    p.add_argument("--engine", default="torchscript", help=f"one of {', '.join(ENGINE_KINDS)}")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="where it will run")
    prec = p.add_mutually_exclusive_group()
    prec.add_argument("--fp16", action="store_true", help="float16 convolutions (CUDA)")
    prec.add_argument("--bf16", action="store_true", help="bfloat16 convolutions (CPU)")
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
        if args.model:
            parser.error(
                f"--model {args.model}: no trained weights ship with cendetect yet; pass the "
                "checkpoint to compile with --checkpoint PATH (add --model for a bare state dict)"
            )
        parser.error("--checkpoint PATH is required")
    if args.engine not in ENGINE_KINDS:
        parser.error(
            f"--engine {args.engine}: unknown engine; choose one of {', '.join(ENGINE_KINDS)}"
        )
    precision = "fp16" if args.fp16 else "bf16" if args.bf16 else "fp32"
    output = args.output or args.checkpoint.with_name(
        f"{args.checkpoint.stem}.{args.engine}.{args.device}.{precision}{ENGINE_KINDS[args.engine]}"
    )
    from cendetect.compile.build import compile_engine

    start = time.perf_counter()
    try:
        manifest = compile_engine(
            args.checkpoint,
            output,
            engine=args.engine,
            precision=precision,
            device=args.device,
            model=args.model,
            min_size=args.min_size,
            opt_size=args.opt_size,
            max_size=args.max_size,
            input_size=args.input_size,
        )
    except ValueError as exc:  # EngineError, CheckpointError, ConfigError, bad sizes
        print(f"cendetect-compile: error: {exc}", file=sys.stderr)
        return 2
    spec_text = (
        "any size"
        if manifest.input.any_size
        else f"{manifest.input.min}..{manifest.input.max} (opt {manifest.input.opt})"
    )
    print(
        f"wrote {output}: {manifest.engine} {manifest.precision} on {manifest.device}, "
        f"model {manifest.model}, classes {list(manifest.classes)}, input {spec_text}, "
        f"{time.perf_counter() - start:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
