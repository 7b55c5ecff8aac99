"""``cendetect synth``: write a synthetic bar/mosaic COCO dataset (docs/data.md).

Example::

    cendetect synth --out data/synth_v2 --num-train 6000 --num-val 300 --num-val-painted 300
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from cendetect.cli.common import CliError, say

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``synth``."""
    p = sub.add_parser(
        "synth",
        help="write a synthetic bar/mosaic training dataset (COCO)",
        description="Paint bars and mosaics on crops of the bundled-licence photo sources "
        "(Debian plasma-workspace-wallpapers; images inside the scikit-image, scikit-learn and "
        "matplotlib wheels) and on canvases composed from Debian's painted game art "
        "(wesnoth-1.16-data core images, flare-game), and write OUT/{train,val,val_painted}/, "
        "OUT/annotations/instances_<split>.json and OUT/synth.json. val holds photos, "
        "val_painted painted art; neither's source pictures are trained on. The same seed "
        "gives the same files.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=3000, help="train images (default 3000)")
    p.add_argument("--num-val", type=int, default=300, help="val images (default 300)")
    p.add_argument(
        "--num-val-painted",
        type=int,
        default=300,
        help="val images on held-out painted art (default 300; 0: none)",
    )
    p.add_argument(
        "--painted-fraction",
        type=float,
        default=0.45,
        help="share of train images drawn on painted art (default 0.45; 0: photos only)",
    )
    p.add_argument(
        "--degradations",
        choices=("v1", "v2"),
        default="v2",
        help="v2 (default): also anti-aliased and rounded bars, bars of nearly the "
        "background's colour, small regions, coarser mosaics, more JPEG passes; v1: the "
        "first datasets' recipe",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--min-size", type=int, default=512, help="output long side, min (px)")
    p.add_argument("--max-size", type=int, default=1024, help="output long side, max (px)")
    p.add_argument("--max-instances", type=int, default=6, help="instances per image, max")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="processes")
    p.add_argument(
        "--wheel-cache",
        type=Path,
        help="folder for the downloaded wheels (default $CENDETECT_CACHE/wheels or "
        "~/.cache/cendetect/wheels)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty --out")
    p.add_argument(
        "--samples",
        type=int,
        metavar="N",
        help="instead of a dataset, write N README samples (sample_<k>.jpg + instances.json)",
    )
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from cendetect.data.painted import PaintedSourceError
    from cendetect.data.photos import PhotoSourceError, discover_photos
    from cendetect.data.synth import SynthConfig, write_dataset

    if args.samples is not None:
        return _samples(args)
    if min(args.num_train, args.num_val, args.num_val_painted) < 0:
        raise CliError("--num-train/--num-val/--num-val-painted must be >= 0")
    if not 0 <= args.painted_fraction <= 1:
        raise CliError(f"--painted-fraction {args.painted_fraction}: must be in [0, 1]")
    if args.workers < 1:
        raise CliError(f"--workers {args.workers}: must be >= 1")
    if args.out.exists() and any(args.out.iterdir()) and not args.overwrite:
        raise CliError(f"--out {args.out}: not empty; pass --overwrite to write into it")
    try:
        cfg = SynthConfig(
            min_size=args.min_size,
            max_size=args.max_size,
            max_instances=args.max_instances,
            degradations=args.degradations,
            painted_fraction=args.painted_fraction,
            **({"jpeg_mid_prob": 0.3} if args.degradations == "v1" else {}),
        )
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    try:
        photos = discover_photos(wheel_cache=args.wheel_cache)
    except PhotoSourceError as exc:
        raise CliError(str(exc)) from exc
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        total = args.num_train + args.num_val + args.num_val_painted
        bar = tqdm(total=total, unit="img", desc="synth")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        record = write_dataset(
            args.out,
            args.num_train,
            args.num_val,
            args.seed,
            cfg,
            workers=args.workers,
            photos=photos,
            progress=progress,
            num_val_painted=args.num_val_painted,
        )
    except (ValueError, PaintedSourceError) as exc:
        raise CliError(str(exc)) from exc
    finally:
        if bar is not None:
            bar.close()
    for split, c in record["counts"].items():
        say(
            f"{split}: {c['images']} images ({c['empty']} without instances), "
            f"{c['bar']} bars, {c['mosaic']} mosaics"
        )
    say(f"wrote {args.out}")
    return 0


def _samples(args: argparse.Namespace) -> int:
    from cendetect.data.photos import PhotoSourceError, discover_photos
    from cendetect.data.samples import write_samples

    if args.samples < 1:
        raise CliError(f"--samples {args.samples}: must be >= 1")
    try:
        photos = discover_photos(wheel_cache=args.wheel_cache)
        paths = write_samples(args.out, photos, args.samples, args.seed)
    except (PhotoSourceError, ValueError) as exc:
        raise CliError(str(exc)) from exc
    for p in paths:
        say(f"wrote {p} ({p.stat().st_size // 1024} KB)")
    return 0
