"""OPEX JSON (the object-predictions exchange format of the ``opex`` package).

One document per image: ``{"timestamp", "id", "objects": [{"score", "label", "bbox": {left,
top, right, bottom}, "polygon": {"points": [[x, y], ...]}}], "meta"}``, with pixel-index
coordinates (see :mod:`cendetect.io.shapes`). Built with the ``opex`` classes, so what is written
validates with ``ObjectPredictions.from_json_string``. With ``ShapeOptions(output_minrect=True)``
each object's ``meta`` holds ``minrect_w`` and ``minrect_h`` (OPEX meta values are strings).
"""

from __future__ import annotations

import datetime as _dt
import os

from opex import BBox, ObjectPrediction, ObjectPredictions, Polygon

from cendetect.engine.postprocess import Detections
from cendetect.io.atomic import write_text_atomic
from cendetect.io.shapes import ShapeOptions, instance_shapes

__all__ = ["error_json", "to_opex", "write_opex"]


def to_opex(
    det: Detections,
    id: str,
    meta: dict[str, str] | None = None,
    shapes: ShapeOptions | None = None,
) -> ObjectPredictions:
    """The detections of one image as an ``opex.ObjectPredictions`` named ``id``."""
    objects = []
    for i, shape in enumerate(instance_shapes(det, shapes)):
        left, top, right, bottom = shape.box
        extra = {}
        if shape.minrect is not None:
            extra["meta"] = {
                "minrect_w": repr(shape.minrect[0]),
                "minrect_h": repr(shape.minrect[1]),
            }
        objects.append(
            ObjectPrediction(
                score=float(det.scores[i]),
                label=det.class_names[int(det.labels[i])],
                bbox=BBox(left=left, top=top, right=right, bottom=bottom),
                polygon=Polygon(points=shape.polygon.tolist()),
                **extra,
            )
        )
    h, w = det.image_size
    info = {"width": str(w), "height": str(h), **(meta or {})}
    return ObjectPredictions(
        timestamp=_dt.datetime.now().isoformat(), id=id, objects=objects, meta=info
    )


def write_opex(
    path: str | os.PathLike[str], det: Detections, id: str, shapes: ShapeOptions | None = None
) -> None:
    """Write :func:`to_opex` atomically to ``path``."""
    write_text_atomic(path, to_opex(det, id, shapes=shapes).to_json_string())


def error_json(id: str, message: str) -> str:
    """The error object a service sends instead of OPEX: ``{"id": ..., "error": ...}``."""
    import json

    return json.dumps({"id": id, "error": message})
