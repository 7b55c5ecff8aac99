"""cendetect's PNG writer: every layout it takes decodes back exactly, in OpenCV and Pillow."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cendetect import _compositor
from cendetect.io import png
from cendetect.io.atomic import write_image_atomic
from cendetect.io.png import encode_png


def _photo(h: int = 97, w: int = 131, c: int = 3, seed: int = 0) -> np.ndarray:
    """A smooth image with noise: every filter predicts something, nothing is constant."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = (xx * 255 // max(w - 1, 1) + yy * 3)[..., None] + np.arange(c) * 40
    return ((base + rng.integers(0, 30, (h, w, c))) % 256).astype(np.uint8)


def _decoded(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(OpenCV's IMREAD_UNCHANGED, Pillow's array in OpenCV channel order)."""
    cv = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        pil = np.asarray(im)
    if pil.ndim == 3:
        pil = pil[..., [2, 1, 0, 3][: pil.shape[2]]]
    return cv, pil


@pytest.mark.parametrize(
    "image",
    [
        _photo(),
        _photo(c=4),
        _photo()[..., 0],
        _photo(c=1),
        _photo(h=1, w=1),
        _photo(h=1, w=300),
        _photo(h=300, w=1),
        np.zeros((5, 7, 3), np.uint8),
        np.full((5, 7, 3), 255, np.uint8),
    ],
    ids=["bgr", "bgra", "gray2d", "gray1", "1x1", "1row", "1col", "black", "white"],
)
def test_decodes_back_exactly(image: np.ndarray) -> None:
    data = encode_png(image)
    cv, pil = _decoded(data)
    assert np.array_equal(cv.reshape(image.shape), image)
    assert np.array_equal(pil.reshape(image.shape), image)


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[::-1],  # negative row stride
        lambda a: a[:, ::-1],  # negative pixel stride: not packed
        lambda a: a[::2, ::3],  # strided rows and pixels
        lambda a: a[10:50, 20:90],  # a crop: row stride larger than the row
        lambda a: np.asfortranarray(a),
    ],
    ids=["flipped-rows", "flipped-cols", "strided", "crop", "fortran"],
)
def test_any_strides(view) -> None:
    image = view(_photo())
    cv, pil = _decoded(encode_png(image))
    assert np.array_equal(cv, image)
    assert np.array_equal(pil, image)


def test_file_structure() -> None:
    """Signature, IHDR (8-bit RGB, no interlace), IDAT, IEND; every CRC right; "up" rows."""
    image = _photo(h=20, w=30)
    data = encode_png(image)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n : pos + 12 + n])
        assert crc == zlib.crc32(body, zlib.crc32(kind)), kind
        chunks.append((kind, body))
        pos += 12 + n
    assert pos == len(data)
    assert [k for k, _ in chunks] == [b"IHDR", b"IDAT", b"IEND"]
    assert struct.unpack(">IIBBBBB", chunks[0][1]) == (30, 20, 8, 2, 0, 0, 0)
    rows = np.frombuffer(zlib.decompress(chunks[1][1]), np.uint8).reshape(20, 1 + 30 * 3)
    assert (rows[:, 0] == 2).all()
    rgb = image[..., ::-1].reshape(20, 90).astype(np.int16)
    assert np.array_equal(rows[0, 1:], rgb[0])
    assert np.array_equal(rows[1:, 1:], ((rgb[1:] - rgb[:-1]) % 256).astype(np.uint8))


def test_large_idat_is_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(png, "_IDAT_MAX", 1000)
    image = _photo(h=200, w=200, seed=3)
    data = encode_png(image)
    assert data.count(b"IDAT") > 5
    cv, pil = _decoded(data)
    assert np.array_equal(cv, image) and np.array_equal(pil, image)


@pytest.mark.parametrize("filt", [0, 1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_filter_type_matches_the_spec(filt: int, channels: int) -> None:
    """The C++ filters against a direct transcription of the PNG specification."""
    image = _photo(h=9, w=11, c=channels, seed=filt)
    out = np.empty((9, 1 + 11 * channels), np.uint8)
    _compositor.png_filter_rows(image, filt, out)
    order = [2, 1, 0, 3][:channels] if channels > 1 else [0]
    x = image[..., order].reshape(9, 11 * channels).astype(np.int32)
    want = np.empty_like(x)
    for y in range(9):
        for i in range(11 * channels):
            a = x[y, i - channels] if i >= channels else 0
            b = x[y - 1, i] if y > 0 else 0
            c = x[y - 1, i - channels] if (y > 0 and i >= channels) else 0
            if filt == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            else:
                pred = [0, a, b, (a + b) // 2][filt]
            want[y, i] = (x[y, i] - pred) % 256
    assert (out[:, 0] == filt).all()
    assert np.array_equal(out[:, 1:], want)
    # and a decoder undoes it: the file with this filter reads back as the image
    body = zlib.compress(out.tobytes())
    ihdr = struct.pack(">IIBBBBB", 11, 9, 8, {1: 0, 3: 2, 4: 6}[channels], 0, 0, 0)
    parts = [b"\x89PNG\r\n\x1a\n"]
    for kind, data in ((b"IHDR", ihdr), (b"IDAT", body), (b"IEND", b"")):
        crc = zlib.crc32(data, zlib.crc32(kind))
        parts.append(struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc))
    cv, _ = _decoded(b"".join(parts))
    assert np.array_equal(cv.reshape(image.shape), image)


def test_filter_refuses_bad_arguments() -> None:
    image = _photo(h=4, w=5)
    with pytest.raises(ValueError, match="filter must be 0-4"):
        _compositor.png_filter_rows(image, 5, np.empty((4, 16), np.uint8))
    with pytest.raises(ValueError, match="out must be"):
        _compositor.png_filter_rows(image, 2, np.empty((4, 15), np.uint8))
    with pytest.raises(ValueError, match="channels must be 1, 3 or 4"):
        _compositor.png_filter_rows(_photo(h=4, w=5, c=2), 2, np.empty((4, 11), np.uint8))


@pytest.mark.parametrize(
    ("image", "match"),
    [
        (np.zeros((4, 4, 3), np.uint16), "8-bit"),
        (np.zeros((4, 4, 2), np.uint8), r"\[H, W, 1\|3\|4\]"),
        (np.zeros((4,), np.uint8), r"\[H, W, 1\|3\|4\]"),
        (np.zeros((0, 4, 3), np.uint8), "cannot write a 4x0 image"),
    ],
)
def test_refuses_what_it_does_not_write(image: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_png(image)


def test_write_image_atomic_uses_it_and_falls_back_to_opencv(tmp_path: Path) -> None:
    image = _photo()
    write_image_atomic(tmp_path / "a.png", image)
    assert (tmp_path / "a.png").read_bytes() == encode_png(image)
    deep = _photo().astype(np.uint16) * 257  # 16-bit: OpenCV writes it
    write_image_atomic(tmp_path / "b.png", deep)
    assert np.array_equal(cv2.imread(str(tmp_path / "b.png"), cv2.IMREAD_UNCHANGED), deep)
    write_image_atomic(tmp_path / "c.jpg", image)  # other formats: OpenCV
    assert cv2.imread(str(tmp_path / "c.jpg")).shape == image.shape


def test_the_deflate_is_isal() -> None:
    """isal is a dependency; the zlib fallback is for platforms without its wheels."""
    assert png.DEFLATE == "isal"
