"""Pre-processing, engines and post-processing shared by every backend (``cendetect.engine``).

Every engine consumes a :class:`~cendetect.engine.preprocess.Batch` and returns the raw-detection
contract of DESIGN.md; pre- and post-processing therefore exist once, here. The mask compositor
(:mod:`~cendetect.engine.compositor`, C++) pastes masks at full resolution and draws them.
"""

from cendetect.engine.composite import composite
from cendetect.engine.compositor import fill_masks, paste_masks
from cendetect.engine.masks import InstanceMasks
from cendetect.engine.postprocess import Detections, to_detections
from cendetect.engine.preprocess import Batch, preprocess, rescale_size

__all__ = [
    "Batch",
    "Detections",
    "InstanceMasks",
    "composite",
    "fill_masks",
    "paste_masks",
    "preprocess",
    "rescale_size",
    "to_detections",
]
