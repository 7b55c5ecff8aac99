"""Options every ``cendetect`` command shares: which model, where it runs, how errors look."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = [
    "CENDETECT_MODELS",
    "CliError",
    "add_model_args",
    "add_shape_args",
    "load_detector",
    "say",
    "shape_options",
]

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
    from cendetect.zoo import DEFAULT_MODEL, MODEL_ZOO

    g.add_argument(
        "--model",
        choices=sorted(MODEL_ZOO),
        help=f"model name (see 'cendetect models'): CenDetect's names load "
        f"{{model_directory}}/{{model}}.pth; without --model/--checkpoint/--engine the model "
        f"bundled with cendetect ({DEFAULT_MODEL}) is used",
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
        help="an mmdetection 2.x/3.x, detectron2 (.pth/.pkl) or maskrcnn-benchmark Mask R-CNN "
        "checkpoint to use instead of the --model name",
    )
    g.add_argument(
        "--config",
        type=Path,
        help="the checkpoint's training config, read as data (never executed): an mmdetection "
        ".py config (replaces the one embedded in the checkpoint; _base_ files beside it are "
        "merged) or the config.yaml / config.yml of a detectron2 or maskrcnn-benchmark run "
        "(test sizes, thresholds, normalisation, anchors, poolers; docs/checkpoints.md)",
    )
    g.add_argument(
        "--min-image-size",
        type=int,
        metavar="N",
        help="test scale's short side in pixels (maskrcnn-benchmark's demo option): the "
        "model's keep-ratio resize takes N as its short side, its long-side cap raised to N if "
        "below; default: the model's own scale",
    )
    g.add_argument(
        "--labels",
        type=Path,
        help="a text file with the class names (comma-separated, 'a','b' quoted or not, or one "
        "per line) for a checkpoint that holds none; wins over MMDET_CLASSES (mmdet_predict "
        "ignores its --labels and reads only MMDET_CLASSES; cendetect takes either)",
    )
    g.add_argument(
        "--mask_threshold",
        type=float,
        help="binarisation threshold of the pasted mask probabilities (default: the model's, "
        "0.5, mmdetection's mask_thr_binary). mmdet_predict's --mask_threshold (default 0.1) is "
        "the level at which it traces outlines on masks already binarised at 0.5; here it "
        "decides which pixels are in the mask at all",
    )
    g.add_argument(
        "--checkpoint-format",
        choices=("auto", "mmdet", "detectron2", "maskrcnn_benchmark"),
        default="auto",
        help="layout of --checkpoint (default %(default)s: recognised from its key names)",
    )
    g.add_argument(
        "--engine",
        help="eager (default), an engine kind (torchscript, aoti, onnx, trt: the checkpoint is "
        "compiled once into the engine cache, $XDG_CACHE_HOME/cendetect/engines, and reused), "
        "or the path of an artifact made by cendetect-compile (.ts, .pt2, .onnx, .ep)",
    )
    g.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        help="where the model runs (default: cuda when available, else cpu)",
    )
    g.add_argument("--fp16", action="store_true", help="float16 inference (CUDA only)")
    g.add_argument(
        "--refine",
        choices=("auto", "off"),
        default="auto",
        help="exact-edge refinement of the masks of the 'bar' class after the paste "
        "(docs/refinement.md); auto (default): on for models with a 'bar' class; off: the "
        "model's masks as pasted",
    )


def _engine_kind(value: str | Path | None) -> str | None:
    """``--engine``: ``'eager'`` (also when absent), an engine kind, or None for an artifact path.

    Raises:
        CliError: neither a known kind nor an existing file; lists the kinds.
    """
    from cendetect.engine.runners import ENGINE_KINDS

    if value is None or str(value) == "eager":
        return "eager"
    if str(value) in ENGINE_KINDS:
        return str(value)
    path = Path(value)
    if path.is_file():
        return None
    kinds = ", ".join(("eager", *ENGINE_KINDS))
    if path.suffix or os.sep in str(value):
        raise CliError(f"--engine {value}: no such file (an engine kind is one of: {kinds})")
    raise CliError(
        f"--engine {value}: unknown engine kind; choose one of: {kinds}, or give the path of an "
        "artifact made by cendetect-compile"
    )


def _model_file(model: str | None, directory: Path) -> Path:
    """The checkpoint a ``--model`` name stands for: the bundled default model, or
    ``{directory}/{model}.pth`` as CenDetect's det.py looks for it."""
    from cendetect.zoo import DEFAULT_MODEL, default_checkpoint

    name = model or DEFAULT_MODEL
    if name == DEFAULT_MODEL:
        bundled = default_checkpoint()
        if bundled is not None:
            return bundled
        if model is None:
            raise CliError(
                f"this install has no bundled {DEFAULT_MODEL} model; pass --checkpoint PATH, "
                "or --model NAME to load MODEL_DIRECTORY/NAME.pth"
            )
    path = directory / f"{name}.pth"
    if not path.is_file():
        raise CliError(
            f"no model file: looked for {path} (--model_directory {directory} + --model {name} "
            "+ .pth); put the checkpoint there, or pass it with --checkpoint PATH"
        )
    return path


