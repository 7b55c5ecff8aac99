"""ROI CSV, as wai.annotations' ROI writer lays it out (one ``*-rois.csv`` per image).

Columns: ``file,x0,y0,x1,y1,x0n,y0n,x1n,y1n,label,label_str,score,poly_x,poly_y``; ``x0..y1``
are inclusive pixel indices, ``*n`` the same divided by the image width or height, ``label``
the 0-based class index, and ``poly_x`` / ``poly_y`` the outline's comma-separated coordinates
(one quoted CSV field each). With ``ShapeOptions(output_minrect=True)`` two more columns,
``minrect_w,minrect_h``: the outline's minimal rotated rectangle, as mmdet_predict's
``--output_minrect`` writes them.
"""

from __future__ import annotations

import csv
import io
import os

from cendetect.engine.postprocess import Detections
from cendetect.io.atomic import write_text_atomic
from cendetect.io.shapes import ShapeOptions, instance_shapes

__all__ = ["MINRECT_COLUMNS", "ROI_COLUMNS", "roi_csv_name", "to_roi_csv", "write_roi_csv"]

ROI_COLUMNS = (
    "file", "x0", "y0", "x1", "y1", "x0n", "y0n", "x1n", "y1n",
    "label", "label_str", "score", "poly_x", "poly_y",
)  # fmt: skip
MINRECT_COLUMNS = ("minrect_w", "minrect_h")


def roi_csv_name(image_name: str) -> str:
    """``photo.jpg`` -> ``photo-rois.csv`` (wai.annotations' default suffix)."""
    stem = os.path.splitext(os.path.basename(image_name))[0]
    return f"{stem}-rois.csv"


def to_roi_csv(det: Detections, file: str, shapes: ShapeOptions | None = None) -> str:
    """The CSV text for one image whose file name is ``file`` (outlines per ``shapes``)."""
    h, w = det.image_size
    minrect = bool(shapes and shapes.output_minrect)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(ROI_COLUMNS + (MINRECT_COLUMNS if minrect else ()))
    for i, shape in enumerate(instance_shapes(det, shapes)):
        x0, y0, x1, y1 = shape.box
        poly = shape.polygon
        label = int(det.labels[i])
        row = [
            file, x0, y0, x1, y1,
            x0 / w, y0 / h, x1 / w, y1 / h,
            label, det.class_names[label], float(det.scores[i]),
            ",".join(str(int(v)) for v in poly[:, 0]),
            ",".join(str(int(v)) for v in poly[:, 1]),
        ]  # fmt: skip
        if minrect and shape.minrect is not None:
            row += [shape.minrect[0], shape.minrect[1]]
        writer.writerow(row)
    return buf.getvalue()


def write_roi_csv(
    path: str | os.PathLike[str], det: Detections, file: str, shapes: ShapeOptions | None = None
) -> None:
    """Write :func:`to_roi_csv` atomically to ``path``."""
    write_text_atomic(path, to_roi_csv(det, file, shapes))
