"""Deformable convolution on CPU: ours against mmcv 1.7.2's ``DeformConv2d``, in one run.

What is measured: the wall time of one DCNv1 forward (``deform_conv2d(x, offset, weight)``, 3x3,
deform_groups 1, no bias; the offsets are given, their conv is not timed) on the layers an
R50 ``dconv_c3-c5`` backbone runs on an 800 x 1333 input (pytorch style: stride on the 3x3):

  c3 s2  layer2.0.conv2  128 ch, 200 x 334 -> 100 x 167   (x1)
  c3     layer2.k.conv2  128 ch, 100 x 167                (x3)
  c4 s2  layer3.0.conv2  256 ch, 100 x 167 -> 50 x 84     (x1)
  c4     layer3.k.conv2  256 ch, 50 x 84                  (x5)
  c5 s2  layer4.0.conv2  512 ch, 50 x 84 -> 25 x 42       (x1)
  c5     layer4.k.conv2  512 ch, 25 x 42                  (x2)

  ours  ``cendetect.ops.deform_conv2d`` (C++ deformable im2col on all cores, then torch matmul)
  mmcv  ``mmcv.ops.deform_conv2d`` (mmcv-full 1.7.2 CPU kernels), run in the peer virtual
        environment through a subprocess on the same inputs (saved to a temporary .npz); mmdet
        and mmcv are never imported into this process.

Each layer: one warm-up call, then ``--repeats`` timed calls; the median is reported in ms, with
the ratio mmcv / ours and the largest absolute difference between the two outputs. ``backbone``
sums the medians weighted by how often the layer occurs. torch threads: the default (all cores)
in both processes.

Usage (repo root):
    .venv/bin/python benchmarks/bench_deform_conv.py [--repeats N] [--batch B]
        [--peer-python /work/peers/mmdet2/bin/python] [--peer-path /work/peers/tvstub]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import cendetect.ops

# name, channels, input h, w, stride, occurrences in the backbone
LAYERS = [
    ("c3 s2", 128, 200, 334, 2, 1),
    ("c3", 128, 100, 167, 1, 3),
    ("c4 s2", 256, 100, 167, 2, 1),
    ("c4", 256, 50, 84, 1, 5),
    ("c5 s2", 512, 50, 84, 2, 1),
    ("c5", 512, 25, 42, 1, 2),
]

PEER_SCRIPT = r"""
import json, statistics, sys, time
import numpy as np, torch
from mmcv.ops import deform_conv2d
path, repeats = sys.argv[1], int(sys.argv[2])
z = np.load(path)
times, outs = {}, {}
for key in sorted({k.split("/")[0] for k in z.files}):
    x, off, w = (torch.from_numpy(z[f"{key}/{n}"]) for n in ("input", "offset", "weight"))
    s = int(z[f"{key}/stride"])
    with torch.no_grad():
        deform_conv2d(x, off, w, s, 1, 1, 1, 1)
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = deform_conv2d(x, off, w, s, 1, 1, 1, 1)
            t.append(time.perf_counter() - t0)
    times[key] = statistics.median(t)
    outs[key] = out.numpy()
np.savez(path + ".out.npz", **outs)
print(json.dumps(times))
"""


def _inputs(batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    arrays = {}
    for i, (_, c, h, w, s, _) in enumerate(LAYERS):
        ho, wo = (h - 1) // s + 1, (w - 1) // s + 1
        arrays[f"l{i}/input"] = torch.randn(batch, c, h, w, generator=g).numpy()
        arrays[f"l{i}/offset"] = (torch.randn(batch, 18, ho, wo, generator=g) * 2).numpy()
        arrays[f"l{i}/weight"] = (torch.randn(c, c, 3, 3, generator=g) / (3 * c**0.5)).numpy()
        arrays[f"l{i}/stride"] = np.array(s)
    return arrays


def _time_ours(arrays: dict[str, np.ndarray], repeats: int) -> tuple[dict, dict]:
    times, outs = {}, {}
    for i in range(len(LAYERS)):
        x, off, w = (torch.from_numpy(arrays[f"l{i}/{n}"]) for n in ("input", "offset", "weight"))
        s = int(arrays[f"l{i}/stride"])
        args = ([s, s], [1, 1], [1, 1], 1, 1)
        with torch.no_grad():
            cendetect.ops.deform_conv2d(x, off, w, *args)
            t = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = cendetect.ops.deform_conv2d(x, off, w, *args)
                t.append(time.perf_counter() - t0)
        times[f"l{i}"] = statistics.median(t)
        outs[f"l{i}"] = out.numpy()
    return times, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--peer-python", default="/work/peers/mmdet2/bin/python")
    parser.add_argument("--peer-path", default="/work/peers/tvstub")
    args = parser.parse_args()

    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, cendetect threads {cendetect.ops.get_num_threads()}, "
          f"batch {args.batch}, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    arrays = _inputs(args.batch)
    ours, our_out = _time_ours(arrays, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "dcn_inputs.npz")
        np.savez(path, **arrays)
        env = {**os.environ, "PYTHONPATH": args.peer_path}
        run = subprocess.run(
            [args.peer_python, "-c", PEER_SCRIPT, path, str(args.repeats)],
            capture_output=True, text=True, env=env, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            sys.exit(f"mmcv peer run failed:\n{run.stderr[-3000:]}")
        mmcv = json.loads(run.stdout.strip().splitlines()[-1])
        mmcv_out = dict(np.load(path + ".out.npz"))
    print(f"{'layer':8} {'x':>2} {'ours ms':>9} {'mmcv ms':>9} {'mmcv/ours':>9} {'max |diff|':>11}")
    total_ours = total_mmcv = 0.0
    for i, (name, *_, count) in enumerate(LAYERS):
        key = f"l{i}"
        diff = float(np.abs(our_out[key] - mmcv_out[key]).max())
        total_ours += count * ours[key]
        total_mmcv += count * mmcv[key]
        print(f"{name:8} {count:>2} {ours[key] * 1e3:9.1f} {mmcv[key] * 1e3:9.1f} "
              f"{mmcv[key] / ours[key]:9.2f} {diff:11.2e}")  # fmt: skip
    print(f"{'backbone':8} {'':>2} {total_ours * 1e3:9.1f} {total_mmcv * 1e3:9.1f} "
          f"{total_mmcv / total_ours:9.2f}")  # fmt: skip
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
