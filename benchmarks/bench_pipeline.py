"""End-to-end folder throughput: ``cendetect run`` against a CenDetect det.py-style loop.

What is measured: images/s over a folder of ``--images`` PNGs of ``--size`` x ``--size``
pixels (default 200 at 1024x1024), from process start to exit (imports and model load
included, the same for both) and for the processing loop alone (each side reports it).

- **ours**: ``python -m cendetect run --input_path IN --output_path OUT --checkpoint CKPT``
  with ``--batch-size``, ``--workers`` and ``--streams`` (decoding and encoding in threads,
  overlapped with inference; on the CPU, by default, two inference streams of cores/2 threads;
  the C++ compositor fills the masks).
- **det.py loop**: what CenDetect's det.py does, on the same engine (``Detector``): one image
  at a time, ``cv2.imread``, detect, full-resolution ``N x H x W`` masks above the confidence,
  ``np.any`` union, ``image[union] = [0, 255, 0]``, ``cv2.imwrite`` PNG.

Both load the same checkpoint: ``--model r50`` (default) the ``mask_rcnn_r50_fpn`` parity
fixture rebuilt in a temporary folder (seeded weights, the fixture's config: 1333x800 test
scale, so a 1024x1024 image runs at 800x800); ``--model default`` the default model bundled
with the package (``mobilenet_v2_fpn``, 512 long-side test scale); ``--model tiny`` (or
``--tiny``) the tests' tiny config (64x64, ``tests/tiny_model.py``), where decoding/encoding
dominate. The outputs of the two are compared
pixel for pixel (with the tiny model's random weights, many mask values sit at the 0.5
threshold, and the last-bit differences between torch's 2 threads and two 1-thread streams flip
a few border pixels: ``--streams 1`` makes them identical; the trained models' outputs are
identical either way). Each side runs in its own subprocess with torch's default threads; the other
processes' CPU use during each run is printed (``/proc/stat``), and ``--wait-quiet S`` waits up
to S seconds for the machine to be quiet first.

``--engine KIND [--bf16]`` runs both sides on one compiled artifact instead of eager (built
before the timed runs). ``--repeat N`` runs the pair N times, alternately (loop, ours, loop,
ours...), and prints the median of the per-pair ratios: the machine's speed drifts between
runs by more than the difference being measured, and alternating pairs shares the drift.

Usage (repo root):
    .venv/bin/python benchmarks/bench_pipeline.py [--images 200] [--model r50|default|tiny]
        [--engine eager|torchscript|aoti|onnx] [--bf16] [--repeat N]
The script is also the baseline worker (``--worker baseline``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KITE = REPO / "tests" / "data" / "mmdet" / "images" / "kite_1024x576.png"


def _cpu_busy_s() -> float:
    with open("/proc/stat") as f:
        fields = [float(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def wait_quiet(max_wait_s: float, threshold_cores: float = 0.2, sample_s: float = 5.0) -> float:
    """Wait (at most ``max_wait_s``) until the machine uses < ``threshold_cores``; return it."""
    deadline = time.monotonic() + max_wait_s
    while True:
        b0, t0 = _cpu_busy_s(), time.monotonic()
        time.sleep(sample_s)
        cores = (_cpu_busy_s() - b0) / (time.monotonic() - t0)
        if cores < threshold_cores or time.monotonic() > deadline:
            return cores


def baseline(
    input_dir: Path, output_dir: Path, checkpoint: Path, confidence: float, engine: str | None
) -> None:
    """CenDetect's det.py loop on our Detector (eager, or the ``engine`` artifact); prints the
    loop's images/s as JSON."""
    import cv2
    import numpy as np

    from cendetect import Detector

    if engine:
        detector = Detector.from_engine(engine, checkpoint=checkpoint)
    else:
        detector = Detector.from_checkpoint(checkpoint)
    paths = sorted(input_dir.glob("*.png"))
    t0 = time.perf_counter()
    for p in paths:
        image = cv2.imread(str(p))
        res = detector(image)
        masks = res.masks[res.scores > confidence]
        if len(masks):
            image[np.any(masks, axis=0)] = [0, 255, 0]
        cv2.imwrite(str(output_dir / p.name), image)
    loop = time.perf_counter() - t0
    print(json.dumps({"images": len(paths), "loop_s": loop}))


