"""mmdet_predict's options through the real commands (``cendetect watch`` and ``run``):
--mask_nth, --view_margin, --fully_connected, --output_minrect, --fit_bbox_to_polygon,
--bbox_as_fallback, --output_mask_image, --mask_threshold, --labels. The Redis worker's are in
test_redis.py."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from cendetect.cli import main
from tests.cli.conftest import make_image, write_image


def _watch(ckpt: Path, tmp: Path, tag: str, *extra: str) -> tuple[int, Path]:
    inp, out = tmp / f"in_{tag}", tmp / f"out_{tag}"
    for i in range(3):
        write_image(inp / f"img{i}.png", make_image(10 + i, 96, 128))
    rc = main(
        [
            "watch", "--prediction_in", str(inp), "--prediction_out", str(out),
            "--poll_wait", "0", "--checkpoint", str(ckpt), "--device", "cpu", *extra,
        ]
    )  # fmt: skip
    return rc, out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_watch_roi_csv_with_minrect_nth_and_mask_image(tiny_ckpt: Path, tmp_path: Path) -> None:
    rc, out = _watch(
        tiny_ckpt, tmp_path, "a", "--output_minrect", "--mask_nth", "2", "--output_mask_image",
        "--view_margin", "2", "--fully_connected", "low",
    )  # fmt: skip
    assert rc == 0
    rows = [r for i in range(3) for r in _rows(out / f"img{i}-rois.csv")]
    assert rows, "the tiny model finds regions in these images"
    for r in rows:
        assert float(r["minrect_w"]) > 0 and float(r["minrect_h"]) > 0
        xs = [int(v) for v in r["poly_x"].split(",")]
        ys = [int(v) for v in r["poly_y"].split(",")]
        if len(xs) > 4 or xs != [int(r["x0"]), int(r["x1"]), int(r["x1"]), int(r["x0"])]:
            assert all(v % 2 == 0 for v in xs + ys)  # traced on every 2nd row and column
    for i in range(3):
        labels = np.asarray(Image.open(out / f"img{i}-mask.png"))
        n_rows = len(_rows(out / f"img{i}-rois.csv"))
        assert labels.shape == (96, 128) and set(np.unique(labels)) <= {0, 1, 2}
        assert (labels > 0).any() == (n_rows > 0)


def test_watch_opex_fit_bbox_and_mask_threshold(tiny_ckpt: Path, tmp_path: Path) -> None:
    rc, out = _watch(
        tiny_ckpt, tmp_path, "b", "--prediction_format", "opex", "--fit_bbox_to_polygon",
        "--output_minrect", "--output_mask_image", "--mask_threshold", "0.3",
    )  # fmt: skip
    assert rc == 0
    objects = [
        o for i in range(3) for o in json.loads((out / f"img{i}.json").read_text())["objects"]
    ]
    assert objects
    for o in objects:
        pts = np.array(o["polygon"]["points"])
        b = o["bbox"]
        assert (b["left"], b["top"], b["right"], b["bottom"]) == (
            pts[:, 0].min(),
            pts[:, 1].min(),
            pts[:, 0].max(),
            pts[:, 1].max(),
        )
        assert float(o["meta"]["minrect_w"]) > 0
    # a lower probability threshold puts more pixels in the masks than a higher one
    rc, high = _watch(tiny_ckpt, tmp_path, "c", "--output_mask_image", "--mask_threshold", "0.7")
    assert rc == 0

    def area(folder: Path) -> int:
        masks = [np.asarray(Image.open(folder / f"img{i}-mask.png")) for i in range(3)]
        return sum(int((m > 0).sum()) for m in masks)

    assert area(out) > area(high)


def test_bad_option_pairs_are_usage_errors(tiny_ckpt: Path, tmp_path: Path, capsys) -> None:
    rc, _ = _watch(tiny_ckpt, tmp_path, "d", "--fit_bbox_to_polygon", "--bbox_as_fallback", "0.5")
    assert rc == 2 and "cannot be used together" in capsys.readouterr().err
    rc, _ = _watch(tiny_ckpt, tmp_path, "e", "--mask_nth", "0")
    assert rc == 2 and "--mask_nth" in capsys.readouterr().err
    rc, _ = _watch(tiny_ckpt, tmp_path, "f", "--mask_threshold", "1.5")
    assert rc == 2 and "--mask_threshold" in capsys.readouterr().err


def test_run_csv_fallback_mask_image_and_labels(
    nameless: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("MMDET_CLASSES", "'from_env_a','from_env_b'")
    labels = tmp_path / "labels.txt"
    labels.write_text("left\nright\n")
    src, out = tmp_path / "src", tmp_path / "out"
    write_image(src / "sub" / "a.png", make_image(3, 96, 128))
    rc = main(
        [
            "run", "--no-progress", "--input_path", str(src), "--output_path", str(out),
            "--checkpoint", str(nameless), "--labels", str(labels), "--confidence", "0",
            "--save-csv", "--output_minrect", "--bbox_as_fallback", "0.99",
            "--output_mask_image", "--refine", "off",
        ]
    )  # fmt: skip
    assert rc == 0
    rows = _rows(out / "sub" / "a-rois.csv")
    assert rows and {r["label_str"] for r in rows} <= {"left", "right"}  # --labels wins
    fallbacks = [
        r for r in rows
        if r["poly_x"] == f"{r['x0']},{r['x1']},{r['x1']},{r['x0']}"
    ]  # fmt: skip
    for r in fallbacks:  # the box stands in for the outline, and so for its minimal rectangle
        assert float(r["minrect_w"]) == int(r["x1"]) - int(r["x0"]) + 1
    assert (out / "sub" / "a-mask.png").is_file()
