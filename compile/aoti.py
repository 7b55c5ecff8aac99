"""AOTInductor artifacts: ``torch.export`` -> ``aoti_compile_and_package`` -> one ``.pt2`` file.

The ``.pt2`` is a PT2 archive (a zip). After AOTInductor writes its package, the records are
copied into the final file with ``torch.export.pt2_archive.PT2ArchiveWriter`` and the manifest
is added under ``extra/``, where ``torch.export.pt2_archive._package.load_pt2`` also finds it;
``cendetect`` reads it with :mod:`zipfile` before anything is loaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from torch.export.pt2_archive import PT2ArchiveReader, PT2ArchiveWriter

from cendetect.engine.runners import Manifest
from cendetect.engine.runners.manifest import MANIFEST_NAME

__all__ = ["INDUCTOR_CONFIGS", "save_aoti"]

_EXTRA_DIR = "extra/"

#: Inductor settings of every cendetect AOTI build. ``layout_optimization=False``: with it on,
#: torch 2.13 turns the mask head's convolutions channels-last and computes wrong mask logits
#: when the batch is the data-dependent number of detections (measured on the R50 fixture:
#: mean mask IoU 0.33 against eager; with it off the logits equal eager's). The price is the
#: channels-last speed-up of the backbone on CPU. ``freezing=True``: the weights are constants
#: of the graph, so Inductor folds them and prepacks the convolutions' weights for oneDNN
#: (with their bias and ReLU fused). Speed on the Xeon is within the run-to-run spread: side
#: by side at 2 quiet threads the default model's bf16 engine took 55 ms with it, 60 without;
#: at 1 thread beside a training run 86 against 72 (docs/benchmarks.md, "AOTInductor with
#: freezing"); every AOTI parity test passes with it (with layout_optimization on too, the
#: mask logits are wrong again, so that stays off).
INDUCTOR_CONFIGS: dict[str, object] = {"layout_optimization": False, "freezing": True}


def save_aoti(
    program: torch.export.ExportedProgram, manifest: Manifest, path: str | os.PathLike
) -> None:
    """Compile ``program`` with AOTInductor and write the package plus manifest to ``path``.

    Compiling runs the C++ compiler: minutes for a ResNet-50 Mask R-CNN on a few cores.
    """
    with tempfile.TemporaryDirectory(prefix="cendetect-aoti-") as tmp:
        raw = Path(tmp) / "model.pt2"
        torch._inductor.aoti_compile_and_package(
            program, package_path=os.fspath(raw), inductor_configs=dict(INDUCTOR_CONFIGS)
        )
        with (
            PT2ArchiveReader(os.fspath(raw)) as reader,
            PT2ArchiveWriter(os.fspath(path)) as writer,
        ):
            for name in reader.get_file_names():
                if not writer.has_record(name):
                    writer.write_bytes(name, reader.read_bytes(name))
            writer.write_string(f"{_EXTRA_DIR}{MANIFEST_NAME}", manifest.to_json())
