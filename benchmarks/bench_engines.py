"""Every engine of every model against eager fp32 and the peers, in one run.

What is measured: end to end per batch of decoded BGR images already in memory,
``Detector.predict(images)`` (pre-processing, the engine, box rescale, full-resolution masks),
reported as ms/image and images/s, with the ratio to our eager fp32 on the same model, size and
batch. Each (model, engine, size) runs in a fresh subprocess, so its peak memory (RSS on the CPU,
``torch.cuda.max_memory_allocated`` on CUDA) is its own; building the artifact is timed apart.

The floor: the script measures this machine's 3x3-convolution rate (a 256->256 channel conv on a
200x336 map, fp32 and bf16) and counts the model's FLOPs on one image
(``torch.utils.flop_counter``, eager fp32; convolutions, matmuls and the rest it counts). The
floor is FLOPs / rate: the time the model's arithmetic needs at the conv rate; each engine's time
is printed over the floor of its precision.

Peers, in the same run:
  mmdet        mmdetection 2.28's ``inference_detector`` on the same checkpoint and images (the
               peer venv with mmcv-full 1.7.2, ``--mmdet-python``; see tests/data/mmdet/README.md)
  torchvision  (CUDA only) ``maskrcnn_resnet50_fpn`` with random weights, eager, autocast fp16,
               the same images, resized as ours (min/max size = the case's scale), masks pasted.

Models: the four CenDetect architectures with their parity-fixture weights
(``mask_rcnn_r50_fpn``, ``mask_rcnn_r101_fpn``, ``point_rend_r50_fpn``,
``cascade_mask_rcnn_r50_fpn_dconv``: seeded weights + the fixture's real mmdetection config) and
``default`` (the model shipped in the package, when present; it keeps its own 512 long-side
test scale, the size names then only choose the photo, and its bar masks get the exact-edge
refinement as users get it; the fixture models run without it, as mmdetection does). Random
weights give a fixed number of detections (100 per image at these score thresholds), which is
the expensive case.

Sizes: ``1333x800`` (a 1333x800 photo, default 1333x800 keep-ratio scale) and ``1024x1024`` (a
1024x1024 photo, ``img_scale`` set to 1024x1024). Export engines (aoti, onnx, trt) are built for
the case's padded size (static shape), TorchScript for any size.

Low-precision engines are built as ``cendetect-compile`` builds them (the image and the backbone
stem in float32, ``--fp32-stride 2``); a suffix ``-sN`` picks another float32 stride, e.g.
``torchscript-bf16-s0`` (every convolution bf16) or ``aoti-bf16-s8``. An AOTI name ending in
``-nofreeze`` (``aoti-nofreeze``, ``aoti-bf16-nofreeze``) builds without Inductor's
``freezing`` (cendetect's AOTI builds before 2026-12-08), to time that choice side by side.

CPU code paths (``--isa``): every engine of ours can run once per ISA level of
``tests/isa.py`` (``native``, ``avx512_bf16``, ``avx512``, ``avx2``, ``default``: environment
variables that make torch, oneDNN, oneMKL and Inductor take the path of another CPU), e.g.
``--isa native,avx512_bf16`` on a Xeon with AMX times bf16 on AMX and on AVX-512 BF16 (the path
of an AMD EPYC Zen 4) in one run; each row is then named ``engine@level``, its ``vs eager``
against eager at the same level, and the conv rate is measured per level.

Usage (repo root):
    .venv/bin/python benchmarks/bench_engines.py                       # R50, CPU engines, mmdet
    .venv/bin/python benchmarks/bench_engines.py --models all --sizes 1024x1024 --batches 1
    .venv/bin/python benchmarks/bench_engines.py --device cuda --engines eager,eager-fp16,\
torchscript-fp16,aoti-fp16 --peers torchvision --batches 1,8
This file is also the worker (``--worker``); the mmdet worker path imports nothing from
cendetect, so it runs in the peer venv. Timings are never pass/fail; this only prints.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "tests" / "data"
KITE = DATA / "mmdet" / "images" / "kite_1024x576.png"
DEFAULT_MMDET_PYTHON = Path("/work/peers/mmdet2/bin/python")
DEFAULT_TV_STUB = Path("/work/peers/tvstub")

# timing and reporting shared with the eager benchmark (benchmarks/common.py, stdlib-only at
# import, so the peer venv can import it too)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import cpu_name as _cpu_name  # noqa: E402
from common import markdown_table as _table  # noqa: E402
from common import peak_rss_mb as _peak_rss_mb  # noqa: E402
from common import read_image as _read  # noqa: E402
from common import time_calls  # noqa: E402

#: model name -> parity fixture folder (config.py, keys.json, overrides.npz)
FIXTURES = {
    "mask_rcnn_r50_fpn": DATA / "mmdet" / "mask_rcnn_r50_fpn",
    "mask_rcnn_r101_fpn": DATA / "mmdet" / "mask_rcnn_r101_fpn",
    "point_rend_r50_fpn": DATA / "mmdet" / "point_rend_r50_fpn",
    "cascade_mask_rcnn_r50_fpn_dconv": DATA / "mmdet" / "cascade_mask_rcnn_r50_fpn_dconv",
}

#: engine name -> (compile engine kind or "eager", precision)
ENGINES = {
    "eager": ("eager", "fp32"),
    "eager-fp16": ("eager", "fp16"),
    "torchscript": ("torchscript", "fp32"),
    "torchscript-nhwc": ("torchscript", "fp32-nhwc"),  # channels-last, BatchNorm folded
    "torchscript-bf16": ("torchscript", "bf16"),
    "torchscript-fp16": ("torchscript", "fp16"),
    "aoti": ("aoti", "fp32"),
    "aoti-bf16": ("aoti", "bf16"),
    "aoti-fp16": ("aoti", "fp16"),
    "onnx": ("onnx", "fp32"),
    "openvino": ("openvino", "fp32"),  # our ONNX export compiled by OpenVINO (the CPU peer)
    "openvino-bf16": ("openvino", "bf16"),  # the same, OpenVINO's bf16 inference hint
    "trt": ("trt", "fp16"),
}


def _engine(name: str) -> tuple[str, str, int | None]:
    """(kind, precision, fp32 stride or None for the default) of an engine name: a key of
    ``ENGINES``, or a low-precision one with ``-sN`` appended. KeyError if neither."""
    base, _, stride = name.rpartition("-s")
    if base in ENGINES and stride.isdigit() and ENGINES[base][1] in ("bf16", "fp16"):
        return (*ENGINES[base], int(stride))
    return (*ENGINES[name], None)


#: an AOTI engine name with this suffix is built without Inductor's freezing (the build before
#: 2026-12-08), to time the choice side by side
NOFREEZE = "-nofreeze"


def _split_nofreeze(name: str) -> tuple[str, bool]:
    if name.endswith(NOFREEZE) and name.startswith("aoti"):
        return name[: -len(NOFREEZE)], True
    return name, False


def _known_engine(name: str) -> bool:
    try:
        _engine(_split_nofreeze(name)[0])
    except KeyError:
        return False
    return True


#: size name -> (photo size (w, h), img_scale (w, h))
SIZES = {
    "1333x800": ((1333, 800), (1333, 800)),
    "1024x1024": ((1024, 1024), (1024, 1024)),
}


# --------------------------------------------------------------------------------------------
# worker side (a fresh subprocess per run; ours, mmdet's or torchvision's)


def _time(fn: Callable[[], Any], warmup: int, repeats: int, sync: Callable[[], None]) -> list:
    return time_calls(fn, warmup, repeats, sync=sync)[0]


def _ours(spec: dict[str, Any]) -> tuple[dict[int, Callable[[], Any]], float, Callable]:
    import dataclasses

    import torch

    from cendetect import Detector

    kind, precision = spec["kind"], spec["precision"]
    device = spec["device"]
    build_s = 0.0
    if kind == "eager":
        det = Detector.from_checkpoint(spec["checkpoint"], device=device, fp16=precision == "fp16")
    else:
        from cendetect.compile import compile_engine

        artifact = Path(spec["tmp"]) / f"{spec['tag']}.artifact"
        sizes: dict[str, Any] = {}
        if kind != "torchscript":
            sizes["input_size"] = tuple(spec["padded_hw"])
        if precision == "fp32-nhwc":
            precision, sizes["channels_last"] = "fp32", True
        if spec.get("fp32_stride") is not None:
            sizes["fp32_stride"] = spec["fp32_stride"]
        if spec.get("inductor"):  # this worker process only
            from cendetect.compile.aoti import INDUCTOR_CONFIGS

            INDUCTOR_CONFIGS.update(spec["inductor"])
        t0 = time.perf_counter()
        compile_engine(
            spec["checkpoint"], artifact, engine=kind, precision=precision, device=device, **sizes
        )
        build_s = time.perf_counter() - t0
        det = Detector.from_engine(artifact, device=device)
    det.refine = spec.get("refine", "off")
    if spec["img_scale"]:  # None: the model's own test scale (the default model)
        det.preprocess_cfg = dataclasses.replace(
            det.preprocess_cfg, img_scale=tuple(spec["img_scale"])
        )
    image = _read(spec["image"])
    calls = {b: (lambda b=b: det.predict([image] * b)) for b in spec["batches"]}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    return calls, build_s, sync


def _mmdet(spec: dict[str, Any]) -> tuple[dict[int, Callable[[], Any]], float, Callable]:
    from mmdet.apis import inference_detector, init_detector

    model = init_detector(spec["config"], spec["checkpoint"], device="cpu")
    for step in model.cfg.data.test.pipeline:
        if step["type"] == "MultiScaleFlipAug":
            step["img_scale"] = tuple(spec["img_scale"])
            break
    image = _read(spec["image"])

    def call(b: int) -> Any:
        return inference_detector(model, [image] * b) if b > 1 else inference_detector(model, image)

    return {b: (lambda b=b: call(b)) for b in spec["batches"]}, 0.0, (lambda: None)


def _torchvision(spec: dict[str, Any]) -> tuple[dict[int, Callable[[], Any]], float, Callable]:
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    w, h = spec["img_scale"]
    model = maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=3, min_size=min(w, h), max_size=max(w, h)
    )
    model = model.to("cuda").eval()
    image = torch.from_numpy(_read(spec["image"])[:, :, ::-1].copy())  # BGR -> RGB

    @torch.inference_mode()
    def call(b: int) -> Any:
        # end to end like ours: upload, normalise/resize (model.transform), model, masks pasted
        # at full resolution (model.transform.postprocess) and thresholded
        imgs = [image.to("cuda", non_blocking=True).permute(2, 0, 1).float() / 255.0] * b
        with torch.autocast("cuda", dtype=torch.float16):
            out = model(imgs)
        return [(o["masks"] > 0.5).cpu() for o in out]

    return {b: (lambda b=b: call(b)) for b in spec["batches"]}, 0.0, torch.cuda.synchronize


def _flops(spec: dict[str, Any]) -> dict[str, Any]:
    """FLOPs of one eager fp32 model call on the case's pre-processed image."""
    import dataclasses

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from cendetect import Detector
    from cendetect.engine import preprocess

    det = Detector.from_checkpoint(spec["checkpoint"])
    cfg = det.preprocess_cfg
    if spec["img_scale"]:
        cfg = dataclasses.replace(cfg, img_scale=tuple(spec["img_scale"]))
    batch = preprocess([_read(spec["image"])], cfg)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        det.model(batch.images, batch.image_sizes, batch.scale_factors)
    return {"flops": int(counter.get_total_flops()), "input_hw": list(batch.images.shape[-2:])}


