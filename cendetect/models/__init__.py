"""Pure-PyTorch, export-friendly architectures with mmdetection state-dict names."""

from cendetect.models.build import build_model
from cendetect.models.mask_rcnn import MaskRCNN

__all__ = ["MaskRCNN", "build_model"]
