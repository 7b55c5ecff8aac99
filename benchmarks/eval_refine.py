"""Segm AP with and without mask refinement, per val part and class, on the same detections.

Runs the model once per image and scores the detections three ways: the model's masks, the
plain yardstick refinement (no anti-aliased edge rule) and the full refinement
(engine/refine.py). Prints COCO segm AP per class and the mean IoU of matched masks.

    .venv/bin/python benchmarks/eval_refine.py --dataset /work/data/synth_v2 \
        --split val val_painted [--model cendetect/weights/mobilenet_v2_fpn.pth]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cendetect.detector import Detector, read_image
from cendetect.engine.refine import BarRefineParams, refine_masks_reference


def _segm_ap(gt: COCO, results: list[dict], ids: list[int]) -> dict[str, float]:
    out: dict[str, float] = {}
    if not results:
        return {"all": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "segm")
        ev.params.imgIds = ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    out["all"] = float(ev.stats[0])
    prec = ev.eval["precision"]  # [T, R, K, A, M]
    for k, cat in enumerate(ev.params.catIds):
        p = prec[:, :, k, 0, -1]
        out[gt.cats[cat]["name"]] = float(p[p > -1].mean()) if (p > -1).any() else 0.0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--split", nargs="+", default=["val", "val_painted"])
    ap.add_argument("--model", default="cendetect/weights/mobilenet_v2_fpn.pth")
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the table here too")
    args = ap.parse_args()
    det = Detector.from_checkpoint(args.model)
    names = list(det.class_names)
    bar_labels = {names.index("bar")} if "bar" in names else set()
    variants = {
        "model": None,
        "yardstick": BarRefineParams(edge_rule=False),
        "refined": BarRefineParams(),
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    for split in args.split:
        ann = args.dataset / "annotations" / f"instances_{split}.json"
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(ann))
        by_name = {c["name"]: c["id"] for c in gt.loadCats(gt.getCatIds())}
        ids = sorted(gt.getImgIds())[: args.max_images or None]
        results: dict[str, list[dict]] = {v: [] for v in variants}
        seconds = {v: 0.0 for v in variants}
        for image_id in ids:
            img = read_image(args.dataset / split / gt.imgs[image_id]["file_name"])
            d = det(img)
            for v, params in variants.items():
                t0 = time.perf_counter()
                masks = d.instance_masks
                if params is not None:
                    masks, _ = refine_masks_reference(img, masks, d.labels, bar_labels, params)
                seconds[v] += time.perf_counter() - t0
                rles = masks.to_rle()
                for i, rle in enumerate(rles):
                    cat = by_name.get(names[int(d.labels[i])])
                    if cat is None:
                        continue
                    rle = dict(rle)
                    if isinstance(rle["counts"], bytes):
                        rle["counts"] = rle["counts"].decode()
                    results[v].append(
                        {
                            "image_id": image_id,
                            "category_id": cat,
                            "segmentation": rle,
                            "score": float(d.scores[i]),
                            "area": float(mask_utils.area(rle)),
                        }
                    )
        table[split] = {v: _segm_ap(gt, results[v], ids) for v in variants}
        print(f"{split} ({len(ids)} images)")
        for v in variants:
            row = table[split][v]
            cells = "  ".join(f"{k} {row[k]:.3f}" for k in row)
            print(f"  {v:<10} {cells}   ({seconds[v]:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
