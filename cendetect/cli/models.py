"""``cendetect models``: every model name, what it is, and where and how it runs.

The table follows CenDetect's README table (model, CPU, GPU, FP16) with our engines added. What
it says about engines and precisions is what this repository's tests exercise; the notes under
the table say what has never been run here (CUDA, TensorRT).

Example::

    cendetect models            # the table
    cendetect models --json     # the same, machine-readable
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass

__all__ = ["MODELS", "ModelInfo", "add_parser", "models_table"]


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``cendetect models``.

    ``engines`` lists the engines whose output this repository's tests compare with eager for
    this architecture; ``untested`` the engines the compile step accepts but that were not
    checked for it.
    """

    name: str
    architecture: str
    parity: str
    engines: tuple[str, ...]
    untested: tuple[str, ...]
    aliases: tuple[str, ...] = ()
    weights: str = "your checkpoint (--checkpoint or {model_directory}/{name}.pth)"


_ALL = ("eager", "torchscript", "aoti", "onnx", "openvino", "trt")

MODELS: tuple[ModelInfo, ...] = (
    ModelInfo(
        "mobilenet_v2_fpn",
        "Mask R-CNN, MobileNetV2-FPN (128 ch), cendetect's default model",
        "-",
        ("eager", "torchscript", "aoti", "onnx", "openvino"),
        ("trt",),
        weights="bundled in the package (the default when no model is given)",
    ),
    ModelInfo(
        "mask_rcnn_r50_fpn",
        "Mask R-CNN, ResNet-50-FPN",
        "mmdet 2.28 and 3.3 fixtures",
        ("eager", "torchscript", "aoti", "onnx", "openvino"),
        ("trt",),
    ),
    ModelInfo(
        "mask_rcnn_r101_fpn",
        "Mask R-CNN, ResNet-101-FPN",
        "mmdet 2.28 fixture",
        ("eager", "torchscript", "aoti", "onnx"),
        ("openvino", "trt"),
    ),
    ModelInfo(
        "point_rend_r50_fpn",
        "PointRend, ResNet-50-FPN (caffe), 224x224 refined masks",
        "mmdet 2.28 fixture",
        ("eager", "torchscript", "aoti", "onnx"),
        ("openvino", "trt"),
    ),
    ModelInfo(
        "cascade_mask_rcnn_r50_fpn_dconv",
        "Cascade Mask R-CNN, ResNet-50-FPN, DCN in c3-c5, 3 stages",
        "mmdet 2.28 and 3.3 fixtures",
        ("eager", "torchscript", "aoti", "onnx"),
        ("openvino", "trt"),
        aliases=("mask_rcnn_r50_fpn_dconv",),
    ),
)

_NOTES = (
    "CPU: every model runs on the CPU, the DCN cascade included (our deform_conv2d kernel). "
    "cendetect-compile --bf16 builds bf16 CPU engines (for CPUs with AVX-512 BF16 or AMX; "
    "the image and the backbone stem stay float32); their agreement with fp32 is measured on "
    "the trained default model: mean mask IoU 0.985 over 304 images (docs/engines.md).",
    "GPU (CUDA) and FP16: the CUDA paths (torchvision kernels, fp16 convolutions with fp32 "
    "box decoding, NMS and point sampling) are written and unit-tested on CPU tensors but have "
    "not been run on a GPU in this repository's tests.",
    "trt: torch.export -> torch_tensorrt.dynamo.compile; never run here (no TensorRT).",
    "Checkpoints: mmdetection 2.x/3.x for every model; detectron2 and maskrcnn-benchmark "
    "Mask R-CNN R-50/R-101-FPN import into mask_rcnn_r50_fpn / mask_rcnn_r101_fpn with each "
    "family's own resize (PIL) and mask paste. Checked against the real code's outputs on "
    "seeded R-50 weights (docs/checkpoints.md): detectron2 (DefaultPredictor, 02b5c4e) 400/400 "
    "detections at the pictures' own sizes, box IoU >= 0.9996, scores within 1e-6, masks within "
    "1 px; maskrcnn-benchmark (its demo, 57eec25) every detection matched, box IoU >= 0.999, "
    "scores within 1e-4 (its batch-norm arithmetic reproduced), masks by its Masker's paste. "
    "--config reads their config.yaml as data: the real detectron2's run under a "
    "non-default config.yaml (3 classes, 640/1000 resize, score 0.3) is matched through "
    "'cendetect run --config', 400/400 detections.",
)


def models_table() -> str:
    """The markdown table ``cendetect models`` prints, with its notes."""
    head = ["model", "architecture", "CPU", "GPU (CUDA)", "FP16", "engines tested", "parity"]
    rows = [head]
    for m in MODELS:
        name = m.name + "".join(f" (= {a})" for a in m.aliases)
        rows.append(
            [
                name,
                m.architecture,
                "yes",
                "unverified",
                "CUDA, unverified",
                ", ".join(m.engines)
                + (f"; untested: {', '.join(m.untested)}" if m.untested else ""),
                m.parity,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines + [""] + [f"- {n}" for n in _NOTES])


def run(args: argparse.Namespace) -> int:
    """Print the table (or JSON with ``--json``)."""
    if args.json:
        print(json.dumps([asdict(m) for m in MODELS], indent=1))
    else:
        print(models_table())
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``models``."""
    p = sub.add_parser(
        "models",
        help="list the model names with the engines and precisions they support",
        description="Every model name --model accepts, with where it runs and which engines "
        "this repository's tests check for it.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
    return p
