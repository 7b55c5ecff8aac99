"""Pre-processing, engines and post-processing shared by every backend (``cendetect.engine``).

Every engine consumes a :class:`~cendetect.engine.preprocess.Batch` and returns the raw-detection
contract of DESIGN.md; pre- and post-processing therefore exist once, here.
"""

from cendetect.engine.postprocess import Detections, paste_masks, to_detections
from cendetect.engine.preprocess import Batch, preprocess, rescale_size

__all__ = ["Batch", "Detections", "paste_masks", "preprocess", "rescale_size", "to_detections"]
