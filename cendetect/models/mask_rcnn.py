"""Mask R-CNN: ResNet + FPN + RPN + StandardRoIHead, in mmdetection's module layout.

The module is a pure function of its inputs (no image metadata dicts, no Python-side control
flow on tensor values), so that it scripts with ``torch.jit.script`` and exports with
``torch.export``. Pre- and post-processing live in ``cendetect.engine``.
"""

from __future__ import annotations

from torch import Tensor, nn

from cendetect.models.cascade import CascadeRoIHead
from cendetect.models.fpn import FPN
from cendetect.models.point_rend import PointRendRoIHead
from cendetect.models.resnet import ResNet
from cendetect.models.roi_heads import StandardRoIHead
from cendetect.models.rpn import RPNHead


class MaskRCNN(nn.Module):
    """Mask R-CNN producing the raw-detection contract of DESIGN.md.

    ``forward(images, image_sizes, scale_factors)``:

    Args:
        images: ``Tensor[B, 3, H, W]`` normalized, padded network input (H, W multiples of 32).
        image_sizes: ``Tensor[B, 2]`` (h, w) of each resized image inside the padding.
        scale_factors: ``Tensor[B, 4]`` float32 (w_scale, h_scale, w_scale, h_scale), resized size
            over original size (mmdet runs the final NMS in original-image pixels).

    Returns:
        ``(boxes [N, 4], scores [N], labels [N] int64, mask_probs [N, M, M], batch_ids [N] int64)``
        with boxes ``x1, y1, x2, y2`` in network-input pixels, mask probabilities in [0, 1] over
        the box (M = 28), grouped by image and score-descending within an image.
    """

    def __init__(
        self,
        backbone: ResNet,
        neck: FPN,
        rpn_head: RPNHead,
        roi_head: StandardRoIHead | CascadeRoIHead | PointRendRoIHead,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.rpn_head = rpn_head
        self.roi_head = roi_head

    def forward(
        self, images: Tensor, image_sizes: Tensor, scale_factors: Tensor
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        feats = self.neck(self.backbone(images))
        proposals = self.rpn_head(feats, image_sizes)
        return self.roi_head(feats, proposals, image_sizes, scale_factors)