def parse_class_list(text: str) -> tuple[str, ...]:
    """Class names from ``a,b`` or ``'a','b'`` (mmdet_predict's ``MMDET_CLASSES`` forms)."""
    names = []
    for part in text.split(","):
        name = part.strip().strip("'\"").strip()
        if name:
            names.append(name)
    return tuple(names)


def mmdet_classes(env: Mapping[str, str] | None = None) -> tuple[str, ...] | None:
    """Class names from the environment variable ``MMDET_CLASSES``, as the mmdetection
    services read it: a comma list (``'a','b'``, quoted or not) or the path of a text file
    holding one (a name per line also works). None when unset or empty.

    Raises:
        CliError: the variable names a file that cannot be read, or no class at all.
    """
    value = (os.environ if env is None else env).get("MMDET_CLASSES", "").strip()
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        return _class_file(path, f"MMDET_CLASSES={value}")
    names = parse_class_list(value)
    if not names:
        raise CliError(f"MMDET_CLASSES={value!r}: no class names in it")
    return names


def _class_file(path: Path, what: str) -> tuple[str, ...]:
    """Class names from a text file (a comma list, quoted or not, or a name per line).

    Raises:
        CliError: ``what`` (the option or variable) and why: unreadable, or no names in it.
    """
    try:
        text = path.read_text(encoding="utf-8").replace("\n", ",")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{what}: cannot read the file: {exc}") from None
    names = parse_class_list(text)
    if not names:
        raise CliError(f"{what}: no class names in it")
    return names


def add_shape_args(p: argparse.ArgumentParser, mask_image: bool = True) -> None:
    """The outline options of mmdet_predict (its names and meanings; docs/cli.md)."""
    g = p.add_argument_group("outlines and boxes (mmdet_predict's options)")
    g.add_argument(
        "--mask_nth", type=int, default=1,
        help="trace outlines on every n-th row and column only: faster on large masks, "
        "coarser (default 1: every pixel)",
    )  # fmt: skip
    g.add_argument(
        "--view_margin", type=int,
        help="trace only within each detection's box grown by this many pixels (theirs "
        "defaults to 2; default here: the whole mask, since a refined mask may pass its box)",
    )  # fmt: skip
    g.add_argument(
        "--fully_connected", choices=("high", "low"), default="high",
        help="high (default): mask pixels touching at a corner are one region; low: they are "
        "not, and the largest 4-connected part is outlined",
    )  # fmt: skip
    g.add_argument(
        "--output_minrect", action="store_true",
        help="also write each outline's minimal rotated rectangle (minrect_w, minrect_h columns "
        "in the ROI CSV; the object's meta in OPEX)",
    )  # fmt: skip
    g.add_argument(
        "--fit_bbox_to_polygon", action="store_true",
        help="replace each box by its outline's bounding box",
    )  # fmt: skip
    g.add_argument(
        "--bbox_as_fallback", type=float, default=-1.0,
        help="use the box as the outline when the outline's bounding box covers less than this "
        "fraction of the box (or the outline has < 3 points); off when < 0 (default)",
    )  # fmt: skip
    if mask_image:
        g.add_argument(
            "--output_mask_image", action="store_true",
            help="also write {name}-mask.png: an indexed PNG whose pixels are the 1-based class "
            "of the (highest-scoring) detection covering them, 0 elsewhere",
        )  # fmt: skip


