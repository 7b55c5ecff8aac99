"""Checkpoint -> model -> one deployable engine artifact (installed as ``cendetect.compile``).

``compile_engine(checkpoint, output, engine=..., precision=..., device=...)`` writes one file
with a JSON manifest inside; ``cendetect-compile`` is the shell entry point and
``cendetect.Detector.from_engine(path)`` loads the result. Engines: ``torchscript`` (``.ts``,
any input size) and ``aoti`` (``torch.export`` + AOTInductor, ``.pt2``, dynamic H/W).
Exporters never re-implement pre-processing: they compile the model module only.
"""

from cendetect.compile.build import compile_engine, default_input_spec, input_spec, parse_size

__all__ = ["compile_engine", "default_input_spec", "input_spec", "parse_size"]
