"""Options every ``cendetect`` command shares: which model, where it runs, how errors look."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = ["CENDETECT_MODELS", "CliError", "add_model_args", "load_detector", "say"]

#: CenDetect's ``--model`` values (det.py); the file looked for is ``{model_directory}/{name}.pth``
CENDETECT_MODELS = (
    "mask_rcnn_r50_fpn",
    "mask_rcnn_r101_fpn",
    "point_rend_r50_fpn",
    "mask_rcnn_r50_fpn_dconv",
)


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit status 2."""


def say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"cendetect: {message}", file=sys.stderr, flush=True)


def add_model_args(p: argparse.ArgumentParser) -> None:
    """Add ``--model``, ``--model_directory``, ``--checkpoint``, ``--engine``, ``--device``
    and ``--fp16`` (CenDetect's names where it had the option)."""
    g = p.add_argument_group("model")
    g.add_argument(
        "--model",
        default="mask_rcnn_r50_fpn",
        choices=CENDETECT_MODELS,
        help="CenDetect model name: loads {model_directory}/{model}.pth (default %(default)s)",
    )
    g.add_argument(
        "--model_directory",
        type=Path,
        default=Path("models"),
        help="folder holding {model}.pth (default %(default)s)",
    )
    g.add_argument(
        "--checkpoint",
        type=Path,
        help="an mmdetection 2.x/3.x checkpoint to use instead of the --model name",
    )
    g.add_argument(
        "--engine",
        type=Path,
        help="an engine artifact made by cendetect-compile (.ts, .pt2); replaces the checkpoint",
    )
    g.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        help="where the model runs (default: cuda when available, else cpu)",
    )
    g.add_argument("--fp16", action="store_true", help="float16 inference (CUDA only)")


def load_detector(args: argparse.Namespace) -> Detector:
    """The detector the model options name.

    Raises:
        CliError: no model file, an unusable file, or a device that is not there; the message
            says what was looked for and how to fix it.
    """
    import torch

    from cendetect.detector import Detector

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: torch sees no CUDA device here; use --device cpu")
    fp16 = bool(args.fp16)
    if fp16 and device != "cuda":
        say("--fp16 needs a CUDA device; running in float32 on the CPU")
        fp16 = False
    try:
        if args.engine is not None:
            if not args.engine.is_file():
                from cendetect.engine.runners import ENGINE_KINDS

                hint = ""
                if str(args.engine) in ENGINE_KINDS:
                    hint = (
                        f"; --engine takes an artifact file, made with e.g. 'cendetect-compile "
                        f"--checkpoint CKPT --engine {args.engine} -o model"
                        f"{ENGINE_KINDS[str(args.engine)]}'"
                    )
                raise CliError(f"--engine {args.engine}: no such file{hint}")
            return Detector.from_engine(args.engine, device=device, checkpoint=args.checkpoint)
        ckpt = args.checkpoint
        if ckpt is None:
            ckpt = args.model_directory / f"{args.model}.pth"
            if not ckpt.is_file():
                raise CliError(
                    f"no model file: looked for {ckpt} (--model_directory "
                    f"{args.model_directory} + --model {args.model} + .pth). No trained model "
                    "ships with cendetect yet: pass an mmdetection checkpoint with "
                    "--checkpoint PATH, or put it at that path"
                )
        elif not ckpt.is_file():
            raise CliError(f"--checkpoint {ckpt}: no such file")
        # the config embedded in the checkpoint wins; --model only names the architecture of
        # a bare state dict
        return Detector.from_checkpoint(ckpt, device=device, fp16=fp16, model=args.model)
    except CliError:
        raise
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise CliError(f"cannot load the model: {exc}") from exc
