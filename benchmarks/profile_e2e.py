"""Where one end-to-end call of the default model (or any checkpoint/engine) spends its time.

Times, for one image at its full resolution, each stage of :meth:`cendetect.Detector.predict`
separately (median of ``--repeats`` after ``--warmup``): the keep-ratio resize and normalisation
(``preprocess``), the network (eager or the engine), the paste of every mask at full resolution,
and the refinement of the bar and mosaic masks; and how many detections each stage handled.
Use it before optimising: it says what share lies outside the network.

    .venv/bin/python benchmarks/profile_e2e.py --engine model.aoti-bf16.pt2 --scale 640
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from common import median_ms  # benchmarks/common.py (this script's folder is on the path)

from cendetect import Detector
from cendetect.engine import preprocess
from cendetect.engine.compositor import paste_masks
from cendetect.engine.postprocess import refine_kinds
from cendetect.engine.refine import refine_masks
from cendetect.runtime import cpu_name
from cendetect.zoo import default_checkpoint

ROOT = Path(__file__).resolve().parents[1]
KITE = ROOT / "tests" / "data" / "mmdet" / "images" / "kite_1024x576.png"


def _median_ms(fn: Callable[[], Any], warmup: int, repeats: int) -> tuple[float, Any]:
    return median_ms(fn, repeats, warmup)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--checkpoint", help="eager model (default: the bundled model)")
    src.add_argument("--engine", help="a cendetect-compile artifact")
    ap.add_argument("--image", default=str(KITE), help="default: bench_engines.py's photo")
    ap.add_argument("--size", default="1024x1024", help="the image is resized to WxH first")
    ap.add_argument("--scale", type=int, default=0, help="keep-ratio test scale; 0: the model's")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.engine:
        det = Detector.from_engine(args.engine)
    else:
        det = Detector.from_checkpoint(args.checkpoint or default_checkpoint())
    if args.scale:
        det.preprocess_cfg = dataclasses.replace(
            det.preprocess_cfg, img_scale=(args.scale, args.scale)
        )
    w, h = (int(v) for v in args.size.split("x"))
    image = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"{args.image}: cannot read the image")
    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)

    rows: list[tuple[str, float, str]] = []
    with torch.inference_mode():
        ms, batch = _median_ms(
            lambda: preprocess([image], det.preprocess_cfg), args.warmup, args.repeats
        )
        rows.append(
            (
                "preprocess (resize, normalise)",
                ms,
                f"network input {tuple(batch.images.shape[-2:])}",
            )
        )
        net = det.model
        if hasattr(net, "program"):
            call = lambda: net(batch)  # noqa: E731
        else:
            call = lambda: net(batch.images, batch.image_sizes, batch.scale_factors)  # noqa: E731
        ms, raw = _median_ms(call, args.warmup, args.repeats)
        boxes, scores, labels, probs, _ = (t.detach() for t in raw)
        rows.append(("network", ms, f"{len(scores)} detections"))
        b = boxes.float() / batch.scale_factors[0].float()
        ms, masks = _median_ms(
            lambda: paste_masks(probs.cpu(), b.cpu(), (h, w), det.mask_threshold),
            args.warmup,
            args.repeats,
        )
        rows.append(("paste (all masks, full resolution)", ms, f"{len(masks)} masks"))
        lab = labels.to(torch.int64).cpu().numpy()
        kinds = refine_kinds(lab, det.class_names, frozenset(det.refined_classes()))
        n_ref = int(np.count_nonzero(kinds))
        ms, _ = _median_ms(lambda: refine_masks(image, masks, kinds), 1, args.repeats)
        rows.append(("refinement", ms, f"{n_ref} masks"))
        e2e, _ = _median_ms(lambda: det.predict([image]), 1, args.repeats)
    total = sum(r[1] for r in rows)
    print(f"CPU: {cpu_name()}, {args.threads} threads, torch {torch.__version__}")
    print(f"model: {args.engine or args.checkpoint or 'bundled default'}, image {w}x{h}")
    print("| stage | ms | share | note |\n|---|---|---|---|")
    for name, ms, note in rows:
        print(f"| {name} | {ms:.1f} | {ms / total:.0%} | {note} |")
    print(f"| sum of stages | {total:.1f} | | |")
    print(f"| Detector.predict end to end | {e2e:.1f} | | |")
    print(f"scores: {np.round(scores.float().cpu().numpy()[:20], 2).tolist()}")


if __name__ == "__main__":
    main()
