"""Segm AP with and without mask refinement, per val part and class, on the same detections.

Runs the model once per image and scores the detections four ways: the model's masks, the
plain yardstick bar refinement (no anti-aliased edge rule), the bar refinement alone
(engine/refine.py) and bars + mosaics (engine/refine_mosaic.py). Prints COCO segm AP per class.

    .venv/bin/python benchmarks/eval_refine.py --dataset /work/data/synth_v2 \
        --split val val_painted [--model cendetect/weights/mobilenet_v2_fpn.pth]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cendetect.detector import Detector, read_image
from cendetect.engine.refine import BarRefineParams, refine_kinds, refine_masks


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


def _gt_masks(gt: COCO, image_id: int) -> list[tuple[np.ndarray, int]]:
    anns = gt.loadAnns(gt.getAnnIds(imgIds=[image_id]))
    return [(gt.annToMask(a).astype(bool), a["category_id"]) for a in anns]


def _image_quality(gt: COCO, image_id: int, masks, scores: np.ndarray) -> float:
    """Mean over truth and confident predictions (score >= 0.5) of their best mask IoU with
    the other side: 1 for a perfect image; misses and false positives count 0."""
    truth = [m for m, _ in _gt_masks(gt, image_id)]
    full = masks.to_full()[scores >= 0.5] if len(scores) else np.zeros((0, 1, 1), bool)
    if not truth and not len(full):
        return 1.0

    def best(a: np.ndarray, others) -> float:
        return max((float((a & b).sum() / max((a | b).sum(), 1)) for b in others), default=0.0)

    vals = [best(t, full) for t in truth] + [best(p, truth) for p in full]
    return float(np.mean(vals))


def _draw(gt: COCO, image_id: int, img: np.ndarray, masks, d, names) -> np.ndarray:
    out = img.copy()
    thick = max(1, round(max(img.shape[:2]) / 400))
    for m, _ in _gt_masks(gt, image_id):
        cs, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(out, cs, -1, (0, 220, 0), thick + 1)
    full = masks.to_full()
    for i in range(len(d.scores)):
        if d.scores[i] < 0.5:
            continue
        colour = (0, 0, 255) if names[int(d.labels[i])] == "bar" else (255, 0, 255)
        cs, _ = cv2.findContours(full[i].astype(np.uint8), cv2.RETR_EXTERNAL,
                                 cv2.CHAIN_APPROX_NONE)  # fmt: skip
        cv2.drawContours(out, cs, -1, colour, thick)
    return out


def _tile(img: np.ndarray, label: str, side: int = 360) -> np.ndarray:
    h, w = img.shape[:2]
    s = side / max(h, w)
    small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))),
                       interpolation=cv2.INTER_AREA)  # fmt: skip
    tile = np.full((side + 22, side, 3), 255, np.uint8)
    tile[22 : 22 + small.shape[0], : small.shape[1]] = small
    cv2.putText(tile, label[:48], (3, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1,
                cv2.LINE_AA)  # fmt: skip
    return tile


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", type=Path, required=True)
    ap.add_argument("--split", nargs="+", default=["val", "val_painted"])
    ap.add_argument("--model", default="cendetect/weights/mobilenet_v2_fpn.pth")
    ap.add_argument("--max-images", type=int, default=0)
    ap.add_argument(
        "--test-scale",
        type=int,
        default=0,
        help="override the model's keep-ratio test scale (long side, px); 0: the model's",
    )
    ap.add_argument("--json", type=Path, help="write the table here too")
    ap.add_argument(
        "--sheet",
        type=Path,
        help="write a contact sheet PNG of the 12 worst images (6 per part with two parts): "
        "truth outlines green, refined predictions with score >= 0.5 red (bar) / magenta "
        "(mosaic)",
    )
    ap.add_argument("--refine", choices=("auto", "off"), default="auto",
                    help="the sheet's masks (auto: bars and mosaics refined)")  # fmt: skip
    args = ap.parse_args()
    det = Detector.from_checkpoint(args.model, refine="off")  # each variant refines itself
    if args.test_scale:
        det.preprocess_cfg = dataclasses.replace(
            det.preprocess_cfg, img_scale=(args.test_scale, args.test_scale)
        )
    print(f"{args.model}: test scale {det.preprocess_cfg.img_scale}")
    names = list(det.class_names)
    # variant: (classes refined, bar settings)
    variants: dict[str, tuple[frozenset[str], BarRefineParams]] = {
        "model": (frozenset(), BarRefineParams()),
        "yardstick": (frozenset({"bar"}), BarRefineParams(edge_rule=False, rim_max=1.0)),
        "bars": (frozenset({"bar"}), BarRefineParams()),
        "refined": (frozenset({"bar", "mosaic"}), BarRefineParams()),
    }
    table: dict[str, dict[str, dict[str, float]]] = {}
    worst: list[tuple[float, str, np.ndarray]] = []
    per_part = 12 // max(1, len(args.split))
    for split in args.split:
        scored: list[tuple[float, int, np.ndarray, object, object]] = []
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
            sheet_masks = None
            for v, (classes, params) in variants.items():
                t0 = time.perf_counter()
                masks = d.instance_masks
                if classes:  # the C++ kernels (equal to the references)
                    kinds = refine_kinds(d.labels, names, classes)
                    masks, _ = refine_masks(img, masks, kinds, params)
                seconds[v] += time.perf_counter() - t0
                if v == ("refined" if args.refine == "auto" else "model"):
                    sheet_masks = masks
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
            if args.sheet is not None:
                # keep only the per_part worst so far (a max-heap on quality), not every image
                quality = _image_quality(gt, image_id, sheet_masks, d.scores)
                item = (-quality, image_id, img, sheet_masks, d)
                if len(scored) < per_part:
                    heapq.heappush(scored, item)
                elif item[0] > scored[0][0]:
                    heapq.heapreplace(scored, item)
        if args.sheet is not None:
            for neg_q, image_id, img, masks, d in sorted(scored, key=lambda t: -t[0]):
                quality = -neg_q
                label = f"{split} {gt.imgs[image_id]['file_name']} q={quality:.2f}"
                worst.append((quality, label, _draw(gt, image_id, img, masks, d, names)))
        table[split] = {v: _segm_ap(gt, results[v], ids) for v in variants}
        print(f"{split} ({len(ids)} images)")
        for v in variants:
            row = table[split][v]
            cells = "  ".join(f"{k} {row[k]:.3f}" for k in row)
            print(f"  {v:<10} {cells}   ({seconds[v]:.1f} s)")
    if args.json:
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    if args.sheet is not None and worst:
        tiles = [_tile(im, label) for _, label, im in worst]
        while len(tiles) % 4:
            tiles.append(np.full_like(tiles[0], 255))
        rows = [np.hstack(tiles[i : i + 4]) for i in range(0, len(tiles), 4)]
        cv2.imwrite(str(args.sheet), np.vstack(rows))
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
