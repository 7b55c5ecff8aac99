"""``MMDET_CLASSES``: class names from the environment, as the mmdetection services read them,
for checkpoints that hold none (through the real ``cendetect run``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cendetect.cli import main
from cendetect.cli.common import CliError, mmdet_classes, parse_class_list
from tests.cli.conftest import make_image, write_image


def test_parse_the_forms_the_services_accept(tmp_path: Path) -> None:
    assert parse_class_list("'bar','mosaic'") == ("bar", "mosaic")
    assert parse_class_list('bar, "mosaic" ,') == ("bar", "mosaic")
    assert mmdet_classes({}) is None and mmdet_classes({"MMDET_CLASSES": " "}) is None
    labels = tmp_path / "labels.txt"
    labels.write_text("'cat','dog'\n")
    assert mmdet_classes({"MMDET_CLASSES": str(labels)}) == ("cat", "dog")
    labels.write_text("cat\ndog\n")  # one per line too
    assert mmdet_classes({"MMDET_CLASSES": str(labels)}) == ("cat", "dog")
    with pytest.raises(CliError, match="no class names"):
        mmdet_classes({"MMDET_CLASSES": "','"})


def _run(capsys, monkeypatch, value: str | None, ckpt: Path, tmp: Path) -> tuple[int, str, Path]:
    if value is None:
        monkeypatch.delenv("MMDET_CLASSES", raising=False)
    else:
        monkeypatch.setenv("MMDET_CLASSES", value)
    src = tmp / "in"
    write_image(src / "a.png", make_image(3, 96, 128))
    out = tmp / f"out{abs(hash(value)) % 1000}"
    args = ["--input_path", str(src), "--output_path", str(out), "--checkpoint", str(ckpt)]
    rc = main(["run", "--no-progress", *args, "--save-json", "coco", "--confidence", "0.0"])
    return rc, capsys.readouterr().err, out


def test_names_a_nameless_checkpoint(nameless: Path, tiny_ckpt: Path, tmp_path: Path,
                                     capsys, monkeypatch) -> None:  # fmt: skip
    rc, err, out = _run(capsys, monkeypatch, "'left','right'", nameless, tmp_path)
    assert rc == 0, err
    cats = json.loads((out / "coco.json").read_text())["categories"]
    assert [c["name"] for c in cats] == ["left", "right"]
    # a checkpoint with its own names keeps them
    rc, err, out = _run(capsys, monkeypatch, "'left','right'", tiny_ckpt, tmp_path / "b")
    assert rc == 0, err
    assert [c["name"] for c in json.loads((out / "coco.json").read_text())["categories"]] == [
        "bar",
        "mosaic",
    ]
    # the wrong count is a clear error, exit 2
    rc, err, _ = _run(capsys, monkeypatch, "a,b,c", nameless, tmp_path / "c")
    assert rc == 2 and "MMDET_CLASSES names 3 classes (a, b, c) but the model has 2" in err
