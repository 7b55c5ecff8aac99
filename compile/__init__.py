"""Checkpoint -> model -> deployable engine artifacts (installed as ``cendetect.compile``).

``compile_engine(checkpoint, output, engine=..., precision=..., device=...)`` writes one file
with a JSON manifest inside; ``compile_engines(checkpoint, {engine: output, ...})`` builds
several engines of one checkpoint from one ``torch.export`` program. ``cendetect-compile`` is
the shell entry point and ``cendetect.Detector.from_engine(path)`` loads the result. Engines:
``torchscript`` (``.ts``, any input size), and the export engines for a range of input sizes:
``aoti`` (AOTInductor, ``.pt2``), ``onnx`` (onnxruntime, ``.onnx``) and ``trt`` (Torch-TensorRT,
``.ep``). Exporters never re-implement pre-processing: they compile the model module only.
"""

from cendetect.compile.build import (
    compile_engine,
    compile_engines,
    default_input_spec,
    input_spec,
    parse_size,
)

__all__ = [
    "compile_engine",
    "compile_engines",
    "default_input_spec",
    "input_spec",
    "parse_size",
]
