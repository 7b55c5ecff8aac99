"""Eager CPU inference: cendetect's ``Detector`` against real mmdetection 2.28, in one run.

What is measured: the wall time of one end-to-end call on a BGR uint8 image already in memory,
``detector(image)`` for ours (pre-processing, model, box rescale, full-resolution mask paste) and
``inference_detector(model, image)`` for mmdetection (its test pipeline, model, ``rescale=True``
box and mask results). Decoding the file is not timed; building the model is not timed.

How: both load the same mmdetection 2.x checkpoint, made in a temporary folder from the
``mask_rcnn_r50_fpn`` parity fixture (``tests/weights.py``: seeded weights + the fixture's config
text). Each (implementation, case) runs in a fresh subprocess with torch threads = all cores:
2 warm-up calls (``--warmup``), then ``--repeats`` timed calls (default 7), reported as median,
min and max (see below for calls disturbed by other processes). The subprocess's peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``) covers import, checkpoint load, model build and every call
of that one case. mmdetection runs under its own interpreter (``--mmdet-python``, a separate venv
with mmcv-full 1.7.2 built from source, see ``tests/data/mmdet/README.md``), with a torchvision
stub on ``PYTHONPATH`` (``--tv-stub``).
For each timed call the worker also records how many cores *other* processes kept busy
(``/proc/stat`` CPU time minus its own, over the wall time): on a shared machine that column says
whether a number is trustworthy. By default (``--quiet-cores 0.15``) a run keeps calling until
``--repeats`` calls saw other processes use < 0.15 core (at most ``--max-calls``), and median,
min and max are over those undisturbed calls (over all calls if none was); the table shows how
many calls were undisturbed. ``--wait-quiet S`` also waits (up to S s) before each run until
other processes use < 0.1 core.

Cases:
  kite_1024x576   the fixture image, default pipeline (resized to 1333x750, padded to 1344x768)
  photo_1333x800  the kite photo resized to 1333x800 with OpenCV (network input 1344x800)
  square_1024     the kite photo resized to 1024x1024, ``img_scale`` set to (1024, 1024)

Usage (repo root):  .venv/bin/python benchmarks/bench_eager.py [--repeats N] [--json OUT]
This script is also the worker: it re-runs itself with ``--worker ours|mmdet``; the mmdet worker
path imports nothing from cendetect, so it runs inside the peer venv.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name as _cpu_name  # noqa: E402
from common import fmt as _fmt  # noqa: E402
from common import markdown_table as _table  # noqa: E402
from common import peak_rss_mb as _peak_rss_mb  # noqa: E402
from common import read_image as _read  # noqa: E402
from common import time_calls as _time_calls  # noqa: E402
from common import wait_quiet  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "data" / "mmdet" / "mask_rcnn_r50_fpn"
KITE = REPO / "tests" / "data" / "mmdet" / "images" / "kite_1024x576.png"
DEFAULT_MMDET_PYTHON = Path("/work/peers/mmdet2/bin/python")
DEFAULT_TV_STUB = Path("/work/peers/tvstub")

# name -> (image size (w, h) or None for the fixture as is, img_scale override or None)
CASES: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {
    "kite_1024x576": (None, None),
    "photo_1333x800": ((1333, 800), None),
    "square_1024": ((1024, 1024), (1024, 1024)),
}


# --------------------------------------------------------------------------------------------
# worker side (runs in a fresh subprocess, ours or mmdet's interpreter)


def _ours_runner(spec: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[Any], list[float]]]:
    from cendetect import Detector

    det = Detector.from_checkpoint(spec["checkpoint"], device="cpu")
    if spec["img_scale"] is not None:
        det.preprocess_cfg = dataclasses.replace(
            det.preprocess_cfg, img_scale=tuple(spec["img_scale"])
        )
    image = _read(spec["image"])

    def scores(out: Any) -> list[float]:
        return [float(s) for s in out.scores]

    return (lambda: det(image)), scores


def _mmdet_runner(spec: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[Any], list[float]]]:
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(spec["config"], spec["checkpoint"], device="cpu")
    if spec["img_scale"] is not None:
        # inference_detector builds its pipeline from model.cfg.data.test.pipeline on every call
        for step in model.cfg.data.test.pipeline:
            if step["type"] == "MultiScaleFlipAug":
                step["img_scale"] = tuple(spec["img_scale"])
                break
        else:
            raise RuntimeError("no MultiScaleFlipAug in the test pipeline to set img_scale on")
    image = _read(spec["image"])

    def scores(out: Any) -> list[float]:
        bbox_result = out[0] if isinstance(out, tuple) else out
        return sorted((float(s) for b in bbox_result for s in b[:, 4]), reverse=True)

    return (lambda: inference_detector(model, image)), scores


def run_worker(kind: str, spec_path: Path, out_path: Path) -> None:
    """Time one case with one implementation and write the result as JSON."""
    spec = json.loads(spec_path.read_text())
    t_start = time.perf_counter()
    import torch

    torch.set_num_threads(int(spec["threads"]))
    runner = _ours_runner if kind == "ours" else _mmdet_runner
    fn, scores_of = runner(spec)
    load_s = time.perf_counter() - t_start
    rss_loaded = _peak_rss_mb()
    quiet_cores = float(spec["quiet_cores"])
    times, others, out = _time_calls(
        fn, int(spec["warmup"]), int(spec["repeats"]), quiet_cores, int(spec["max_calls"])
    )
    scores = scores_of(out)
    quiet = [t for t, o in zip(times, others) if o < quiet_cores] if quiet_cores > 0 else times
    # the statistics are over the calls no other process disturbed, when there are any
    stat = quiet or times
    result = {
        "times_s": times,
        "other_cores_busy": others,
        "quiet_cores": quiet_cores,
        "num_calls": len(times),
        "num_quiet_calls": len(quiet),
        "median_s": statistics.median(stat),
        "min_s": min(stat),
        "max_s": max(stat),
        "median_all_calls_s": statistics.median(times),
        "other_cores_busy_median": statistics.median(others),
        "load_s": load_s,
        "peak_rss_mb_after_load": rss_loaded,
        "peak_rss_mb": _peak_rss_mb(),
        "num_detections": len(scores),
        "top_scores": scores[:10],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    out_path.write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------------------------
# driver side


def _make_inputs(tmp: Path) -> tuple[Path, Path, dict[str, Path]]:
    """The shared checkpoint, the fixture config and one PNG per case, under ``tmp``."""
    import cv2

    sys.path.insert(0, str(REPO))
    from tests.weights import save_mmdet2_checkpoint

    ckpt = save_mmdet2_checkpoint(FIXTURE, tmp / "mask_rcnn_r50_fpn_fixture.pth")
    config = tmp / "mask_rcnn_r50_fpn_config.py"
    config.write_text((FIXTURE / "config.py").read_text())
    kite = cv2.imread(str(KITE), cv2.IMREAD_COLOR)
    images = {}
    for name, (size, _) in CASES.items():
        img = kite if size is None else cv2.resize(kite, size, interpolation=cv2.INTER_LINEAR)
        images[name] = tmp / f"{name}.png"
        cv2.imwrite(str(images[name]), img)
    return ckpt, config, images


def _run_one(
    kind: str, python: str, env: dict[str, str], spec: dict[str, Any], tmp: Path, wait_s: float
) -> dict[str, Any]:
    tag = f"{kind}_{spec['case']}"
    if wait_s > 0:
        t0 = time.monotonic()
        cores = wait_quiet(wait_s)
        print(
            f"{tag}: waited {time.monotonic() - t0:.0f} s for a quiet machine "
            f"(other processes now use {cores:.2f} cores)",
            file=sys.stderr,
        )
    spec_path, out_path = tmp / f"{tag}.spec.json", tmp / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind]
    cmd += ["--spec", str(spec_path), "--out", str(out_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0 or not out_path.exists():
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise RuntimeError(f"{kind} worker failed on {spec['case']} (exit {proc.returncode})")
    return json.loads(out_path.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeats", type=int, default=7, help="timed calls per case (default 7)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--mmdet-python",
        default=str(DEFAULT_MMDET_PYTHON) if DEFAULT_MMDET_PYTHON.exists() else None,
        help="python of a venv with mmdet 2.28 + mmcv-full 1.7 (default: %(default)s)",
    )
    p.add_argument("--no-mmdet", action="store_true", help="time ours only")
    p.add_argument("--tv-stub", default=str(DEFAULT_TV_STUB), help="torchvision stub dir")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S seconds until other processes use < 0.1 core",
    )
    p.add_argument(
        "--quiet-cores",
        type=float,
        default=0.15,
        metavar="C",
        help="keep calling until --repeats calls saw other processes use < C cores, and report "
        "statistics over those (0: plain --repeats calls; default %(default)s)",
    )
    p.add_argument(
        "--max-calls",
        type=int,
        default=0,
        help="cap on timed calls per run with --quiet-cores (default 3 x --repeats)",
    )
    p.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--worker", choices=["ours", "mmdet"], help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        run_worker(args.worker, args.spec, args.out)
        return 0
    if args.repeats < 1:
        p.error("--repeats must be >= 1")

    import torch

    mmdet_python = None if args.no_mmdet else args.mmdet_python
    base_env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    ours_env = dict(base_env, PYTHONPATH=str(REPO))
    mmdet_env = {k: v for k, v in base_env.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    mmdet_env["PYTHONPATH"] = args.tv_stub
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "warmup": args.warmup,
        "repeats": args.repeats,
        "quiet_cores": args.quiet_cores,
        "loadavg_start": os.getloadavg(),
        "mmdet_python": mmdet_python,
    }
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="cendetect_bench_") as tmp_name:
        tmp = Path(tmp_name)
        ckpt, config, images = _make_inputs(tmp)
        for case in args.cases:
            spec = {
                "case": case,
                "checkpoint": str(ckpt),
                "config": str(config),
                "image": str(images[case]),
                "img_scale": CASES[case][1],
                "warmup": args.warmup,
                "repeats": args.repeats,
                "quiet_cores": args.quiet_cores,
                "max_calls": args.max_calls or 3 * args.repeats,
                "threads": args.threads,
            }
            results[case] = {
                "ours": _run_one("ours", sys.executable, ours_env, spec, tmp, args.wait_quiet)
            }
            print(f"{case}: ours {results[case]['ours']['median_s']:.3f} s", file=sys.stderr)
            if mmdet_python:
                results[case]["mmdet"] = _run_one(
                    "mmdet", mmdet_python, mmdet_env, spec, tmp, args.wait_quiet
                )
                print(f"{case}: mmdet {results[case]['mmdet']['median_s']:.3f} s", file=sys.stderr)
    info["loadavg_end"] = os.getloadavg()
    if mmdet_python and results:
        info["mmdet_torch"] = next(iter(results.values()))["mmdet"]["torch"]

    print(f"date: {info['date']}")
    print(f"cpu: {info['cpu']}, {info['cores']} cores; torch threads {args.threads}")
    mmdet_torch = info.get("mmdet_torch", "-")
    print(f"torch: ours {info['torch']}, mmdet {mmdet_torch}; python {info['python']}")
    quiet_note = (
        f" (undisturbed: other processes < {args.quiet_cores} cores)" if args.quiet_cores else ""
    )
    print(
        f"{args.warmup} warm-up + {args.repeats} timed calls per case{quiet_note}; load average "
        f"{' '.join(f'{x:.2f}' for x in info['loadavg_start'])} (start), "
        f"{' '.join(f'{x:.2f}' for x in info['loadavg_end'])} (end)"
    )
    print()
    rows = [
        [
            "case",
            "ours median s",
            "mmdet median s",
            "ratio (mmdet / ours)",
            "ours peak RSS MB",
            "mmdet peak RSS MB",
        ]
    ]
    for case, r in results.items():
        o, m = r["ours"], r.get("mmdet")
        rows.append(
            [
                case,
                _fmt(o["median_s"]),
                _fmt(m["median_s"] if m else None),
                _fmt(m["median_s"] / o["median_s"] if m else None, 2),
                _fmt(o["peak_rss_mb"], 0),
                _fmt(m["peak_rss_mb"] if m else None, 0),
            ]
        )
    print(_table(rows))
    print()
    detail = [
        [
            "case",
            "impl",
            "min s",
            "median s",
            "max s",
            "undisturbed calls",
            "other procs' cores (median)",
            "load s",
            "detections",
            "top score",
        ]
    ]
    for case, r in results.items():
        for impl in ("ours", "mmdet"):
            if impl not in r:
                continue
            x = r[impl]
            top = x["top_scores"][0] if x["top_scores"] else None
            detail.append(
                [
                    case,
                    impl,
                    _fmt(x["min_s"]),
                    _fmt(x["median_s"]),
                    _fmt(x["max_s"]),
                    f"{x['num_quiet_calls']}/{x['num_calls']}",
                    _fmt(x["other_cores_busy_median"], 2),
                    _fmt(x["load_s"], 1),
                    str(x["num_detections"]),
                    _fmt(top, 4),
                ]
            )
    print(_table(detail))
    for case, r in results.items():
        if "mmdet" in r:
            ours_top, mm_top = r["ours"]["top_scores"], r["mmdet"]["top_scores"]
            diff = max((abs(a - b) for a, b in zip(ours_top, mm_top)), default=float("nan"))
            r["agreement"] = {"top10_score_max_abs_diff": diff}
            print(
                f"{case}: detections ours {r['ours']['num_detections']}, mmdet "
                f"{r['mmdet']['num_detections']}; top-10 scores differ by at most {diff:.2e}"
            )
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1))
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
