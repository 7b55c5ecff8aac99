"""The ``cendetect`` command: ``run`` (folders, CenDetect's det.py), ``watch`` (a polled
folder, mmdet_predict), ``redis`` (a Redis worker, mmdet_predict_redis), ``synth`` (synthetic
training data), ``convert`` (VIA / mask PNGs to COCO, COCO validation), ``train``, ``eval``
(COCO mAP), ``models`` (the model table) and ``studio`` (the review web page).

A command line that starts with an option is taken as ``run``, so CenDetect's
``det.py --input_path in --output_path out`` becomes ``cendetect --input_path in ...``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cendetect.cli.common import CliError, say

__all__ = ["main"]

COMMANDS = ("run", "watch", "redis", "synth", "train", "convert", "eval", "models", "studio")


def _parser() -> argparse.ArgumentParser:
    from cendetect import __version__
    from cendetect.cli import convert, eval, models, redis, run, studio, synth, train, watch

    p = argparse.ArgumentParser(
        prog="cendetect",
        description="Detect and mask bars and mosaics with Mask R-CNN models.",
    )
    p.add_argument("--version", action="version", version=f"cendetect {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run.add_parser(sub)
    watch.add_parser(sub)
    redis.add_parser(sub)
    synth.add_parser(sub)
    train.add_parser(sub)
    convert.add_parser(sub)
    eval.add_parser(sub)
    models.add_parser(sub)
    studio.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cendetect``; returns the exit status (0 ok, 1 inputs failed, 2 usage)."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if (
        args_list
        and args_list[0].startswith("-")
        and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "run")  # CenDetect's det.py flags without a command
    parser = _parser()
    args = parser.parse_args(args_list)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args))
    except CliError as exc:
        say(f"error: {exc}")
        return 2
    except KeyboardInterrupt:
        say("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
