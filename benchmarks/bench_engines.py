"""Engines against eager, in one run: model time on one pre-processed image.

What is measured: the wall time of the model call alone (the raw-detection contract), eager
``MaskRCNN`` vs each artifact's :class:`~cendetect.engine.runners.EngineRunner`, on the same
``Batch``; pre- and post-processing are shared code and not timed. Each engine gets
``--warmup`` untimed calls, then ``--repeats`` timed ones; the median, min and max are printed
with the ratio median(eager) / median(engine). Building the artifacts is timed once and printed.

Weights: ``--checkpoint`` or, by default, the ``mask_rcnn_r50_fpn`` parity fixture rebuilt in a
temporary folder (``tests/weights.py``). ``--img-scale 320x224`` shrinks the pre-processing so
that the AOTInductor build (max size = the padded long edge squared) stays short on small
machines. torch threads = all cores.

Usage (repo root):
    .venv/bin/python benchmarks/bench_engines.py [--engines eager,torchscript,torchscript-bf16,aoti]
        [--img-scale WxH] [--repeats N] [--image PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.weights, when run from a checkout

from cendetect import Detector  # noqa: E402
from cendetect.compile import compile_engine  # noqa: E402
from cendetect.engine import preprocess  # noqa: E402
from cendetect.engine.runners import load_engine  # noqa: E402

FIXTURE = REPO / "tests" / "data" / "mmdet" / "mask_rcnn_r50_fpn"
KITE = REPO / "tests" / "data" / "mmdet" / "images" / "kite_1024x576.png"

# engine name -> (compile_engine engine, precision)
BUILDS = {
    "torchscript": ("torchscript", "fp32"),
    "torchscript-bf16": ("torchscript", "bf16"),
    "aoti": ("aoti", "fp32"),
    "aoti-bf16": ("aoti", "bf16"),
}


def _time(fn: Callable[[], object], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--engines", default="eager,torchscript,torchscript-bf16,aoti")
    ap.add_argument("--img-scale", default=None, help="WxH pre-processing scale override")
    ap.add_argument("--image", type=Path, default=KITE)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    engines = [e for e in args.engines.split(",") if e]
    unknown = [e for e in engines if e != "eager" and e not in BUILDS]
    if unknown:
        ap.error(f"unknown engines {unknown}; known: eager, {', '.join(BUILDS)}")
    with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp:
        ckpt = args.checkpoint
        if ckpt is None:
            from tests.weights import save_mmdet2_checkpoint

            ckpt = save_mmdet2_checkpoint(FIXTURE, Path(tmp) / "mask_rcnn_r50_fpn.pth")
        eager = Detector.from_checkpoint(ckpt)
        cfg = eager.preprocess_cfg
        if args.img_scale:
            w, h = (int(v) for v in args.img_scale.lower().split("x"))
            cfg = dataclasses.replace(cfg, img_scale=(w, h))
        batch = preprocess([cv2.imread(str(args.image))], cfg)
        long = -(-max(cfg.img_scale) // 32) * 32
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
            f"network input {tuple(batch.images.shape[-2:])}, load {os.getloadavg()}"
        )
        results: dict[str, list[float]] = {}
        for name in engines:
            if name == "eager":
                run: Callable[[], object] = lambda: eager.model(  # noqa: E731
                    batch.images, batch.image_sizes, batch.scale_factors
                )
            else:
                kind, precision = BUILDS[name]
                out = Path(tmp) / f"{name}{'.ts' if kind == 'torchscript' else '.pt2'}"
                sizes = {} if kind == "torchscript" else {"max_size": (long, long)}
                start = time.perf_counter()
                compile_engine(ckpt, out, engine=kind, precision=precision, **sizes)
                print(f"{name}: built in {time.perf_counter() - start:.1f} s")
                runner = load_engine(out)
                run = lambda runner=runner: runner(batch)  # noqa: E731
            with torch.inference_mode():
                results[name] = _time(run, args.warmup, args.repeats)
        base = statistics.median(results["eager"]) if "eager" in results else None
        for name, times in results.items():
            med = statistics.median(times)
            ratio = f"  x{base / med:.2f} vs eager" if base else ""
            print(
                f"{name:18s} median {med * 1e3:8.1f} ms  min {min(times) * 1e3:8.1f}  "
                f"max {max(times) * 1e3:8.1f}{ratio}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