def shape_options(args: argparse.Namespace):
    """:class:`~cendetect.io.shapes.ShapeOptions` from :func:`add_shape_args`'s options.

    Raises:
        CliError: a value out of range, or --fit_bbox_to_polygon with --bbox_as_fallback.
    """
    from cendetect.io.shapes import ShapeOptions

    try:
        return ShapeOptions(
            mask_nth=args.mask_nth,
            view_margin=args.view_margin,
            fully_connected=args.fully_connected,
            output_minrect=args.output_minrect,
            fit_bbox_to_polygon=args.fit_bbox_to_polygon,
            bbox_as_fallback=args.bbox_as_fallback,
        )
    except ValueError as exc:
        flag = {
            "mask_nth": "--mask_nth",
            "view_margin": "--view_margin",
            "fit_bbox_to_polygon": "--fit_bbox_to_polygon / --bbox_as_fallback",
        }
        name = next((v for k, v in flag.items() if str(exc).startswith(k)), "option")
        raise CliError(f"{name}: {exc}") from None


def labels_file(path: Path) -> tuple[str, ...]:
    """Class names from a ``--labels`` file (the forms MMDET_CLASSES files take).

    Raises:
        CliError: unreadable file or no names in it.
    """
    return _class_file(path, f"--labels {path}")


def load_detector(args: argparse.Namespace) -> Detector:
    """The detector the model options name, with ``--refine`` and ``--mask_threshold`` applied
    (see :func:`_load`)."""
    threshold = getattr(args, "mask_threshold", None)
    if threshold is not None and not 0.0 <= threshold < 1.0:
        raise CliError(f"--mask_threshold {threshold}: must be in [0, 1)")
    min_size = getattr(args, "min_image_size", None)
    if min_size is not None and min_size < 32:
        raise CliError(f"--min-image-size {min_size}: must be >= 32 pixels")
    det = _load(args)
    det.refine = getattr(args, "refine", "auto")
    if threshold is not None:
        det.mask_threshold = float(threshold)
    if min_size is not None:
        import dataclasses

        pre = det.preprocess_cfg
        if not pre.keep_ratio:
            raise CliError(
                "--min-image-size: this model resizes to a fixed size (no keep-ratio resize), "
                "so there is no short side to set"
            )
        long = max(max(pre.img_scale), min_size)
        det.preprocess_cfg = dataclasses.replace(pre, img_scale=(long, min_size))
    return det


def _load(args: argparse.Namespace) -> Detector:
    """The detector the model options name.

    Every inference command (run, watch, redis, eval) comes through here, so this is also
    where the process's allocator is set up for inference (:func:`cendetect.runtime.tune_malloc`:
    feature maps reuse heap memory instead of fresh zeroed pages per image).

    Raises:
        CliError: no model file, an unusable file, or a device that is not there; the message
            says what was looked for and how to fix it.
    """
    import torch

    from cendetect.detector import Detector
    from cendetect.runtime import tune_malloc

    tune_malloc()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise CliError("--device cuda: torch sees no CUDA device here; use --device cpu")
    fp16 = bool(args.fp16)
    if fp16 and device != "cuda":
        say("--fp16 needs a CUDA device; running in float32 on the CPU")
        fp16 = False
    try:
        kind = _engine_kind(args.engine)
        labels = getattr(args, "labels", None)
        fallback = labels_file(labels) if labels is not None else mmdet_classes()
        config = getattr(args, "config", None)
        if config is not None and not config.is_file():
            raise CliError(f"--config {config}: no such file")
        if kind is None:  # a path
            if config is not None:
                raise CliError(
                    f"--config {config}: an artifact made by cendetect-compile already holds its "
                    "settings; give --config to cendetect-compile instead"
                )
            return Detector.from_engine(
                Path(args.engine), device=device, checkpoint=args.checkpoint
            )
        ckpt = args.checkpoint
        if ckpt is None:
            ckpt = _model_file(args.model, args.model_directory)
        elif not ckpt.is_file():
            raise CliError(f"--checkpoint {ckpt}: no such file")
        if kind != "eager":
            from cendetect.compile.cache import cached_engine

            precision = "fp16" if fp16 else "fp32"
            path = cached_engine(
                ckpt, kind, precision=precision, device=device, log=say, config=config
            )
            return Detector.from_engine(path, device=device, checkpoint=ckpt)
        # the config embedded in the checkpoint wins; --model only names the architecture of
        # a bare state dict
        det = Detector.from_checkpoint(
            ckpt,
            device=device,
            fp16=fp16,
            model=args.model,
            checkpoint_format=getattr(args, "checkpoint_format", "auto"),
            fallback_classes=fallback,
            config=config,
        )
        if det.checkpoint_format != "mmdet":
            say(f"{ckpt}: imported a {det.checkpoint_format} checkpoint (see docs/checkpoints.md)")
        return det
    except CliError:
        raise
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise CliError(f"cannot load the model: {exc}") from exc
