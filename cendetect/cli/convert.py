"""``cendetect convert``: VIA JSON or mask/image PNG pairs -> COCO, and COCO validation.

Examples::

    cendetect convert --from via --input via_region_data.json --images train --out coco.json \\
        --class-key class --class-map balloon=mosaic
    cendetect convert --from masks --input masks/ --images data/ --out coco.json --min-area 8
    cendetect convert --validate coco.json --images data/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cendetect.cli.common import CliError, say

__all__ = ["add_parser", "run"]


def _class_map(text: str) -> tuple[str, str]:
    old, sep, new = text.partition("=")
    if not sep or not old or new not in ("bar", "mosaic"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=bar or NAME=mosaic")
    return old, new


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``convert``."""
    p = sub.add_parser(
        "convert",
        help="convert VIA JSON or mask PNGs to COCO; validate COCO files",
        description="Convert annotations to COCO instance segmentation (categories 1 bar, "
        "2 mosaic) and check the result, or only check a COCO file with --validate. "
        "Exit status: 0 valid, 1 errors found, 2 usage.",
    )
    p.add_argument("--from", dest="source", choices=("via", "masks"), help="input format")
    p.add_argument("--input", type=Path, help="VIA JSON file, or the folder of mask PNGs")
    p.add_argument("--images", type=Path, help="folder of the images")
    p.add_argument("--out", type=Path, help="COCO JSON to write")
    p.add_argument("--validate", type=Path, metavar="COCO_JSON", help="only check this file")
    v = p.add_argument_group("VIA")
    v.add_argument(
        "--class-key", default="class", help="region_attributes key of the class (default "
        "%(default)s)"
    )  # fmt: skip
    v.add_argument(
        "--class-map",
        type=_class_map,
        action="append",
        default=[],
        metavar="NAME=CLASS",
        help="rename a class, e.g. balloon=mosaic (repeatable)",
    )
    v.add_argument("--default-class", choices=("bar", "mosaic"), help="class of unlabelled regions")
    m = p.add_argument_group("masks")
    m.add_argument("--min-area", type=int, default=8, help="drop smaller components (px)")
    m.add_argument(
        "--mask-order",
        choices=("rgb", "bgr"),
        default="rgb",
        help="channel order of the mask colours [0,255,0] bar / [0,255,255] mosaic (default rgb:"
        " mosaic is cyan)",
    )
    p.set_defaults(func=run)
    return p


def _report(issues: list, file: str) -> int:
    errors = [i for i in issues if i.level == "error"]
    for i in issues:
        say(i.format(file))
    say(f"{file}: {len(errors)} errors, {len(issues) - len(errors)} warnings")
    return 1 if errors else 0


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from cendetect.data.convert import ConvertError, masks_to_coco, via_to_coco
    from cendetect.data.validate import validate_coco

    if args.validate is not None:
        if args.source is not None:
            raise CliError("--validate checks a file; do not combine it with --from")
        if not args.validate.is_file():
            raise CliError(f"--validate {args.validate}: no such file")
        return _report(validate_coco(args.validate, args.images), str(args.validate))
    if args.source is None or args.input is None or args.images is None or args.out is None:
        raise CliError("give --from via|masks, --input, --images and --out (or --validate FILE)")
    if args.min_area < 0:
        raise CliError(f"--min-area {args.min_area}: must be >= 0")
    try:
        if args.source == "via":
            coco = via_to_coco(
                args.input, args.images, args.class_key, dict(args.class_map), args.default_class
            )
        else:
            coco = masks_to_coco(args.input, args.images, args.min_area, args.mask_order)
    except ConvertError as exc:
        raise CliError(str(exc)) from exc
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(coco) + "\n", encoding="utf-8")
    n_bar = sum(a["category_id"] == 1 for a in coco["annotations"])
    say(
        f"wrote {args.out}: {len(coco['images'])} images, {n_bar} bars, "
        f"{len(coco['annotations']) - n_bar} mosaics"
    )
    return _report(validate_coco(coco, args.images), str(args.out))
