"""Pre-processing: the table-lookup normalisation against mmcv's arithmetic, side by side.

Both give the same float32 bits (tests/engine/test_preprocess.py). For each image size and test
scale: the whole ``preprocess`` call (keep-ratio resize, normalisation into the padded batch)
and the arithmetic it replaced (the same resize, ``normalise_arithmetic``, and the copy into a
padded batch), median of ``--repeats`` calls, and the ratio.

    .venv/bin/python benchmarks/bench_preprocess.py [--threads 1]
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable

import numpy as np
import torch
from common import median_ms  # benchmarks/common.py (this script's folder is on the path)

from cendetect.engine.preprocess import (
    PreprocessConfig,
    normalise_arithmetic,
    preprocess,
    resize_image,
)
from cendetect.runtime import cpu_name


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    return median_ms(fn, repeats)[0]


def _arithmetic(image: np.ndarray, cfg: PreprocessConfig) -> torch.Tensor:
    resized, _ = resize_image(image, cfg)
    t = normalise_arithmetic(resized, cfg)
    d = cfg.size_divisor
    h, w = t.shape[1:]
    ph, pw = (-(-h // d) * d, -(-w // d) * d) if d > 0 else (h, w)
    out = torch.zeros((1, 3, ph, pw), dtype=torch.float32)
    out[0, :, :h, :w] = t
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    print(f"CPU: {cpu_name()}; {args.threads} thread(s); median of {args.repeats}")
    print("| image | test scale | arithmetic ms | table lookup ms | ratio |")
    print("|---|---|---|---|---|")
    for (w, h), scale in (((1024, 1024), 512), ((1024, 1024), 640), ((1333, 800), 1333)):
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        cfg = dataclasses.replace(PreprocessConfig(), img_scale=(scale, scale), size_divisor=32)
        a = _median_ms(lambda: _arithmetic(image, cfg), args.repeats)  # noqa: B023
        b = _median_ms(lambda: preprocess([image], cfg), args.repeats)  # noqa: B023
        print(f"| {w}x{h} | {scale} | {a:.1f} | {b:.1f} | {a / b:.2f}x |")


if __name__ == "__main__":
    main()
