"""Re-run the real mmdetection 2.28.2 on the parity fixtures under other CPUs' code paths, and
measure how far its own outputs move from the fixture's (``expected.json``).

That bounds what the parity tests may ask of us: a tolerance tighter than mmdetection's own
spread across CPUs would fail on a CPU that mmdetection itself passes on. Each ISA level of
``tests/isa.py`` runs in a fresh interpreter with its environment variables; the comparison is
``tests/matching.py``'s, with the same rules as the parity tests.

Runs ONLY in the peer venv with mmcv-full 1.7.2 (tests/data/mmdet/README.md, never in
cendetect's own environment):

    PYTHONPATH=/work/peers/tvstub:. /work/peers/mmdet2/bin/python \\
        tests/data/mmdet/rerun_mmdet.py [--levels native avx2 default] [--archs ...] [--json F]

Prints one line per (level, architecture, image): matched / reference detections, the
smallest box IoU, the largest score difference, the smallest mask IoU, the most pixels by
which a mask differs, and the problems the parity rule would report.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO))

HERE = Path(__file__).resolve().parent
ARCHS = [
    "mask_rcnn_r50_fpn",
    "mask_rcnn_r101_fpn",
    "point_rend_r50_fpn",
    "cascade_mask_rcnn_r50_fpn_dconv",
]


def _child(archs: list[str], threads: int) -> list[dict]:
    import numpy as np
    import torch
    from mmcv import Config
    from mmdet.apis import inference_detector, init_detector

    from tests.matching import match_to_reference
    from tests.weights import rebuild_state_dict

    torch.set_num_threads(threads)
    rows = []
    for arch in archs:
        folder = HERE / arch
        expected = json.loads((folder / "expected.json").read_text())
        cfg = Config.fromstring((folder / "config.py").read_text(), ".py")
        model = init_detector(cfg, checkpoint=None, device="cpu")
        model.load_state_dict(rebuild_state_dict(folder), strict=True)
        model.CLASSES = tuple(expected["classes"])
        model.eval()
        for image, reference in expected["images"].items():
            with torch.no_grad():
                bbox_result, segm_result = inference_detector(model, str(HERE / "images" / image))
            boxes, scores, labels, masks = [], [], [], []
            for label, (dets, segs) in enumerate(zip(bbox_result, segm_result, strict=True)):
                for det, seg in zip(dets, segs, strict=True):
                    boxes.append(det[:4])
                    scores.append(det[4])
                    labels.append(label)
                    masks.append(np.asarray(seg, dtype=bool))
            rep = match_to_reference(
                np.array(boxes, dtype=np.float32).reshape(-1, 4),
                np.array(scores, dtype=np.float32),
                np.array(labels, dtype=np.int64),
                np.stack(masks) if masks else None,
                reference,
            )
            rows.append(
                {
                    "arch": arch,
                    "image": image,
                    "reference": len(reference),
                    "detections": len(scores),
                    "matched": rep.matched,
                    "min_box_iou": rep.min_box_iou,
                    "max_score_diff": rep.max_score_diff,
                    "min_mask_iou": rep.min_mask_iou,
                    "max_mask_diff": rep.max_mask_diff,
                    "problems": rep.problems,
                }
            )
            print(f"  {arch} {image}: {rep}", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--levels", nargs="+", default=["native", "avx512", "avx2", "default"])
    parser.add_argument("--archs", nargs="+", default=ARCHS, choices=ARCHS)
    parser.add_argument("--threads", type=int, default=2, help="the fixtures' thread count")
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--spread",
        type=Path,
        help="also write mmdetection's own spread per level, architecture and image here "
        "(what tests/matching.py's own_spread() reads: tests/data/mmdet/own_spread.json)",
    )
    parser.add_argument("--from-json", type=Path, help="with --spread: from this --json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        rows = _child(args.archs, args.threads)
        print("ROWS " + json.dumps(rows))
        return 0
    if args.from_json:  # only rewrite --spread from an earlier run's --json
        earlier = json.loads(args.from_json.read_text())
        _write_spread(args.spread, earlier["cpu"], list(earlier["levels"]), earlier["levels"])
        return 0
    from tests.isa import ISA_LEVELS, cpu_model, missing_flags, probe

    print(f"CPU: {cpu_model()}")
    results = {}
    for name in args.levels:
        level = ISA_LEVELS[name]
        if missing_flags(level):
            print(f"== {name}: this CPU lacks {missing_flags(level)}; not run")
            continue
        env = level.environ()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(REPO)]))
        paths = probe(env)
        print(f"== {name}: {paths}", flush=True)
        cmd = [sys.executable, __file__, "--child", "--threads", str(args.threads)]
        proc = subprocess.run(
            cmd + ["--archs", *args.archs], env=env, capture_output=True, text=True
        )
        for line in proc.stdout.splitlines():
            if line.startswith("ROWS "):
                results[name] = {"paths": paths, "rows": json.loads(line[5:])}
            else:
                print(line)
        if proc.returncode:
            print(proc.stderr[-3000:])
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_model(), "levels": results}, indent=1))
    if args.spread:
        _write_spread(args.spread, cpu_model(), args.levels, results)
    return 0


def _write_spread(path: Path, cpu: str, levels: list[str], results: dict) -> None:
    spread = {
        "cpu": cpu,
        "command": "tests/data/mmdet/rerun_mmdet.py --levels " + " ".join(levels),
        "levels": {
            name: {
                f"{r['arch']}/{r['image']}": {
                    # reference detections left unmatched away from the 100-detection cut
                    "unmatched": sum(
                        p.startswith("reference #") and p.endswith("has no match")
                        for p in r["problems"]
                    ),
                    "unmatched_ours": sum(
                        p.startswith("ours #") and p.endswith("has no reference match")
                        for p in r["problems"]
                    ),
                    "max_mask_diff": r["max_mask_diff"],
                    "max_score_diff": r["max_score_diff"],
                    "problems": len(r["problems"]),
                }
                for r in level["rows"]
            }
            for name, level in results.items()
        },
    }
    path.write_text(json.dumps(spread, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
