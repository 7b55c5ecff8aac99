"""The learning-curve PNG: drawn from a log, resumed iterations counted once."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from cendetect.train.curve import draw_curve, read_log


def _log(path: Path) -> Path:
    lines = [{"iter": 0, "start": "scratch"}]
    lines += [{"iter": i, "loss": 3.0 / i, "loss_mask": 1.0 / i} for i in range(1, 61)]
    lines += [{"iter": i, "loss": 9.0, "loss_mask": 9.0} for i in range(41, 51)]  # resumed
    lines += [{"iter": 30, "eval": {"bbox_mAP": 0.1, "segm_mAP": 0.2}}]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return path


def test_read_log_keeps_the_last_record_of_an_iteration(tmp_path: Path) -> None:
    losses, evals = read_log(_log(tmp_path / "log.jsonl"))
    assert sorted(losses) == list(range(1, 61))
    # exact: JSON writes a float64 with repr, which reads back to the same bits
    assert losses[45]["loss"] == 9.0 and losses[40]["loss"] == 3.0 / 40
    assert evals == {30: {"bbox_mAP": 0.1, "segm_mAP": 0.2}}


def test_draw_curve_writes_a_png(tmp_path: Path) -> None:
    out = draw_curve(_log(tmp_path / "log.jsonl"), tmp_path / "curve.png", window=5)
    img = cv2.imread(str(out))
    assert img is not None and img.shape == (720, 900, 3)
    assert (img < 250).any()  # something was drawn
    with pytest.raises(ValueError, match="no loss records"):
        (tmp_path / "empty.jsonl").write_text('{"iter": 0, "start": "x"}\n')
        draw_curve(tmp_path / "empty.jsonl", tmp_path / "x.png")
