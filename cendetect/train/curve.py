"""The learning curve of a training run as a PNG, drawn with OpenCV (no plotting dependency).

``python -m cendetect.train.curve RUN/log.jsonl OUT.png`` draws two panels: the losses against
the iteration (moving average over ``--window`` iterations) and the evaluation lines of the log
(COCO bbox / segm mAP of the periodic evaluation). A resumed run logs some iterations twice;
the last record of an iteration wins.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

__all__ = ["read_log", "draw_curve"]

LOSSES = (
    ("loss", (0, 0, 0)),
    ("loss_rpn_cls", (200, 120, 0)),
    ("loss_cls", (0, 140, 0)),
    ("loss_bbox", (160, 0, 160)),
    ("loss_mask", (0, 0, 210)),
)
METRICS = (
    ("bbox_mAP", (200, 120, 0)),
    ("segm_mAP", (0, 0, 210)),
    ("painted_bbox_mAP", (230, 190, 120)),  # the val_painted part, where the dataset has one
    ("painted_segm_mAP", (120, 120, 240)),
)


def read_log(path: str | Path) -> tuple[dict[int, dict], dict[int, dict]]:
    """``(losses by iteration, evaluation by iteration)`` from a run's ``log.jsonl``."""
    losses: dict[int, dict] = {}
    evals: dict[int, dict] = {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if "eval" in rec:
            evals[int(rec["iter"])] = rec["eval"]
        elif "loss" in rec:
            losses[int(rec["iter"])] = rec
    return losses, evals


def _panel(
    series: list[tuple[str, tuple[int, int, int], np.ndarray, np.ndarray]],
    x_max: float,
    y_max: float,
    title: str,
    size: tuple[int, int] = (900, 360),
) -> np.ndarray:
    w, h = size
    left, right, top, bottom = 70, 20, 40, 45
    img = np.full((h, w, 3), 255, np.uint8)
    pw, ph = w - left - right, h - top - bottom

    def to_px(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px = left + x / max(x_max, 1e-9) * pw
        py = top + ph - np.clip(y / max(y_max, 1e-9), 0, 1) * ph
        return np.stack([px, py], axis=1).round().astype(np.int32)

    cv2.rectangle(img, (left, top), (left + pw, top + ph), (0, 0, 0), 1)
    for i in range(6):  # grid and tick labels
        yv = y_max * i / 5
        y = int(top + ph - ph * i / 5)
        cv2.line(img, (left, y), (left + pw, y), (225, 225, 225), 1)
        cv2.putText(img, f"{yv:.2f}", (8, y + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        xv = x_max * i / 5
        x = int(left + pw * i / 5)
        cv2.putText(
            img, f"{xv:.0f}", (x - 12, top + ph + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1
        )
    cv2.putText(img, title, (left, 25), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1)
    cv2.putText(
        img, "iteration", (left + pw // 2 - 30, h - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1
    )
    for k, (name, colour, xs, ys) in enumerate(series):
        if len(xs) == 0:
            continue
        pts = to_px(xs, ys)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        if len(xs) < 30:
            for p in pts:
                cv2.circle(img, tuple(int(v) for v in p), 4, colour, -1, cv2.LINE_AA)
        lx = left + pw - 170
        ly = top + 18 + 18 * k
        cv2.line(img, (lx, ly - 4), (lx + 25, ly - 4), colour, 2)
        cv2.putText(img, name, (lx + 32, ly), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1)
    return img


def draw_curve(log: str | Path, out: str | Path, window: int = 25) -> Path:
    """Write the two-panel learning curve of ``log`` to ``out`` (PNG); returns ``out``."""
    losses, evals = read_log(log)
    if not losses:
        raise ValueError(f"{log}: no loss records")
    iters = np.array(sorted(losses), dtype=np.float64)
    x_max = float(iters.max())
    kernel = np.ones(window) / window
    series = []
    y_max = 0.0
    for name, colour in LOSSES:
        ys = np.array([losses[int(i)].get(name, np.nan) for i in iters], dtype=np.float64)
        if np.isnan(ys).all():
            continue
        ys = np.nan_to_num(ys)
        smooth = np.convolve(ys, kernel, mode="valid") if len(ys) >= window else ys
        xs = iters[len(iters) - len(smooth) :]
        series.append((name, colour, xs, smooth))
        y_max = max(y_max, float(smooth.max()))
    top = _panel(series, x_max, y_max * 1.05, f"training losses (moving average of {window})")
    ev_iters = np.array(sorted(evals), dtype=np.float64)
    ev_series = [
        (name, colour, ev_iters, np.array([evals[int(i)].get(name, 0.0) for i in ev_iters]))
        for name, colour in METRICS
        if any(name in ev for ev in evals.values())  # painted_*: only where logged
    ]
    bottom = _panel(ev_series, x_max, 1.0, "COCO mAP@[.5:.95] of the periodic evaluation")
    out = Path(out)
    if not cv2.imwrite(str(out), np.vstack([top, bottom])):
        raise OSError(f"{out}: cannot write the PNG")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cendetect.train.curve LOG OUT``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("log", type=Path, help="the run's log.jsonl")
    p.add_argument("out", type=Path, help="PNG to write")
    p.add_argument("--window", type=int, default=25, help="moving-average window (iterations)")
    args = p.parse_args(argv)
    print(draw_curve(args.log, args.out, args.window))
    return 0


if __name__ == "__main__":
    sys.exit(main())
