"""Decoding: every kind of bad or unusual input gives an image or one clear reason."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from cendetect.io.decode import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_image,
    is_complete,
    read_image_file,
)


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def _rgb(h: int = 20, w: int = 30) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_unusual_images_are_converted_to_bgr_uint8() -> None:
    bgr = _rgb()
    np.testing.assert_array_equal(decode_image(_png(bgr)), bgr)
    gray = decode_image(_png(bgr[:, :, 0]))
    assert gray.shape == (20, 30, 3) and (gray[:, :, 0] == bgr[:, :, 0]).all()
    rgba = decode_image(_png(np.dstack([bgr, np.zeros((20, 30), np.uint8)])))
    np.testing.assert_array_equal(rgba, bgr)  # alpha dropped, as cv2.imread did in CenDetect
    deep = decode_image(_png(bgr.astype(np.uint16) * 257))
    assert deep.dtype == np.uint8
    np.testing.assert_array_equal(deep, bgr)
    buf = io.BytesIO()
    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(buf, "JPEG", quality=95)
    cmyk = decode_image(buf.getvalue(), "cmyk.jpg")
    assert cmyk.shape == (20, 30, 3)
    assert abs(int(cmyk[0, 0, 2]) - 255) < 8 and cmyk[0, 0, :2].max() < 8  # red in BGR


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty (0 bytes)"),
        (b"not an image at all", "not a readable image"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 50, "truncated"),
    ],
)
def test_bad_bytes_give_one_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as err:
        decode_image(data, "x.jpg")
    assert reason in err.value.reason and str(err.value).startswith("x.jpg: ")


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
def test_truncated_files_are_detected(ext: str) -> None:
    data = cv2.imencode(ext, _rgb(64, 64))[1].tobytes()
    assert is_complete(data) is True
    assert is_complete(data[: len(data) - 3]) is False
    with pytest.raises(ImageDecodeError, match="truncated|not a readable"):
        decode_image(data[: len(data) // 2], f"t{ext}")


def _with_size(png: bytes, w: int, h: int) -> bytes:
    """The PNG with its IHDR width/height replaced (CRC fixed): a header that lies."""
    ihdr = png[12:29]
    body = ihdr[:4] + struct.pack(">II", w, h) + ihdr[12:]
    return png[:12] + body + struct.pack(">I", zlib.crc32(body)) + png[33:]


def test_huge_images_are_refused_from_the_header() -> None:
    png = _png(_rgb(8, 8))
    with pytest.raises(ImageDecodeError, match="above the limit of 10"):
        decode_image(png, "small.png", max_pixels=10)
    assert DEFAULT_MAX_PIXELS == 178_956_970  # Pillow's DecompressionBombError level
    huge = _with_size(png, 15_000, 10_000)  # 150 M pixels: over a 100 M limit, never decoded
    with pytest.raises(ImageDecodeError, match="15000x10000 = 150000000 pixels.*100000000"):
        decode_image(huge, "huge.png", max_pixels=100_000_000)
    bomb = _with_size(png, 20_000, 10_000)  # 200 M pixels > the default limit
    with pytest.raises(ImageDecodeError, match=f"above the limit of {DEFAULT_MAX_PIXELS}"):
        decode_image(bomb, "bomb.png")


def test_files_unicode_missing_and_folders(tmp_path: Path) -> None:
    p = tmp_path / "ünïcødé 画像.png"
    p.write_bytes(_png(_rgb()))
    assert read_image_file(p).shape == (20, 30, 3)
    with pytest.raises(ImageDecodeError, match="no such file"):
        read_image_file(tmp_path / "missing.png")
    with pytest.raises(ImageDecodeError, match="is a folder"):
        read_image_file(tmp_path)
