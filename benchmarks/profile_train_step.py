"""Profile training steps of the default model: time per step and where it goes.

Runs ``--steps`` optimisation steps of ``cendetect train``'s :class:`Trainer` on the same fixed
batches (drawn once from ``--dataset``, so every run of this script sees the same images), after
``--warmup`` untimed steps, and prints the mean step time and the operators with the most self
CPU time (torch.profiler over the timed steps). Use it to compare two trees: run it at each
commit on a quiet machine and compare the printed means.

    .venv/bin/python benchmarks/profile_train_step.py --dataset /work/data/prof
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import torch

from cendetect.runtime import cpu_name
from cendetect.train.config import TrainConfig
from cendetect.train.loop import Trainer, _batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", required=True, help="a `cendetect synth` folder with train/")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--train-scale", default="384,512")
    ap.add_argument("--frozen-stages", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--top", type=int, default=15, help="operators to list")
    ap.add_argument(
        "--cpu-bf16", action="store_true", help="bfloat16 autocast (cendetect train --cpu-bf16)"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    lo, hi = (int(v) for v in args.train_scale.split(","))
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            dataset=args.dataset,
            out=out,
            train_scale=(lo, hi),
            frozen_stages=args.frozen_stages,
            workers=0,
            progress=False,
            pretrained="imagenet",
            cpu_bf16=args.cpu_bf16,
        )
        trainer = Trainer(cfg)
        batches = list(
            itertools.islice(_batches(trainer.train_set, cfg, 0), args.warmup + args.steps)
        )
        for it, batch in enumerate(batches[: args.warmup]):
            trainer.step(batch, it + cfg.warmup_iters)
        times = []
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for it, batch in enumerate(batches[args.warmup :]):
                t0 = time.perf_counter()
                trainer.step(batch, it + cfg.warmup_iters)
                times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    print(f"CPU: {cpu_name()}, {args.threads} threads, torch {torch.__version__}")
    print(f"train scale {lo}-{hi}, frozen stages {args.frozen_stages}, batch {cfg.batch_size}")
    print(
        f"step time: mean {mean:.3f} s over {len(times)} steps "
        f"(min {min(times):.3f}, max {max(times):.3f}; profiler on)"
    )
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
