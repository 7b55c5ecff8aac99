"""cendetect: detect and mask degraded regions (bars, mosaics) with Mask R-CNN-family models.

``cendetect.Detector`` is the Python entry point; ``cendetect`` on the shell is a thin layer
over it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cendetect.detector import Detector

__all__ = ["Detector", "__version__"]


def __getattr__(name: str) -> Any:
    # Imported lazily: ``import cendetect`` stays cheap for the CLI's --help and for tools that
    # only need the checkpoint or config readers.
    if name == "Detector":
        from cendetect.detector import Detector

        return Detector
    raise AttributeError(f"module 'cendetect' has no attribute {name!r}")
