"""Torch-TensorRT artifacts: ``torch.export`` -> ``torch_tensorrt.dynamo.compile`` -> one ``.ep``.

**Written against the documented torch-tensorrt API, never run**: torch_tensorrt needs a CUDA
build of torch plus the TensorRT wheels, and no machine of this project has them
(docs/engines.md). What is tested here is everything up to the program TensorRT consumes: the
export with the dynamic min/opt/max spec, our ops present as calls that stay in torch, and the
program's results against eager (tests/compile/test_trt_engine.py).

The steps of :func:`save_trt`:

1. the exported program of :func:`cendetect.compile.export.export_program` (one image,
   dynamic ``H``/``W`` multiples of the size divisor in ``[min, max]``);
2. ``torch_tensorrt.dynamo.compile`` with one ``torch_tensorrt.Input`` per argument (the image
   with ``min_shape``/``opt_shape``/``max_shape`` from the manifest's spec) and
   :func:`torch_executed_ops`: NMS, RoIAlign and the export workaround's opaque copy run in
   torch (our CUDA kernels), between TensorRT engines for the backbone/FPN/RPN and RoI heads;
3. ``torch_tensorrt.save(..., output_format='exported_program')`` to a temporary file, whose
   PT2-archive records are copied into the artifact with the manifest added under ``extra/``
   (as the AOTI engine does). It is loaded with ``torch_tensorrt.load``
   (:mod:`cendetect.engine.runners.trt`).

FP16: the model handed in is already :func:`cendetect.compile.precision.with_precision`'d
(fp16 convolution and linear weights, fp32 box arithmetic and NMS), so TensorRT's explicit
typing (``use_explicit_typing=True``, the default of current torch-tensorrt) builds exactly
those dtypes; older releases without that option get ``enabled_precisions={torch.float16}``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch.export.pt2_archive import PT2ArchiveReader, PT2ArchiveWriter

from cendetect.engine.runners import EngineError, InputSpec, Manifest
from cendetect.engine.runners.manifest import MANIFEST_NAME, require_engine_package

__all__ = [
    "MIN_BLOCK_SIZE",
    "add_manifest",
    "fit_spec",
    "input_shapes",
    "program_size_range",
    "save_trt",
    "torch_executed_ops",
]

#: smallest run of convertible ops that becomes a TensorRT engine (torch-tensorrt's default)
MIN_BLOCK_SIZE = 5


def torch_executed_ops() -> set[object]:
    """The op overloads TensorRT must leave to torch: ours (no TensorRT converter exists)."""
    import cendetect.engine.runners.export_ops  # noqa: F401
    import cendetect.ops  # noqa: F401

    ops = torch.ops
    return {
        ops.cendetect.nms.default,
        ops.cendetect.batched_nms.default,
        ops.cendetect.roi_align.default,
        ops.cendetect.multi_level_roi_align.default,
        ops.cendetect_export.materialize.default,
    }


def input_shapes(spec: InputSpec) -> list[dict[str, Any]]:
    """``torch_tensorrt.Input`` keyword arguments for ``(images, image_sizes, scale_factors)``.

    The image is ``[1, 3, H, W]`` float32 with H, W from the spec's min/opt/max (the program
    casts it to its precision itself); ``image_sizes`` ``[1, 2]`` int64 and ``scale_factors``
    ``[1, 4]`` float32 are static.
    """
    (h0, w0), (h1, w1), (h2, w2) = spec.min, spec.opt, spec.max
    image: dict[str, Any] = {"dtype": torch.float32}
    if spec.min == spec.max:
        image["shape"] = (1, 3, h0, w0)
    else:
        image.update(min_shape=(1, 3, h0, w0), opt_shape=(1, 3, h1, w1), max_shape=(1, 3, h2, w2))
    return [
        image,
        {"shape": (1, 2), "dtype": torch.int64},
        {"shape": (1, 4), "dtype": torch.float32},
    ]


def program_size_range(
    program: torch.export.ExportedProgram,
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((min_h, min_w), (max_h, max_w))`` the exported program accepts for its image input.

    The exporter can narrow the range asked for: with a 5-level FPN a side of 2 x 32 pixels
    makes the stride-64 level 1 pixel, which it specialises away, so the program's smallest
    side is 96 even when 64 was asked (measured on the R50 fixture, torch 2.13). TensorRT's
    ``min_shape`` must lie inside this range.
    """
    name = program.graph_signature.user_inputs[0]  # the image; parameters come first
    images = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == name)
    sides = []
    for side in images.meta["val"].shape[2:]:
        if isinstance(side, int):
            sides.append((side, side))
            continue
        expr = side.node.expr
        (sym,) = expr.free_symbols
        rng = program.range_constraints[sym]
        sides.append((int(expr.subs(sym, rng.lower)), int(expr.subs(sym, rng.upper))))
    (h0, h1), (w0, w1) = sides
    return (h0, w0), (h1, w1)


