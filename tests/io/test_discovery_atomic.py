from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cendetect.io.atomic import atomic_open, write_image_atomic
from cendetect.io.discovery import discover_inputs, output_paths


def _touch(p: Path) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return p


def test_discovery_is_recursive_case_insensitive_and_sorted(tmp_path: Path) -> None:
    files = [
        _touch(tmp_path / "b.PNG"),
        _touch(tmp_path / "a.jpeg"),
        _touch(tmp_path / "sub" / "deep" / "c.WebP"),
        _touch(tmp_path / "sub" / "d.tif"),
        _touch(tmp_path / "clip.MP4"),
    ]
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / ".hidden" / "e.png")
    _touch(tmp_path / ".f.png")
    assert discover_inputs(tmp_path) == sorted(files)
    assert discover_inputs(files[0]) == [files[0]]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_inputs(tmp_path / "missing")


def test_output_paths_keep_subfolders_and_never_clash(tmp_path: Path) -> None:
    inp, out = tmp_path / "in", tmp_path / "out"
    a_jpg = _touch(inp / "a.jpg")
    a_png = _touch(inp / "a.png")
    b_jpg = _touch(inp / "x" / "b.jpg")
    b_webp = _touch(inp / "x" / "b.webp")
    c = _touch(inp / "x" / "c.bmp")
    m = output_paths([a_jpg, a_png, b_jpg, b_webp, c], inp, out)
    assert m[a_png] == out / "a.png"
    assert m[a_jpg] == out / "a.jpg.png"
    assert {m[b_jpg], m[b_webp]} == {out / "x" / "b.jpg.png", out / "x" / "b.webp.png"}
    assert m[c] == out / "x" / "c.png"
    assert len(set(m.values())) == 5
    single = output_paths([c], c, out)
    assert single[c] == out / "c.png"


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "o" / "x.json"
    target.parent.mkdir()
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(target, "w") as f:
        f.write("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_write_image_atomic_roundtrip(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (7, 9, 3), dtype=np.uint8)
    write_image_atomic(tmp_path / "deep" / "i.png", img)
    assert np.array_equal(cv2.imread(str(tmp_path / "deep" / "i.png")), img)
