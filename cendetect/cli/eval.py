"""``cendetect eval``: COCO bbox/segm mAP and mAR of a model on an annotated dataset.

Examples::

    cendetect eval --dataset data/synth_v1 --checkpoint work/latest.pth --out metrics.json
    cendetect eval --dataset coco.json --images imgs/ --engine model.ts
    cendetect eval --dataset coco.json --predictions output/coco.json   # no model: a saved run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cendetect.cli.common import CliError, add_model_args, load_detector, say

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``eval``."""
    p = sub.add_parser(
        "eval",
        help="COCO mAP/mAR of a model on an annotated dataset",
        description="Run the model over the images of a COCO dataset and print bbox and segm "
        "mAP / mAR @[.5:.95], AP50, AP75 and per-class AP (pycocotools COCOeval). Model classes "
        "are matched to dataset categories by name.",
    )
    p.add_argument(
        "--dataset",
        type=Path,
        required=True,
        help="a COCO JSON file, or a 'cendetect synth' folder (uses --split)",
    )
    p.add_argument("--images", type=Path, help="image folder (default: see --dataset)")
    p.add_argument("--split", default="val", help="split of a synth folder (default val)")
    p.add_argument("--out", type=Path, help="write the metrics as JSON here")
    p.add_argument("--save-predictions", type=Path, help="write the COCO results list here")
    p.add_argument(
        "--predictions",
        type=Path,
        help="evaluate this results file (a COCO results list or a 'cendetect run --save-json "
        "coco' file) instead of running a model",
    )
    p.add_argument("--max-images", type=int, help="evaluate the first N images only")
    p.add_argument("--batch-size", type=int, default=1, help="images per model call")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_model_args(p)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Run the command; returns the exit status."""
    from cendetect.evaluation import (
        coco_evaluate,
        format_table,
        load_ground_truth,
        predict_dataset,
        read_results,
        resolve_dataset,
    )

    if args.batch_size < 1:
        raise CliError(f"--batch-size {args.batch_size}: must be >= 1")
    if args.max_images is not None and args.max_images < 1:
        raise CliError(f"--max-images {args.max_images}: must be >= 1")
    try:
        ann_path, images_dir = resolve_dataset(args.dataset, args.images, args.split)
        gt = load_ground_truth(ann_path)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise CliError(f"--dataset: {exc}") from exc
    image_ids = sorted(gt.getImgIds())
    if args.max_images is not None:
        image_ids = image_ids[: args.max_images]
    model_desc: str
    if args.predictions is not None:
        try:
            results = read_results(args.predictions, gt)
        except (OSError, ValueError, KeyError) as exc:
            raise CliError(f"--predictions {args.predictions}: {exc}") from exc
        keep = set(image_ids)
        results = [r for r in results if r["image_id"] in keep]
        model_desc = str(args.predictions)
    else:
        detector = load_detector(args)
        bar = None
        if not args.no_progress:
            from tqdm import tqdm

            bar = tqdm(total=len(image_ids), unit="img", desc="eval")

        def progress(done: int, total: int) -> None:
            if bar is not None:
                bar.update(done - bar.n)

        try:
            results, image_ids = predict_dataset(
                detector, gt, images_dir, args.batch_size, args.max_images, progress
            )
        except (ValueError, OSError) as exc:
            raise CliError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        from cendetect.cli.common import _model_file

        model_desc = str(
            args.engine or args.checkpoint or _model_file(args.model, args.model_directory)
        )
        if args.save_predictions is not None:
            args.save_predictions.parent.mkdir(parents=True, exist_ok=True)
            args.save_predictions.write_text(json.dumps(results))
    metrics = coco_evaluate(gt, results, image_ids=image_ids)
    print(format_table(metrics))
    if args.out is not None:
        record = {
            "dataset": str(ann_path),
            "images": str(images_dir),
            "num_images": len(image_ids),
            "num_detections": len(results),
            "model": model_desc,
            "metrics": metrics,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=1) + "\n")
        say(f"wrote {args.out}")
    return 0
