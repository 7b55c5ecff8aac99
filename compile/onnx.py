"""ONNX artifacts: ``torch.export`` -> ``torch.onnx.export(dynamo=True)`` -> one ``.onnx`` file.

The detector is exported whole with standard ONNX operators; our custom ops become:

- ``cendetect::nms`` -> ``NonMaxSuppression`` (opset 11) over one class. The ONNX op suppresses
  box j by a selected box i when ``inter / (area_i + area_j - inter) > iou_threshold`` with
  ``area = (x2 - x1) * (y2 - y1)`` (no +1), and selects by decreasing score, lower index first
  on ties (onnxruntime's CPU kernel), the semantics of :func:`cendetect.ops.nms`. The box
  layout flag ``center_point_box=0`` means corners ``[y1, x1, y2, x2]``; IoU is symmetric in x
  and y, so our ``[x1, y1, x2, y2]`` boxes go in unchanged.
- ``cendetect::batched_nms`` -> the same op with its class dimension: scores ``[1, G, N]`` where
  box i scores in row ``idxs[i]`` only (``-inf`` elsewhere, dropped by a ``score_threshold`` of
  the lowest float), so groups never suppress each other, exactly, without the coordinate-offset
  trick. The score matrix has ``G = max(idxs) - min(idxs) + 1`` rows: fine for class labels and
  FPN levels, not for arbitrary large ids. The kept indices come out grouped by class and are
  re-sorted by (score descending, index ascending) with two ``TopK`` (its ties keep the lower
  index first, per the ONNX spec).
- ``cendetect::roi_align`` -> ``RoiAlign`` (opset 16), ``mode='avg'``,
  ``coordinate_transformation_mode='half_pixel'`` for ``aligned=True`` (the 0.5-pixel shift,
  no minimum roi size) and ``'output_half_pixel'`` otherwise (size clamped to >= 1), sampling
  ratio 0 = the adaptive ``ceil(roi_size / bins)`` grid; onnxruntime's bilinear sampling clamps
  and zeroes samples exactly as mmcv does (csrc/roi_align.h).
- ``cendetect::multi_level_roi_align`` -> the level of each roi computed with ONNX arithmetic,
  then per level ``NonZero`` -> ``Gather`` -> ``RoiAlign`` -> ``ScatterND`` into a zero tensor
  (NaN levels, rois of negative area, keep zeros as in mmdetection).
- ``cendetect::deform_conv2d`` (mmcv deformable convolution v1, the cascade's DCN) ->
  ``GridSample`` + ``MatMul``: every tap's sampling points go into one grid, ``GridSample``
  (``bilinear``, ``padding_mode='zeros'``, ``align_corners=0``) reads the columns
  ``[B, C * kh * kw, Ho * Wo]``, and one batched ``MatMul`` with the weights does the
  convolution. ``GridSample``'s zero padding gives mmcv's sampling rule exactly: a point with
  ``y <= -1``, ``y >= H`` (or the same in x) has all four corners outside and reads 0, and a
  point inside reads its in-range corners with the bilinear weights, out-of-range corners as 0
  (ONNX's ``DeformConv`` would need opset 19 for the whole graph; ``GridSample`` is opset 16).
- ``cendetect_export::materialize`` (the Inductor workaround of ``compile.export``) ->
  ``Identity``.

One image per call (``B = 1``) with dynamic height and width, as the AOTI engine; the runner
feeds images one by one. The manifest is stored in the model's ``metadata_props``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from cendetect.engine.runners import Manifest
from cendetect.engine.runners.manifest import MANIFEST_NAME

__all__ = ["OPSET", "save_onnx", "translate_onnx", "translation_table", "write_onnx"]

#: ONNX opset of the exported graph: >= 16 for RoiAlign's coordinate_transformation_mode
OPSET = 18
#: the lowest float32: a score threshold that every finite score passes (and -inf does not)
_LOWEST = -3.4028234663852886e38


def translation_table() -> dict[object, object]:
    """``custom_translation_table`` for ``torch.onnx.export``: our ops as onnxscript functions.

    Imports onnxscript (the ``onnx`` extra); the functions are traced by the exporter.
    """
    from onnxscript import opset18 as op

    def _i64(values: Sequence[int]):
        return op.Constant(value_ints=list(values))

    def _f(values: Sequence[float]):
        return op.Constant(value_floats=list(values))

    def _dim(x, axis: int):
        return op.Slice(op.Shape(x), _i64([axis]), _i64([axis + 1]), _i64([0]))  # [1] int64

    def nms(boxes, scores, iou_threshold: float):
        """boxes [N, 4] x1y1x2y2, scores [N] -> kept indices [K] int64, score order."""
        b = op.Unsqueeze(boxes, _i64([0]))
        s = op.Unsqueeze(scores, _i64([0, 1]))
        selected = op.NonMaxSuppression(
            b, s, op.Shape(scores), op.Constant(value_float=float(iou_threshold))
        )
        return op.Reshape(op.Slice(selected, _i64([2]), _i64([3]), _i64([1])), _i64([-1]))

    def batched_nms(boxes, scores, idxs, iou_threshold: float):
        """Per-group NMS; kept indices [K] int64 sorted by (score desc, index asc)."""
        # group ids shifted to start at 0 (negative ids allowed); [0] appended so that the
        # reductions are defined on zero boxes (then one empty row)
        zero = op.CastLike(_i64([0]), idxs)
        one = op.CastLike(op.Constant(value_int=1), idxs)
        ids = op.Sub(idxs, op.ReduceMin(op.Concat(idxs, zero, axis=0), keepdims=0))
        groups = op.Add(op.ReduceMax(op.Concat(ids, zero, axis=0), keepdims=0), one)
        rows = op.Range(op.CastLike(op.Constant(value_int=0), ids), groups, one)
        member = op.Equal(op.Unsqueeze(rows, _i64([1])), op.Unsqueeze(ids, _i64([0])))
        ninf = op.CastLike(op.Constant(value_float=-math.inf), scores)
        s = op.Unsqueeze(op.Where(member, op.Unsqueeze(scores, _i64([0])), ninf), _i64([0]))
        selected = op.NonMaxSuppression(
            op.Unsqueeze(boxes, _i64([0])),
            s,
            op.Shape(scores),
            op.Constant(value_float=float(iou_threshold)),
            op.Constant(value_float=_LOWEST),
        )
        keep = op.Reshape(op.Slice(selected, _i64([2]), _i64([3]), _i64([1])), _i64([-1]))
        k = op.Shape(keep)
        keep, _ = op.TopK(keep, k, largest=0, sorted=1)  # index ascending
        _, order = op.TopK(op.Gather(scores, keep), k, largest=1, sorted=1)  # stable on ties
        return op.Gather(keep, order)

    def _pool(feat, rois, size: Sequence[int], scale: float, ratio: int, aligned: bool):
        """RoiAlign of rois [K, 5] (batch, x1, y1, x2, y2) on feat [B, C, H, W]."""
        batch = op.Cast(
            op.Reshape(op.Slice(rois, _i64([0]), _i64([1]), _i64([1])), _i64([-1])),
            to=7,  # INT64
        )
        corners = op.Slice(rois, _i64([1]), _i64([5]), _i64([1]))
        return op.RoiAlign(
            feat,
            corners,
            batch,
            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
            mode="avg",
            output_height=int(size[0]),
            output_width=int(size[1]),
            sampling_ratio=int(ratio),
            spatial_scale=float(scale),
        )

    def roi_align(input, rois, output_size, spatial_scale, sampling_ratio, aligned):
        return _pool(input, rois, output_size, spatial_scale, sampling_ratio, aligned)

    def multi_level_roi_align(
        feats, rois, output_size, spatial_scales, sampling_ratio, aligned, finest_scale
    ):
        size = (int(output_size), int(output_size))
        if len(feats) == 1:  # every roi on the lone level, unmapped (as mmdetection)
            return _pool(feats[0], rois, size, spatial_scales[0], sampling_ratio, aligned)
        x1, y1, x2, y2 = (op.Slice(rois, _i64([c]), _i64([c + 1]), _i64([1])) for c in range(1, 5))
        area = op.Reshape(op.Mul(op.Sub(x2, x1), op.Sub(y2, y1)), _i64([-1]))
        scale = op.Div(
            op.Sqrt(area), op.CastLike(op.Constant(value_float=float(finest_scale)), area)
        )
        ratio = op.Add(scale, op.CastLike(op.Constant(value_float=1e-6), area))
        log2 = op.Div(op.Log(ratio), op.CastLike(op.Constant(value_float=math.log(2.0)), area))
        level = op.Clip(
            op.Floor(log2),
            op.CastLike(op.Constant(value_float=0.0), area),
            op.CastLike(op.Constant(value_float=float(len(feats) - 1)), area),
        )
        # NaN (negative area) matches no level: the roi keeps zeros, as in mmdetection
        level = op.Where(op.IsNaN(log2), op.CastLike(op.Constant(value_float=-1.0), area), level)
        shape = op.Concat(_dim(rois, 0), _dim(feats[0], 1), _i64(size), axis=0)
        out = op.ConstantOfShape(shape, value=_zero_tensor())
        out = op.CastLike(out, feats[0])
        for lvl, feat in enumerate(feats):
            hit = op.Equal(level, op.CastLike(op.Constant(value_float=float(lvl)), area))
            inds = op.Transpose(op.NonZero(hit), perm=[1, 0])  # [M, 1]
            sub = op.Gather(rois, op.Reshape(inds, _i64([-1])), axis=0)
            pooled = _pool(feat, sub, size, spatial_scales[lvl], sampling_ratio, aligned)
            out = op.ScatterND(out, inds, pooled)
        return out

    def deform_conv2d(input, offset, weight, stride, padding, dilation, groups, deform_groups):
        """input [B, C, H, W], offset [B, dg * 2 * kh * kw, Ho, Wo] (dy, dx per tap), weight
        [O, C / groups, kh, kw] -> [B, O, Ho, Wo]. Tap (i, j) of output (ho, wo) samples
        ``y = ho * sh - ph + i * dh + dy``, ``x = wo * sw - pw + j * dw + dx`` (pixel centres
        at integers; normalised for GridSample's align_corners=0 as (2 x + 1) / W - 1)."""
        dg, grp = int(deform_groups), int(groups)
        kh, kw = _dim(weight, 2), _dim(weight, 3)
        out_h, out_w = _dim(offset, 2), _dim(offset, 3)
        taps = op.Mul(kh, kw)

        def count(n):  # 0, 1, ..., n - 1 for a [1] int64 size
            return op.Range(op.Constant(value_int=0), op.Squeeze(n), op.Constant(value_int=1))

        def axis_base(tap_count, out_size, s: int, pd: int, dl: int, rows: bool):
            # this axis' tap offsets on the [kh, kw] grid, flattened to [taps, 1, 1], plus the
            # output positions, [1, Ho, 1] (rows) or [1, 1, Wo] (columns)
            tap = op.Unsqueeze(op.Mul(count(tap_count), _i64([dl])), _i64([1] if rows else [0]))
            tap = op.Reshape(op.Expand(tap, op.Concat(kh, kw, axis=0)), _i64([-1, 1, 1]))
            pos = op.Sub(op.Mul(count(out_size), _i64([s])), _i64([pd]))
            pos = op.Unsqueeze(pos, _i64([0, 2] if rows else [0, 1]))
            return op.CastLike(op.Add(tap, pos), offset)

        base_y = axis_base(kh, out_h, stride[0], padding[0], dilation[0], rows=True)
        base_x = axis_base(kw, out_w, stride[1], padding[1], dilation[1], rows=False)
        off = op.Reshape(offset, op.Concat(_i64([0, dg]), _i64([-1, 2]), out_h, out_w, axis=0))
        # sampling points [B, dg, taps, Ho, Wo]
        y = op.Add(base_y, op.Gather(off, op.Constant(value_int=0), axis=3))
        x = op.Add(base_x, op.Gather(off, op.Constant(value_int=1), axis=3))
        two, unit = op.CastLike(_f([2.0]), offset), op.CastLike(_f([1.0]), offset)

        def normalise(v, size):
            return op.Sub(op.Div(op.Add(op.Mul(v, two), unit), op.CastLike(size, offset)), unit)

        height, width = _dim(input, 2), _dim(input, 3)
        grid = op.Concat(
            op.Unsqueeze(normalise(x, width), _i64([-1])),
            op.Unsqueeze(normalise(y, height), _i64([-1])),
            axis=-1,
        )
        grid_shape = op.Concat(_i64([-1]), op.Mul(taps, out_h), out_w, _i64([2]), axis=0)
        grid = op.Reshape(grid, grid_shape)  # [B * dg, taps * Ho, Wo, 2]
        group_channels = op.Div(_dim(input, 1), _i64([dg]))
        feats = op.Reshape(input, op.Concat(_i64([-1]), group_channels, height, width, axis=0))
        sampled = op.GridSample(  # [B * dg, C / dg, taps * Ho, Wo]
            feats, grid, align_corners=0, mode="bilinear", padding_mode="zeros"
        )
        hw = op.Mul(out_h, out_w)
        batch = _dim(input, 0)
        columns = op.Reshape(sampled, op.Concat(batch, _i64([grp, -1]), hw, axis=0))
        out_channels = _dim(weight, 0)
        w = op.Reshape(
            weight, op.Concat(_i64([grp]), op.Div(out_channels, _i64([grp])), _i64([-1]), axis=0)
        )
        out = op.MatMul(w, columns)  # [B, groups, O / groups, Ho * Wo]
        return op.Reshape(out, op.Concat(batch, out_channels, out_h, out_w, axis=0))

    def materialize(x):
        return op.Identity(x)

    import cendetect.engine.runners.export_ops  # noqa: F401  (registers cendetect_export)
    import cendetect.ops  # noqa: F401  (registers torch.ops.cendetect)

    ops = torch.ops
    return {
        ops.cendetect.nms.default: nms,
        ops.cendetect.batched_nms.default: batched_nms,
        ops.cendetect.roi_align.default: roi_align,
        ops.cendetect.multi_level_roi_align.default: multi_level_roi_align,
        ops.cendetect.deform_conv2d.default: deform_conv2d,
        ops.cendetect_export.materialize.default: materialize,
    }


def _zero_tensor():
    import onnx

    return onnx.helper.make_tensor("zero", onnx.TensorProto.FLOAT, [1], [0.0])


def save_onnx(
    program: torch.export.ExportedProgram, manifest: Manifest, path: str | os.PathLike
) -> None:
    """Translate ``program`` to ONNX and write it, with the manifest, to one ``.onnx`` file.

    The weights are stored inside the file (no external data; a ResNet-50 Mask R-CNN is
    ~180 MB, under protobuf's 2 GB limit). The manifest is the ``metadata_props`` entry
    ``cendetect_manifest.json``.
    """
    write_onnx(translate_onnx(program), manifest, path)


def translate_onnx(program: torch.export.ExportedProgram) -> Any:
    """``program`` as an ONNX program (``torch.onnx.ONNXProgram``, lightly optimised), for
    :func:`write_onnx`. Translate a program once: the exporter changes it on the way, and
    a second translation of the same program fails."""
    onnx_program = torch.onnx.export(
        program,
        (),
        dynamo=True,
        opset_version=OPSET,
        custom_translation_table=translation_table(),
        input_names=["images", "image_sizes", "scale_factors"],
        output_names=["boxes", "scores", "labels", "masks", "image_ids"],
        optimize=False,
        verbose=False,
    )
    _light_optimize(onnx_program.model)
    return onnx_program


def write_onnx(onnx_program: Any, manifest: Manifest, path: str | os.PathLike) -> None:
    """Write the ONNX program of :func:`translate_onnx` with ``manifest`` to ``path`` (one
    program can be written under several manifests: an ``onnx`` and an ``openvino``
    artifact of one fp32 export)."""
    onnx_program.model.metadata_props[MANIFEST_NAME] = manifest.to_json()
    onnx_program.save(os.fspath(path), external_data=False)


def _light_optimize(model) -> None:
    """Inline the exporter's functions, fold constants, drop what is unused (in place).

    ``torch.onnx.export(optimize=True)`` also runs onnxscript's pattern rewriter, which took
    half of the cascade's build (76 of 144 s, profiled) for rewrites that onnxruntime's own
    session optimisation covers. ``model`` is an ``onnx_ir.Model``.
    """
    import onnx_ir.passes.common as common
    from onnxscript.optimizer import fold_constants

    common.InlinePass()(model)
    fold_constants(model)
    for step in (
        common.RemoveUnusedNodesPass(),
        common.RemoveUnusedFunctionsPass(),
        common.RemoveUnusedOpsetsPass(),
        common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0),
        common.DeduplicateInitializersPass(),
        common.NameFixPass(),
    ):
        step(model)
