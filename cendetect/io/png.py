"""A fast PNG encoder for the output images: the "up" row filter in C++, deflate by ISA-L.

Why not OpenCV's ``imencode`` (DESIGN.md prefers it for encoding): at 1024x1024 its libpng
path spends 28-44 ms per photo, the second largest cost of ``cendetect run`` on a CPU after the
model, and most of it is zlib's deflate. ISA-L's deflate (the ``isal`` package, Intel's
Intelligent Storage Acceleration Library, GIL released while it runs) does the same job
several times faster; with the "up" row filter the files come out about as small as OpenCV's
default ones or smaller (``benchmarks/bench_png.py``, docs/benchmarks.md). Where ``isal`` is
not installed the standard library's zlib (level 1) takes its place: same pixels, slower.

What is written: one non-interlaced 8-bit PNG, ``IHDR`` + ``IDAT`` chunks + ``IEND``, colour
type 0 (gray), 2 (RGB, from BGR) or 6 (RGBA, from BGRA). Every row uses filter type 2 ("up":
each byte minus the byte above it, modulo 256; the row above the first is zeros). Any PNG
decoder reads the pixels back exactly (tests decode with OpenCV and Pillow).
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

try:  # ISA-L: deflate several times faster than zlib at the same ratio
    from isal import isal_zlib as _deflate

    DEFLATE = "isal"
except ImportError:  # pragma: no cover - isal is a dependency; kept for platforms without wheels
    _deflate = zlib  # type: ignore[assignment]
    DEFLATE = "zlib"
_LEVEL = 1  # deflate level: the fastest of both libraries that still matches OpenCV's sizes

__all__ = ["DEFLATE", "encode_png"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# One IDAT chunk holds at most this many bytes (the format allows 2**31 - 1).
_IDAT_MAX = 1 << 26
_COLOUR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type
_UP = 2  # PNG filter type "up"


def _chunk(kind: bytes, data: bytes | memoryview) -> list[bytes | memoryview]:
    """One chunk as pieces to join: length, type, data, CRC-32 of type and data."""
    crc = zlib.crc32(data, zlib.crc32(kind))
    return [struct.pack(">I", len(data)) + kind, data, struct.pack(">I", crc)]


def _filtered_rows(image: np.ndarray) -> np.ndarray:
    """``[H, 1 + W * C]`` uint8 PNG scanlines: each row's filter byte (2, "up") and its
    filtered samples, channels reordered from OpenCV's BGR(A) to PNG's RGB(A)
    (csrc/png_filter.cpp, one pass)."""
    from cendetect import _compositor

    h, w = image.shape[:2]
    src = image.reshape(h, w, -1)
    c = src.shape[2]
    if src.strides[2] != 1 or src.strides[1] != c:  # pixels not packed (a strided view)
        src = np.ascontiguousarray(src)
    rows = np.empty((h, 1 + w * c), np.uint8)
    _compositor.png_filter_rows(src, _UP, rows)
    return rows


def encode_png(image: np.ndarray) -> bytes:
    """Encode an OpenCV-layout 8-bit image as PNG bytes.

    Args:
        image: uint8 ``[H, W]`` or ``[H, W, 1]`` (gray), ``[H, W, 3]`` (BGR) or ``[H, W, 4]``
            (BGRA), ``H, W >= 1``; any strides.

    Returns:
        The PNG file's bytes; decoding them gives ``image`` back exactly.

    Raises:
        ValueError: another dtype, channel count or an empty image (``write_image_atomic``
            hands those to OpenCV instead).
    """
    if image.dtype != np.uint8:
        raise ValueError(f"encode_png writes 8-bit images, got {image.dtype}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in _COLOUR_TYPE):
        raise ValueError(f"encode_png writes [H, W] or [H, W, 1|3|4] images, got {image.shape}")
    h, w = image.shape[:2]
    if h < 1 or w < 1 or h >= 1 << 31 or w >= 1 << 31:
        raise ValueError(f"encode_png cannot write a {w}x{h} image")
    channels = 1 if image.ndim == 2 else image.shape[2]
    data = _deflate.compress(_filtered_rows(image), _LEVEL)
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOUR_TYPE[channels], 0, 0, 0)
    view = memoryview(data)
    parts: list[bytes | memoryview] = [_SIGNATURE, *_chunk(b"IHDR", header)]
    for i in range(0, len(data), _IDAT_MAX):
        parts += _chunk(b"IDAT", view[i : i + _IDAT_MAX])
    parts += _chunk(b"IEND", b"")
    return b"".join(parts)