def _make_inputs(folder: Path, n: int, size: int) -> None:
    import cv2
    import numpy as np

    base = cv2.resize(cv2.imread(str(KITE)), (size, size), interpolation=cv2.INTER_AREA)
    folder.mkdir(parents=True)
    for i in range(n):  # distinct images: shifted, and every other one mirrored
        img = np.roll(base, shift=(7 * i) % size, axis=1)
        cv2.imwrite(str(folder / f"img_{i:04d}.png"), img[:, ::-1] if i % 2 else img)


def _checkpoint(tmp: Path, model: str) -> Path:
    sys.path.insert(0, str(REPO))
    if model == "default":
        from cendetect.zoo import default_checkpoint

        ckpt = default_checkpoint()
        if ckpt is None:
            raise SystemExit("--model default: this install has no bundled default model")
        return ckpt
    if model == "tiny":
        from tests.tiny_model import save_tiny_checkpoint

        return save_tiny_checkpoint(tmp / "tiny.pth")
    from tests.weights import save_mmdet2_checkpoint

    fixture = REPO / "tests" / "data" / "mmdet" / "mask_rcnn_r50_fpn"
    return save_mmdet2_checkpoint(fixture, tmp / "r50.pth")


def _timed(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """(wall seconds, cores used by other processes meanwhile, stdout) of one subprocess."""
    import resource

    b0, t0 = _cpu_busy_s(), time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, cwd=REPO, env={**os.environ, **(env or {})}
    )
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    others = max(0.0, (_cpu_busy_s() - b0 - own) / wall)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, others, proc.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=200)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--model", choices=("r50", "default", "tiny"), default="r50")
    p.add_argument("--tiny", action="store_true", help="= --model tiny (I/O-bound)")
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--streams", type=int, help="ours: inference streams (default: cendetect run's default)"
    )
    p.add_argument("--confidence", type=float, default=0.3)
    p.add_argument(
        "--engine",
        choices=("eager", "torchscript", "aoti", "onnx"),
        default="eager",
        help="the engine both sides run: built once before the timed runs (not timed), then "
        "the loop loads it with Detector.from_engine and cendetect run with --engine PATH",
    )
    p.add_argument("--bf16", action="store_true", help="a bf16 engine (torchscript, aoti)")
    p.add_argument("--wait-quiet", type=float, default=0.0, metavar="S")
    p.add_argument(
        "--loop-malloc-tuned",
        action="store_true",
        help="give the det.py loop the glibc malloc settings cendetect run sets for itself "
        "(cendetect/runtime.py), through MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run the pair this many times, alternately (loop, ours, loop, ours...); the "
        "median of the per-pair ratios is printed with each pair's figures",
    )
    p.add_argument("--worker", choices=("baseline",), help=argparse.SUPPRESS)
    p.add_argument("--spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bf16 and args.engine not in ("torchscript", "aoti"):
        p.error("--bf16 builds a compiled engine: add --engine torchscript or --engine aoti")
    if args.worker:
        spec = json.loads(args.spec)
        baseline(
            Path(spec["in"]), Path(spec["out"]), Path(spec["ckpt"]), spec["confidence"],
            spec["engine"],
        )  # fmt: skip
        return 0
    import cv2
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="bench_pipeline_") as t:
        tmp = Path(t)
        model = "tiny" if args.tiny else args.model
        ckpt = _checkpoint(tmp, model)
        _make_inputs(tmp / "in", args.images, args.size)
        engine = None
        if args.engine != "eager":
            from cendetect.compile import compile_engine
            from cendetect.engine.runners import ENGINE_KINDS

            kind = args.engine
            engine = str(tmp / f"engine{ENGINE_KINDS[kind]}")
            t0 = time.perf_counter()
            compile_engine(ckpt, engine, engine=kind, precision="bf16" if args.bf16 else "fp32")
            print(f"built {kind} {'bf16' if args.bf16 else 'fp32'} in "
                  f"{time.perf_counter() - t0:.0f} s (not timed)")  # fmt: skip
        spec = {"in": str(tmp / "in"), "out": str(tmp / "base"), "ckpt": str(ckpt),
                "confidence": args.confidence, "engine": engine}  # fmt: skip
        runs = {
            "det.py loop": [sys.executable, __file__, "--worker", "baseline", "--spec",
                            json.dumps(spec)],
            "cendetect run": [sys.executable, "-m", "cendetect", "run", "--no-progress",
                              "--input_path", str(tmp / "in"), "--output_path", str(tmp / "ours"),
                              "--checkpoint", str(ckpt), "--device", "cpu",
                              "--confidence", str(args.confidence),
                              "--batch-size", str(args.batch_size),
                              "--workers", str(args.workers)]
                              + (["--streams", str(args.streams)] if args.streams else [])
                              + (["--engine", engine] if engine else []),
        }  # fmt: skip
        pairs: list[dict[str, tuple[float, float, float]]] = []
        loop_env = None
        if args.loop_malloc_tuned:
            from cendetect.runtime import MMAP_THRESHOLD, TRIM_THRESHOLD

            loop_env = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD),
                        "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}  # fmt: skip
        same = True
        for _ in range(max(1, args.repeat)):
            for d in ("base", "ours"):
                shutil.rmtree(tmp / d, ignore_errors=True)
            (tmp / "base").mkdir()
            results = {}
            for name, cmd in runs.items():
                if args.wait_quiet > 0:
                    quiet = wait_quiet(args.wait_quiet)
                    print(f"{name}: other load before start {quiet:.2f} cores")
                wall, others, out = _timed(cmd, loop_env if name == "det.py loop" else None)
                if name == "det.py loop":
                    loop = json.loads(out.strip().splitlines()[-1])["loop_s"]
                else:
                    loop = float(re.search(r"failed in ([0-9.]+) s", out).group(1))
                results[name] = (wall, loop, others)
            pairs.append(results)
            same = same and all(
                np.array_equal(cv2.imread(str(f)), cv2.imread(str(tmp / "ours" / f.name)))
                for f in sorted((tmp / "base").glob("*.png"))
            )
    n = args.images
    scale = {
        "tiny": "the tests' tiny 64x64 config",
        "r50": "mask_rcnn_r50_fpn, fixture config, 1333x800 scale",
        "default": "the bundled default model mobilenet_v2_fpn, 512 scale",
    }[model]
    print(f"{n} images {args.size}x{args.size}, {scale}, CPU, "
          f"{os.cpu_count()} cores; batch {args.batch_size}, workers {args.workers}, "
          f"streams {args.streams or 'default'}; engine {args.engine}"
          f"{' bf16' if args.bf16 else ''}"
          f"{'; the loop with our malloc settings' if args.loop_malloc_tuned else ''}")  # fmt: skip
    print(f"{'':20}{'end-to-end img/s':>18}{'loop img/s':>12}{'other load':>12}")
    e2e, loops = [], []
    for i, results in enumerate(pairs, 1):
        for name, (wall, loop, others) in results.items():
            label = f"{name} #{i}" if len(pairs) > 1 else name
            print(f"{label:20}{n / wall:18.3f}{n / loop:12.3f}{others:11.2f}c")
        (bw, bl, _), (ow, ol, _) = results["det.py loop"], results["cendetect run"]
        e2e.append(bw / ow)
        loops.append(bl / ol)
        if len(pairs) > 1:
            print(f"  pair #{i}: end-to-end {bw / ow:.2f}x, loop {bl / ol:.2f}x")
    how = f" (median of {len(pairs)} pairs)" if len(pairs) > 1 else ""
    print(f"speed-up{how}: end-to-end {statistics.median(e2e):.2f}x, "
          f"loop {statistics.median(loops):.2f}x; outputs identical: {same}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
