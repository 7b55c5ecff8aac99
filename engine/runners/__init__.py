"""Engine artifacts at run time: their manifest, the checks before loading, and the runners.

``load_engine(path)`` returns an :class:`EngineRunner` that maps a pre-processed
:class:`~cendetect.engine.preprocess.Batch` to the raw-detection contract, whatever the engine.
Artifacts are made by ``cendetect.compile`` (``cendetect-compile`` on the shell).
"""

from cendetect.engine.runners.manifest import (
    ENGINE_KINDS,
    PRECISIONS,
    EngineError,
    InputSpec,
    Manifest,
    read_manifest,
)
from cendetect.engine.runners.runner import EngineRunner, load_engine

__all__ = [
    "ENGINE_KINDS",
    "PRECISIONS",
    "EngineError",
    "EngineRunner",
    "InputSpec",
    "Manifest",
    "load_engine",
    "read_manifest",
]
