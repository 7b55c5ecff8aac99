"""``torch.ops.cendetect.nms`` and ``batched_nms``: greedy NMS with mmcv semantics.

CPU: our C++ kernel (csrc/nms.cpp). Other devices: torchvision's kernel when it works, else the
CPU kernel on a host copy. See :func:`nms` for the exact semantics.
"""

from __future__ import annotations

import torch
from torch import Tensor

from cendetect.ops import _torchvision
from cendetect.ops._extension import _assert_has_ops

__all__ = ["batched_nms", "nms"]


def _check(name: str, boxes: Tensor, scores: Tensor, idxs: Tensor | None) -> None:
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{name}: boxes must have shape [N, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}"
        )
    n = boxes.shape[0]
    if scores.dim() != 1 or scores.shape[0] != n:
        raise ValueError(
            f"{name}: scores must have shape [N] with N = {n} (one per box), "
            f"got {tuple(scores.shape)}"
        )
    if not boxes.is_floating_point() or not scores.is_floating_point():
        raise ValueError(
            f"{name}: boxes and scores must be floating point, got {boxes.dtype} and "
            f"{scores.dtype}; convert them with .float()"
        )
    if scores.device != boxes.device:
        raise ValueError(
            f"{name}: boxes are on {boxes.device} but scores on {scores.device}; "
            "move them to one device"
        )
    if idxs is None:
        return
    if idxs.dim() != 1 or idxs.shape[0] != n:
        raise ValueError(
            f"{name}: idxs must have shape [N] with N = {n} (one group id per box), "
            f"got {tuple(idxs.shape)}"
        )
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise ValueError(
            f"{name}: idxs must be an integer tensor of group ids (e.g. labels), got "
            f"{idxs.dtype}; convert it with .long()"
        )
    if idxs.device != boxes.device:
        raise ValueError(
            f"{name}: boxes are on {boxes.device} but idxs on {idxs.device}; "
            "move them to one device"
        )


def _compute_dtype(boxes: Tensor, scores: Tensor) -> torch.dtype:
    dtype = torch.promote_types(boxes.dtype, scores.dtype)
    # Half and bfloat16 are upcast: the kernels are float32/float64 only.
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _nms_cpu(boxes: Tensor, scores: Tensor, idxs: Tensor | None, iou_threshold: float) -> Tensor:
    n = boxes.shape[0]
    if n == 0:
        return torch.empty(0, dtype=torch.long)
    ext = _assert_has_ops()
    dtype = _compute_dtype(boxes, scores)
    b = boxes.detach().to(dtype).contiguous().numpy()
    s = scores.detach().to(dtype).contiguous().numpy()
    keep = torch.empty(n, dtype=torch.long)
    if idxs is None:
        k = ext.nms(b, s, float(iou_threshold), keep.numpy())
    else:
        ids = idxs.detach().to(torch.long).contiguous().numpy()
        k = ext.batched_nms(b, s, ids, float(iou_threshold), keep.numpy())
    return keep[:k].clone()


def _separate_groups(boxes: Tensor, idxs: Tensor) -> Tensor:
    # Moves each group to its own region, far enough that boxes of different groups never
    # overlap. Done in float64 so that the shift costs no precision worth speaking of.
    b = boxes.to(torch.float64)
    lo = b.min()
    span = b.max() - lo + 1
    return (b - lo) + (idxs.to(torch.float64) * span)[:, None]


def _nms_torchvision(
    boxes: Tensor, scores: Tensor, idxs: Tensor | None, iou_threshold: float
) -> Tensor | None:
    dtype = _compute_dtype(boxes, scores)
    b = boxes.to(dtype) if idxs is None else _separate_groups(boxes, idxs)
    # Ties in score must keep the lower index first; torchvision's sort is not stable, so it
    # gets distinct ranks in our stable order instead of the scores.
    order = torch.sort(scores.to(dtype), descending=True, stable=True).indices
    n = order.shape[0]
    ranks = torch.arange(n, 0, -1, dtype=b.dtype, device=b.device)
    keep = _torchvision.call("nms", lambda tv: tv.ops.nms(b[order], ranks, iou_threshold))
    return None if keep is None else order[keep]


def _nms_impl(boxes: Tensor, scores: Tensor, idxs: Tensor | None, iou_threshold: float) -> Tensor:
    if boxes.device.type == "cpu":
        return _nms_cpu(boxes, scores, idxs, iou_threshold)
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    keep = _nms_torchvision(boxes, scores, idxs, iou_threshold)
    if keep is not None:
        return keep
    host_idxs = None if idxs is None else idxs.cpu()
    return _nms_cpu(boxes.cpu(), scores.cpu(), host_idxs, iou_threshold).to(boxes.device)


@torch.library.custom_op(
    "cendetect::nms",
    mutates_args=(),
    schema="(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor",
)
def _nms_op(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    _check("nms", boxes, scores, None)
    return _nms_impl(boxes, scores, None, iou_threshold)


@_nms_op.register_fake
def _(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    _check("nms", boxes, scores, None)
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.long)


@torch.library.custom_op(
    "cendetect::batched_nms",
    mutates_args=(),
    schema="(Tensor boxes, Tensor scores, Tensor idxs, float iou_threshold) -> Tensor",
)
def _batched_nms_op(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    _check("batched_nms", boxes, scores, idxs)
    return _nms_impl(boxes, scores, idxs, iou_threshold)


@_batched_nms_op.register_fake
def _(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    _check("batched_nms", boxes, scores, idxs)
    kept = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((kept,), dtype=torch.long)


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression, as ``mmcv.ops.nms`` with ``offset=0``.

    Args:
        boxes (Tensor[N, 4]): x1, y1, x2, y2 in any one pixel frame; float16/32/64 (half is
            computed in float32). Degenerate boxes (x2 <= x1 or y2 <= y1) are allowed: their
            area is <= 0 and the formula below applies to them as it stands.
        scores (Tensor[N]): floating point, on the same device. NaN sorts before every number
            (as ``torch.sort(descending=True)``); it never crashes.
        iou_threshold (float): box j is suppressed by a kept box i when
            ``inter / (area_i + area_j - inter) > iou_threshold`` with
            ``area = (x2 - x1) * (y2 - y1)`` (no +1), compared in the boxes' precision.

    Returns:
        Tensor[K] int64: indices of the kept boxes in decreasing score order; equal scores keep
        the lower index first. Same device as ``boxes``.
    """
    return torch.ops.cendetect.nms(boxes, scores, iou_threshold)


def batched_nms(boxes: Tensor, scores: Tensor, idxs: Tensor, iou_threshold: float) -> Tensor:
    """Non-maximum suppression within groups, as ``mmcv.ops.batched_nms`` (class-aware).

    Boxes whose ``idxs`` differ never suppress each other (exactly: no coordinate-offset trick,
    so no precision is lost on large coordinates); for ordinary inputs the result equals mmcv's
    with either of its code paths (below and above ``split_thr``). On CUDA, torchvision's kernel
    sees the groups shifted apart in float64, so an IoU within rounding of the threshold may be
    decided differently than on CPU.

    Args:
        boxes (Tensor[N, 4]): x1, y1, x2, y2; float16/32/64.
        scores (Tensor[N]): floating point.
        idxs (Tensor[N]): integer group ids (class labels, or FPN levels for the RPN).
        iou_threshold (float): as in :func:`nms`.

    Returns:
        Tensor[K] int64: kept indices of all groups together, in decreasing score order (equal
        scores: lower index first).
    """
    return torch.ops.cendetect.batched_nms(boxes, scores, idxs, iou_threshold)