def _conv_rate(spec: dict[str, Any]) -> dict[str, Any]:
    """Sustained GFLOP/s of a 3x3 conv, 256->256 channels, 200x336 map, fp32 and bf16.

    Each dtype is timed in NCHW and in channels-last memory and the faster layout counts, so
    the floor is the best this machine's convolution library does (bf16 engines run
    channels-last; oneDNN is much faster there).
    """
    import torch
    import torch.nn.functional as F

    device = spec["device"]
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    if device == "cuda":
        dtypes["fp16"] = torch.float16
    out: dict[str, float] = {}
    layouts: dict[str, dict[str, float]] = {}
    for name, dtype in dtypes.items():
        layouts[name] = {}
        for layout, fmt in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
            x = torch.randn(1, 256, 200, 336, device=device, dtype=dtype)
            w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype)
            x, w = x.contiguous(memory_format=fmt), w.contiguous(memory_format=fmt)
            flops = 2 * 256 * 256 * 9 * 200 * 336
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
            with torch.inference_mode():
                times = _time(lambda x=x, w=w: F.conv2d(x, w, padding=1), 3, 10, sync)
            layouts[name][layout] = flops / statistics.median(times) / 1e9
        out[name] = max(layouts[name].values())
    return {"gflops": out, "gflops_by_layout": layouts}


