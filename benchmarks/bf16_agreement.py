"""bf16 against fp32 on a trained checkpoint: mean mask IoU of IoU-matched detections.

The protocol of ``tests/compile/test_precision_default_model.py`` over more images: the
reference is the fp32 model's detections above ``--confidence`` (0.3), each matched to the bf16
model's detection of the same label with the highest box IoU (>= 0.5, greedy in score order);
an unmatched reference counts as mask IoU 0. Masks are compared at full image resolution. The
bf16 model is :func:`cendetect.compile.precision.with_precision` (what ``cendetect-compile
--bf16`` builds, before scripting), both run in memory.

Usage (repo root):
    .venv/bin/python benchmarks/bf16_agreement.py [--checkpoint CKPT] \\
        [--images samples /work/data/synth_v1/val] [--limit 0 30] [--fp32-stride 0 2 4 8]
``--limit`` gives the number of (sorted) images taken from each folder (0 = all).
``--fp32-stride`` compares the float32-stage policies (``with_precision``'s ``fp32_stride``).
``--isa native,avx512_bf16`` runs the whole comparison once per CPU code path of ``tests/isa.py``
(on a Xeon with AMX: bf16 on AMX, then on AVX-512 BF16 as an AMD EPYC Zen 4 runs it), each in
a fresh interpreter with that level's environment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXTS = {".jpg", ".jpeg", ".png"}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="default: the bundled default model")
    p.add_argument("--images", nargs="+", default=[str(REPO / "samples")])
    p.add_argument("--limit", nargs="+", type=int, default=[0])
    p.add_argument("--confidence", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--isa", default="", help="comma list of tests/isa.py levels to run under")
    p.add_argument(
        "--fp32-stride",
        type=int,
        nargs="+",
        default=[None],
        help="backbone stages kept float32 up to this stride, one run per value "
        "(default: what cendetect-compile builds; 0: none)",
    )
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO))
    if args.isa:
        from tests.isa import ISA_LEVELS, cpu_model, probe

        rest, skip = [], False
        for a in sys.argv[1:] if argv is None else argv:
            if skip or a.startswith("--isa="):
                skip = False
                continue
            skip = a == "--isa"
            if not skip:
                rest.append(a)
        rc = 0
        for name in args.isa.split(","):
            env = ISA_LEVELS[name].environ(dict(os.environ, PYTHONPATH=str(REPO)))
            paths = probe(env)
            print(f"== {name} on {cpu_model()}: oneDNN {paths['onednn']}", flush=True)
            rc |= subprocess.run([sys.executable, __file__, *rest], env=env).returncode
        return rc
    import numpy as np
    import torch

    from cendetect import Detector
    from cendetect.compile.precision import with_precision
    from cendetect.zoo import default_checkpoint
    from tests.compile.matching import low_precision_agreement

    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = args.checkpoint or default_checkpoint()
    if ckpt is None:
        raise SystemExit("no --checkpoint and no bundled default model")
    limits = args.limit + [args.limit[-1]] * (len(args.images) - len(args.limit))
    paths: list[Path] = []
    for folder, limit in zip(args.images, limits):
        found = sorted(f for f in Path(folder).iterdir() if f.suffix.lower() in EXTS)
        paths += found[:limit] if limit else found
    det = Detector.from_checkpoint(ckpt, device="cpu")
    for stride in args.fp32_stride:
        low = with_precision(det.model, "bf16", fp32_stride=stride)
        t0 = time.perf_counter()
        ious = low_precision_agreement(det, low, paths, args.confidence)
        a = np.asarray(ious)
        if a.size == 0:
            raise SystemExit("no fp32 detections above the confidence on these images")
        unmatched, seconds = int((a == 0).sum()), time.perf_counter() - t0
        kept = ",".join(low.fp32_stages) or "none"
        print(
            f"{ckpt}: fp32 stages {kept}; {len(paths)} images, {a.size} detections, "
            f"{unmatched} unmatched; mean mask IoU {a.mean():.4f} (matched only "
            f"{a[a > 0].mean():.4f}), 10th percentile {np.percentile(a, 10):.3f}; {seconds:.0f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
