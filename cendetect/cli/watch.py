"""``cendetect watch``: the polled-folder service (mmdetection's ``mmdet_predict`` flags).

Example::

    cendetect watch --checkpoint r50.pth --prediction_in in/ --prediction_out out/ \\
        --continuous --prediction_format opex --score 0.3
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cendetect.cli.common import (
    CliError,
    add_model_args,
    add_shape_args,
    load_detector,
    say,
    shape_options,
)

__all__ = ["add_parser", "watch"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``watch``."""
    p = sub.add_parser(
        "watch",
        help="poll a folder for images and write predictions (mmdet_predict)",
        description="Poll --prediction_in for images; write OPEX JSON or ROI CSV predictions "
        "to --prediction_out (via --prediction_tmp), then move the input there (or delete it "
        "with --delete_input). Half-written files are waited for; undecodable ones are moved "
        "to --prediction_out/failed. Exit status: 0, or 1 when some input failed.",
    )
    p.add_argument("--prediction_in", type=Path, required=True, help="folder to poll")
    p.add_argument("--prediction_out", type=Path, required=True, help="folder for predictions")
    p.add_argument("--prediction_tmp", type=Path, help="folder predictions are written to first")
    p.add_argument("--poll_wait", type=float, default=1.0, help="seconds between polls")
    p.add_argument("--continuous", action="store_true", help="keep polling forever")
    p.add_argument("--delete_input", action="store_true", help="delete inputs instead of moving")
    p.add_argument("--score", type=float, default=0.0, help="keep scores > this (default 0)")
    p.add_argument(
        "--prediction_format", choices=("roi", "opex"), default="roi",
        help="roi: {name}-rois.csv (wai.annotations); opex: {name}.json (default roi)",
    )  # fmt: skip
    p.add_argument("--batch-size", type=int, default=1, help="images per model call")
    add_model_args(p)
    add_shape_args(p)
    p.set_defaults(func=watch)
    return p


def watch(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from cendetect.services.watch import FolderWatcher, WatchOptions

    if not args.prediction_in.is_dir():
        raise CliError(f"--prediction_in {args.prediction_in}: no such folder")
    if args.poll_wait < 0:
        raise CliError(f"--poll_wait {args.poll_wait}: must be >= 0")
    shapes = shape_options(args)
    detector = load_detector(args)
    opts = WatchOptions(
        prediction_in=args.prediction_in,
        prediction_out=args.prediction_out,
        prediction_tmp=args.prediction_tmp,
        poll_wait=args.poll_wait,
        continuous=args.continuous,
        delete_input=args.delete_input,
        score=args.score,
        prediction_format=args.prediction_format,
        batch_size=max(1, args.batch_size),
        shapes=shapes,
        output_mask_image=args.output_mask_image,
    )
    watcher = FolderWatcher(detector, opts, report=lambda m: say(m.removeprefix("cendetect: ")))
    try:
        summary = watcher.run()
    except KeyboardInterrupt:
        summary = watcher.summary
    print(f"cendetect: {summary.line()}", flush=True)
    return 1 if summary.failed else 0
