"""``cendetect studio``: the local web page to run, review, correct and export (docs/studio.md).

Example::

    cendetect studio pictures --output_path reviewed
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from cendetect.cli.common import CliError, add_model_args, load_detector, say

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from cendetect.io.decode import DEFAULT_MAX_PIXELS
    from cendetect.studio import DEFAULT_PORT

    p = sub.add_parser(
        "studio",
        help="a local web page: detect in a folder, review and correct every mask, export",
        description="Start the studio: a web page on this machine that runs the detector on a "
        "folder of images, shows every region for review, lets you drop, relabel, paint, erase "
        "and add regions (one click grows a whole bar or mosaic), and exports green-filled PNGs, "
        "DeepCreamPy's folders, mask PNGs and the reviewed annotations as a COCO training set. "
        "Every edit is saved at once under OUTPUT/.cendetect-studio; inputs are never written. "
        "Needs pip install 'cendetect[studio]'.",
    )
    p.add_argument("folder", nargs="?", type=Path, help="folder to open (else: chosen on the page)")
    p.add_argument(
        "--output_path", type=Path,
        help="output folder of the reviewed state and the exports (default: FOLDER-cendetect "
        "beside the folder)",
    )  # fmt: skip
    p.add_argument(
        "--confidence", type=float, default=0.3,
        help="initial score threshold (the page's slider; default %(default)s, as cendetect run)",
    )  # fmt: skip
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; "
                   "another address requires the token in the printed URL)")  # fmt: skip
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="first port tried (default %(default)s; 0: any free port)")  # fmt: skip
    p.add_argument("--no-browser", action="store_true", help="print the URL only")
    p.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
        help="refuse images with more pixels (default %(default)s, as cendetect run)",
    )  # fmt: skip
    add_model_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CliError(
            f"cendetect studio needs the studio extra ({exc.name} is missing): "
            "pip install 'cendetect[studio]'"
        ) from exc
    if not 0.0 <= args.confidence < 1.0:
        raise CliError(f"--confidence {args.confidence}: must be in [0, 1)")
    if args.folder is not None and not args.folder.is_dir():
        raise CliError(f"{args.folder}: not a folder")
    from cendetect.studio import serve

    logging.basicConfig(level=logging.WARNING, format="cendetect studio: %(message)s")
    say("loading the model on first use")
    serve(
        lambda: load_detector(args), folder=args.folder, output=args.output_path,
        host=args.host, port=args.port, open_browser=not args.no_browser,
        threshold=args.confidence, max_pixels=args.max_pixels,
    )  # fmt: skip
    return 0