def run_worker(kind: str, spec_path: Path, out_path: Path) -> None:
    spec = json.loads(spec_path.read_text())
    import torch

    torch.set_num_threads(int(spec["threads"]))
    if kind == "flops":
        result = _flops(spec)
    elif kind == "conv":
        result = _conv_rate(spec)
    else:
        make = {"ours": _ours, "mmdet": _mmdet, "torchvision": _torchvision}[kind]
        t0 = time.perf_counter()
        calls, build_s, sync = make(spec)
        load_s = time.perf_counter() - t0
        cuda = spec["device"] == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        per_batch = {}
        for b, fn in calls.items():
            times = _time(fn, int(spec["warmup"]), int(spec["repeats"]), sync)
            per_batch[str(b)] = {"times_s": times, "median_s": statistics.median(times)}
        result = {
            "batches": per_batch,
            "build_s": build_s,
            "load_s": load_s,
            "peak_mem_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda else _peak_rss_mb()),
            "mem_kind": "cuda max allocated" if cuda else "peak RSS",
            "torch": torch.__version__,
        }
    out_path.write_text(json.dumps(result, indent=1))


# --------------------------------------------------------------------------------------------
# driver side


def _spawn(
    kind: str, python: str, env: dict[str, str], spec: dict[str, Any], tmp: Path
) -> dict[str, Any] | None:
    tag = spec["tag"]
    spec_path, out_path = tmp / f"{tag}.spec.json", tmp / f"{tag}.result.json"
    spec_path.write_text(json.dumps(spec))
    cmd = [python, str(Path(__file__).resolve()), "--worker", kind]
    cmd += ["--spec", str(spec_path), "--out", str(out_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0 or not out_path.exists():
        tail = (proc.stdout[-1500:] + proc.stderr[-2500:]).strip()
        print(f"[{tag}] FAILED (exit {proc.returncode}):\n{tail}\n", file=sys.stderr)
        return None
    return json.loads(out_path.read_text())


def _default_checkpoint() -> Path | None:
    try:
        from cendetect.zoo import default_checkpoint  # type: ignore[attr-defined]
    except ImportError:
        return None
    path = default_checkpoint()
    return Path(path) if path else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--models", default="mask_rcnn_r50_fpn", help="comma list, or 'all'")
    p.add_argument("--engines", default="eager,torchscript,torchscript-bf16,aoti,aoti-bf16,onnx")
    p.add_argument("--sizes", default="1333x800,1024x1024", help=f"of {', '.join(SIZES)}")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--peers", default="mmdet", help="mmdet, torchvision (CUDA), or 'none'")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument(
        "--mmdet-python",
        default=str(DEFAULT_MMDET_PYTHON) if DEFAULT_MMDET_PYTHON.exists() else None,
    )
    p.add_argument("--tv-stub", default=str(DEFAULT_TV_STUB))
    p.add_argument(
        "--isa",
        default="",
        help="comma list of tests/isa.py levels to run our engines under (default: as is)",
    )
    p.add_argument(
        "--default-scale",
        type=int,
        default=0,
        help="keep-ratio test scale (long side, px) for the default model; 0: its own (512)",
    )
    p.add_argument("--json", type=Path, help="write all results here")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        run_worker(args.worker, args.spec, args.out)
        return 0

    models = list(FIXTURES) + ["default"] if args.models == "all" else args.models.split(",")
    engines = [e for e in args.engines.split(",") if e]
    sizes = [s for s in args.sizes.split(",") if s]
    batches = [int(b) for b in args.batches.split(",") if b]
    peers = [] if args.peers == "none" else [x for x in args.peers.split(",") if x]
    for bad, known, what in (
        ([m for m in models if m not in FIXTURES and m != "default"], FIXTURES, "models"),
        ([e for e in engines if not _known_engine(e)], ENGINES, "engines"),
        ([s for s in sizes if s not in SIZES], SIZES, "sizes"),
    ):
        if bad:
            p.error(f"unknown {what} {bad}; known: {', '.join(known)}")

    import cv2
    import torch

    sys.path.insert(0, str(REPO))
    from tests.weights import save_mmdet2_checkpoint

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(REPO))
    from tests.isa import ISA_LEVELS, missing_flags

    levels = [x for x in args.isa.split(",") if x]
    for lvl in levels:
        if lvl not in ISA_LEVELS:
            p.error(f"unknown --isa level {lvl!r}; known: {', '.join(ISA_LEVELS)}")
        if missing_flags(ISA_LEVELS[lvl]):
            p.error(f"--isa {lvl}: this CPU lacks {', '.join(missing_flags(ISA_LEVELS[lvl]))}")
    # (suffix for engine names, environment) per level; one unnamed run when --isa is not given
    isa_envs = [(f"@{lvl}", ISA_LEVELS[lvl].environ(env)) for lvl in levels] or [("", env)]
    peer_env = {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    peer_env["PYTHONPATH"] = args.tv_stub
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_name(),
        "cores": os.cpu_count(),
        "threads": args.threads,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None,
        "torch": torch.__version__,
        "loadavg_start": os.getloadavg(),
        "warmup": args.warmup,
        "repeats": args.repeats,
    }
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cendetect_bench_engines_") as tmp_name:
        tmp = Path(tmp_name)
        kite = cv2.imread(str(KITE), cv2.IMREAD_COLOR)
        images = {}
        for s, (wh, _) in SIZES.items():
            images[s] = tmp / f"photo_{s}.png"
            cv2.imwrite(str(images[s]), cv2.resize(kite, wh, interpolation=cv2.INTER_LINEAR))
        base = {"threads": args.threads, "device": args.device, "tmp": str(tmp)}
        rates_by_isa: dict[str, dict[str, float]] = {}
        for suffix, ienv in isa_envs:
            conv = _spawn("conv", sys.executable, ienv, {**base, "tag": f"conv{suffix}"}, tmp)
            rates_by_isa[suffix] = conv["gflops"] if conv else {}
            by_layout = conv.get("gflops_by_layout", {}) if conv else {}
            info[f"conv_gflops{suffix}"] = rates_by_isa[suffix]
            info[f"conv_gflops_by_layout{suffix}"] = by_layout
            print(
                f"3x3 conv rate{suffix} ({args.device}, best layout): "
                + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates_by_isa[suffix].items())
                + " ("
                + "; ".join(
                    f"{k} " + " / ".join(f"{lay} {v:.0f}" for lay, v in d.items())
                    for k, d in by_layout.items()
                )
                + ")",
                file=sys.stderr,
            )
        rates = rates_by_isa[isa_envs[0][0]]
        for model in models:
            if model == "default":
                ckpt = _default_checkpoint()
                if ckpt is None:
                    print("default: no default model in this package; skipped", file=sys.stderr)
                    continue
                config = None
            else:
                ckpt = save_mmdet2_checkpoint(FIXTURES[model], tmp / f"{model}.pth")
                config = tmp / f"{model}_config.py"
                config.write_text((FIXTURES[model] / "config.py").read_text())
            for size in sizes:
                wh, scale = SIZES[size]
                spec = {
                    **base,
                    "model": model,
                    "checkpoint": str(ckpt),
                    "config": str(config) if config else None,
                    "image": str(images[size]),
                    # the default model keeps its own test scale (512 long side) unless
                    # --default-scale asks for another
                    "img_scale": (
                        ([args.default_scale] * 2 if args.default_scale else None)
                        if model == "default"
                        else list(scale)
                    ),
                    # the shipped model is timed as users run it (bar masks refined); the
                    # fixture models as mmdetection runs them (no refinement)
                    "refine": "auto" if model == "default" else "off",
                    "batches": batches,
                    "warmup": args.warmup,
                    "repeats": args.repeats,
                }
                fl = _spawn(
                    "flops", sys.executable, env, {**spec, "tag": f"{model}_{size}_fl"}, tmp
                )
                hw = fl["input_hw"] if fl else [-(-scale[1] // 32) * 32, -(-scale[0] // 32) * 32]
                flops = fl["flops"] if fl else None
                runs: list[tuple[str, str, str, dict[str, Any] | None]] = []
                for suffix, ienv in isa_envs:
                    for eng in engines:
                        base_eng, nofreeze = _split_nofreeze(eng)
                        kind, precision, stride = _engine(base_eng)
                        tag = f"{model}_{size}_{eng}{suffix}"
                        s = {
                            **spec,
                            "tag": tag,
                            "kind": kind,
                            "precision": precision,
                            "fp32_stride": stride,
                            "padded_hw": hw,
                            "inductor": {"freezing": False} if nofreeze else {},
                        }
                        print(f"[{tag}] running", file=sys.stderr)
                        result = _spawn("ours", sys.executable, ienv, s, tmp)
                        runs.append((eng + suffix, precision, "ours", result))
                for peer in peers:
                    if peer == "mmdet":
                        if not args.mmdet_python or config is None:
                            continue
                        python, penv = args.mmdet_python, peer_env
                    elif peer == "torchvision":
                        if args.device != "cuda":
                            continue
                        python, penv = sys.executable, env
                    else:
                        p.error(f"unknown peer {peer!r}")
                    tag = f"{model}_{size}_{peer}"
                    print(f"[{tag}] running", file=sys.stderr)
                    s = {**spec, "tag": tag, "device": "cuda" if peer == "torchvision" else "cpu"}
                    runs.append(
                        (
                            peer,
                            "fp16" if peer == "torchvision" else "fp32",
                            "peer",
                            _spawn(peer, python, penv, s, tmp),
                        )
                    )
                eagers = {e: r for e, _, _, r in runs if e.split("@")[0] == "eager" and r}
                for eng, precision, side, r in runs:
                    suffix = eng[eng.index("@") :] if "@" in eng else ""
                    # ours against eager on the same code path; peers against the first
                    eager = eagers.get("eager" + suffix) or next(iter(eagers.values()), None)
                    for b in batches:
                        row = {
                            "model": model,
                            "size": size,
                            "engine": eng,
                            "side": side,
                            "precision": precision,
                            "batch": b,
                            "flops": flops,
                        }
                        if r is None:
                            rows.append({**row, "failed": True})
                            continue
                        med = r["batches"][str(b)]["median_s"]
                        row.update(
                            ms_per_image=med * 1e3 / b,
                            images_per_s=b / med,
                            peak_mem_mb=r["peak_mem_mb"],
                            mem_kind=r["mem_kind"],
                            build_s=r["build_s"],
                        )
                        if eager:
                            row["vs_eager"] = eager["batches"][str(b)]["median_s"] / med
                        isa_rates = rates_by_isa.get(suffix, rates)
                        rate = isa_rates.get(precision if precision in isa_rates else "fp32")
                        if flops and rate and side == "ours":
                            row["vs_floor"] = (med / b) / (flops / (rate * 1e9))
                        rows.append(row)
    info["loadavg_end"] = os.getloadavg()
    # every row against real mmdetection on the same model, size and batch, from this run
    peer_ms = {
        (r["model"], r["size"], r["batch"]): r["ms_per_image"]
        for r in rows
        if r["engine"] == "mmdet" and not r.get("failed")
    }
    for r in rows:
        ref = peer_ms.get((r["model"], r["size"], r["batch"]))
        if ref and not r.get("failed"):
            r["vs_mmdet"] = ref / r["ms_per_image"]

    print(
        f"date: {info['date']}; cpu: {info['cpu']}, {info['cores']} cores, "
        f"{args.threads} threads; device {args.device} {info['gpu'] or ''}; torch {info['torch']}"
    )
    print(
        f"load average {info['loadavg_start']} (start), {info['loadavg_end']} (end); "
        f"{args.warmup} warm-up + {args.repeats} timed calls, median"
    )
    for suffix, isa_rates in rates_by_isa.items():
        print(
            f"conv rate{suffix} GFLOP/s: " + ", ".join(f"{k} {v:.0f}" for k, v in isa_rates.items())
        )
    table = [
        [
            "model",
            "size",
            "engine",
            "batch",
            "ms/image",
            "images/s",
            "vs eager fp32",
            "vs mmdet",
            "x floor",
            "GFLOPs",
            "peak mem MB",
            "build s",
        ]
    ]
    for r in rows:
        if r.get("failed"):
            table.append(
                [r["model"], r["size"], r["engine"], str(r["batch"]), "failed"] + ["-"] * 7
            )
            continue

        def f(key: str, fmt: str, r: dict[str, Any] = r) -> str:
            return format(r[key], fmt) if r.get(key) is not None else "-"

        table.append(
            [
                r["model"],
                r["size"],
                r["engine"] + (" (peer)" if r["side"] == "peer" else ""),
                str(r["batch"]),
                f("ms_per_image", ".0f"),
                f("images_per_s", ".2f"),
                f("vs_eager", ".2f"),
                f("vs_mmdet", ".2f"),
                f("vs_floor", ".2f"),
                format(r["flops"] / 1e9, ".0f") if r.get("flops") else "-",
                f("peak_mem_mb", ".0f"),
                f("build_s", ".0f"),
            ]
        )
    print(_table(table))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