def fit_spec(spec: InputSpec, program: torch.export.ExportedProgram) -> InputSpec:
    """``spec`` with min/opt raised (and max lowered) into the program's accepted range."""
    lo, hi = program_size_range(program)

    def clamp(size: tuple[int, int]) -> tuple[int, int]:
        return (min(max(size[0], lo[0]), hi[0]), min(max(size[1], lo[1]), hi[1]))

    return dataclasses.replace(spec, min=clamp(spec.min), opt=clamp(spec.opt), max=clamp(spec.max))


def save_trt(
    program: torch.export.ExportedProgram, manifest: Manifest, path: str | os.PathLike
) -> Manifest:
    """Compile ``program`` (on CUDA) with Torch-TensorRT and write it plus manifest to ``path``.

    Returns the manifest written: its input spec fitted to the program's real size range
    (:func:`fit_spec`), so that the runner pads small images up to a size the engine takes.

    Raises:
        EngineError: torch_tensorrt is not installed (names the ``trt`` extra), or the manifest
            is not a CUDA one.
    """
    require_engine_package("trt")
    if manifest.device != "cuda":
        raise EngineError("--engine trt builds TensorRT engines for NVIDIA GPUs: add --device cuda")
    import torch_tensorrt

    manifest = dataclasses.replace(manifest, input=fit_spec(manifest.input, program))
    inputs = [torch_tensorrt.Input(**kw) for kw in input_shapes(manifest.input)]
    options: dict[str, Any] = {
        "arg_inputs": inputs,
        "device": torch.device("cuda", torch.cuda.current_device()),
        "torch_executed_ops": torch_executed_ops(),
        "min_block_size": MIN_BLOCK_SIZE,
    }
    params = inspect.signature(torch_tensorrt.dynamo.compile).parameters
    if "use_explicit_typing" in params:
        options["use_explicit_typing"] = True  # the program's own dtypes (fp16 weights)
    elif manifest.precision == "fp16":
        options["enabled_precisions"] = {torch.float16}
    trt_module = torch_tensorrt.dynamo.compile(program, **options)
    with tempfile.TemporaryDirectory(prefix="cendetect-trt-") as tmp:
        raw = Path(tmp) / "model.ep"
        torch_tensorrt.save(
            trt_module, os.fspath(raw), output_format="exported_program", arg_inputs=inputs
        )
        add_manifest(raw, manifest, path)
    return manifest


def add_manifest(saved: str | os.PathLike, manifest: Manifest, path: str | os.PathLike) -> None:
    """Copy the records of ``saved`` (a ``torch.export.save`` archive) to ``path`` and add the
    manifest under ``extra/``, where ``torch.export.load(..., extra_files=...)`` also finds it."""
    with (
        PT2ArchiveReader(os.fspath(saved)) as reader,
        PT2ArchiveWriter(os.fspath(path)) as writer,
    ):
        for name in reader.get_file_names():
            if not writer.has_record(name):
                writer.write_bytes(name, reader.read_bytes(name))
        writer.write_string(f"extra/{MANIFEST_NAME}", manifest.to_json())
