"""Detection ops registered once as torch custom ops, namespace ``cendetect``.

Importing this package registers ``torch.ops.cendetect.{nms, batched_nms, roi_align,
multi_level_roi_align, deform_conv2d}``; TorchScript (also after save/load), ``torch.export`` and
``torch.compile`` all see these same ops. CPU kernels are cendetect's C++ (``cendetect._C``,
built by ``pip install -e .``); other devices use torchvision's kernels when it works, else a
fallback. The functions below are thin, scriptable wrappers with the documentation.
"""

import cendetect.ops.roi_align_autograd  # noqa: F401  (registers the backward formulas)
from cendetect.ops._extension import get_num_threads, has_ops, set_num_threads
from cendetect.ops.deform_conv_op import deform_conv2d
from cendetect.ops.nms_op import batched_nms, nms
from cendetect.ops.roi_align_op import multi_level_roi_align, roi_align

__all__ = [
    "batched_nms",
    "deform_conv2d",
    "get_num_threads",
    "has_ops",
    "multi_level_roi_align",
    "nms",
    "roi_align",
    "set_num_threads",
]
