"""``mode="overlay"``: detections drawn for people to look at (the look of detectron2's Visualizer).

Each instance gets a translucent colour (blended in C++, integer arithmetic, so results are
exact and repeatable), a darker outline (``cv2.findContours`` + ``cv2.drawContours``) and, when
boxes are given, its box and a "label score%" tag (``cv2.rectangle``, ``cv2.putText``). Line
widths and text size scale with the image, as detectron2's do.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cendetect.engine.compositor import (
    ArrayLike,
    ColorsLike,
    as_array,
    fill_instances,
    resolve_colors,
)
from cendetect.engine.masks import InstanceMasks

__all__ = ["PALETTE", "draw_overlay"]

#: BGR colours for instances, in order (detectron2's first colours, reordered to BGR).
PALETTE = np.array(
    [
        [189, 114, 0],
        [25, 83, 217],
        [32, 177, 237],
        [142, 47, 126],
        [48, 172, 119],
        [238, 190, 77],
        [47, 20, 162],
        [77, 77, 77],
        [153, 153, 153],
        [0, 0, 255],
        [0, 128, 255],
        [0, 191, 191],
        [0, 255, 0],
        [255, 0, 0],
        [255, 0, 170],
    ],
    dtype=np.uint8,
)


def draw_overlay(
    work: np.ndarray,
    masks: InstanceMasks,
    labels: np.ndarray | None,
    colors: ColorsLike | None,
    alpha: float,
    outline: bool,
    boxes: ArrayLike | None,
    scores: ArrayLike | None,
    class_names: Sequence[str] | None,
) -> None:
    """Draws into ``work`` (``uint8 [H, W, 3]``, packed) in place; see the module docstring."""
    n = len(masks)
    if colors is None:
        cols = PALETTE[np.arange(n) % len(PALETTE)]
    else:
        cols = resolve_colors(colors, labels, n, 3, colors, class_names)
    a = float(alpha)
    if not (0.0 <= a <= 1.0):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    fill_instances(work, masks, cols, a)
    h, w = masks.image_size
    thickness = max(1, int(np.sqrt(h * w) // 400))
    dark = (cols.astype(np.int32) * 6 // 10).astype(np.uint8)  # outline: 60 % brightness
    if outline:
        for i, polys in enumerate(masks.to_polygons(holes=True)):
            if polys:
                cv2.drawContours(work, polys, -1, _bgr(dark[i]), thickness, cv2.LINE_8)
    if boxes is None:
        return
    b = as_array(boxes, "boxes").astype(np.float64).reshape(-1, 4)
    if b.shape[0] != n:
        raise ValueError(f"{b.shape[0]} boxes for {n} masks")
    sc = None if scores is None else as_array(scores, "scores").astype(np.float64).reshape(-1)
    if sc is not None and sc.shape[0] != n:
        raise ValueError(f"{sc.shape[0]} scores for {n} masks")
    font_scale = max(0.35, np.sqrt(h * w) / 2000)
    for i in range(n):
        box = b[i]
        if not np.all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
            continue
        x0, y0 = _clip(np.floor(box[0]), w), _clip(np.floor(box[1]), h)
        x1, y1 = _clip(np.ceil(box[2]) - 1, w), _clip(np.ceil(box[3]) - 1, h)
        cv2.rectangle(work, (x0, y0), (x1, y1), _bgr(cols[i]), thickness, cv2.LINE_8)
        text = _tag(i, labels, sc, class_names)
        if text:
            _draw_tag(work, text, x0, y0, font_scale, max(1, thickness // 2))


def _bgr(c: np.ndarray) -> tuple[int, int, int]:
    return int(c[0]), int(c[1]), int(c[2])


def _clip(v: float, size: int) -> int:
    return int(min(max(v, 0), max(size - 1, 0)))


def _tag(
    i: int,
    labels: np.ndarray | None,
    scores: np.ndarray | None,
    class_names: Sequence[str] | None,
) -> str:
    parts = []
    if labels is not None:
        k = int(labels[i])
        parts.append(class_names[k] if class_names and 0 <= k < len(class_names) else str(k))
    if scores is not None and np.isfinite(scores[i]):
        parts.append(f"{scores[i] * 100:.0f}%")
    return " ".join(parts)


def _draw_tag(work: np.ndarray, text: str, x: int, y: int, scale: float, weight: int) -> None:
    """White text on a black tag above (x, y), or below it at the image's top edge."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, weight)
    top = y - th - base - 2 if y - th - base - 2 >= 0 else y
    cv2.rectangle(work, (x, top), (x + tw + 2, top + th + base + 2), (0, 0, 0), cv2.FILLED)
    cv2.putText(
        work, text, (x + 1, top + th + 1), font, scale, (255, 255, 255), weight, cv2.LINE_AA
    )
