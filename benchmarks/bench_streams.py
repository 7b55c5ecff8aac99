"""Inference streams on the CPU: one stream of all threads against S streams of threads / S.

What is measured: images/s of ``Detector.predict`` (pre-processing, model, full-resolution
masks) on one in-memory photo resized to 1024x1024 (``--image``, default the kite fixture), in
one process:

- **one stream**: the calls one after another, ``torch.set_num_threads(T)`` (T = the cores);
  what a plain loop over images does, and the peer side here.
- **S streams**: the same calls from S threads at once, each image on one thread, with
  ``cendetect.flow.images.stream_threads(S)`` giving each stream T / S threads; what
  ``cendetect run --streams S`` does.

The two are timed alternately (``--rounds`` times each) and the medians' ratio is printed.
Detections are compared between the two (the thread count can move float32 sums in the last
bits; the number of detections per image is printed for both).

Usage (repo root):
    .venv/bin/python benchmarks/bench_streams.py [--model default|r50] [--calls 24] [--streams 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KITE = REPO / "tests" / "data" / "mmdet" / "images" / "kite_1024x576.png"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=("default", "r50"), default="default")
    p.add_argument("--calls", type=int, default=24, help="images per timed round")
    p.add_argument("--streams", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--image", type=Path, default=KITE, help="photo, resized to 1024x1024 (default: kite)"
    )
    args = p.parse_args(argv)

    sys.path.insert(0, str(REPO))
    import cv2
    import torch

    from cendetect import Detector
    from cendetect.flow.images import stream_threads

    with tempfile.TemporaryDirectory() as tmp:
        if args.model == "default":
            from cendetect.zoo import default_checkpoint

            ckpt = default_checkpoint()
            if ckpt is None:
                raise SystemExit("--model default: this install has no bundled default model")
        else:
            from tests.weights import save_mmdet2_checkpoint

            fixture = REPO / "tests" / "data" / "mmdet" / "mask_rcnn_r50_fpn"
            ckpt = save_mmdet2_checkpoint(fixture, Path(tmp) / "r50.pth")
        det = Detector.from_checkpoint(ckpt, device="cpu")
    image = cv2.imread(str(args.image))
    if image is None:
        raise SystemExit(f"--image {args.image}: cannot read it as an image")
    image = cv2.resize(image, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    threads = torch.get_num_threads()

    def one_stream() -> tuple[float, int]:
        det.predict([image])
        t = time.perf_counter()
        for _ in range(args.calls):
            n = len(det.predict([image])[0])
        return args.calls / (time.perf_counter() - t), n

    def streams() -> tuple[float, int]:
        with stream_threads(args.streams), ThreadPoolExecutor(args.streams) as pool:
            det.predict([image])
            t = time.perf_counter()
            out = list(pool.map(lambda _: det.predict([image])[0], range(args.calls)))
            return args.calls / (time.perf_counter() - t), len(out[-1])

    rates: dict[str, list[float]] = {"one": [], "streams": []}
    counts = {}
    for _ in range(args.rounds):
        rate, counts["one"] = one_stream()
        rates["one"].append(rate)
        rate, counts["streams"] = streams()
        rates["streams"].append(rate)
    one, many = statistics.median(rates["one"]), statistics.median(rates["streams"])
    print(
        f"{args.model}, {args.image.name} at 1024x1024, {args.calls} calls x {args.rounds} "
        f"rounds, {threads} threads; "
        f"detections per image: one stream {counts['one']}, streams {counts['streams']}"
    )
    print(f"one stream of {threads} threads: {one:.2f} img/s  (rounds: "
          + ", ".join(f"{r:.2f}" for r in rates["one"]) + ")")  # fmt: skip
    print(f"{args.streams} streams of {max(1, threads // args.streams)} thread(s): {many:.2f} "
          "img/s  (rounds: " + ", ".join(f"{r:.2f}" for r in rates["streams"]) + ")")  # fmt: skip
    print(f"streams / one stream: {many / one:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
