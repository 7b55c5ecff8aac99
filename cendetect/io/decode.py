"""Decoding image files and bytes into BGR uint8 arrays, with one clear reason when it fails.

Everything OpenCV's ``IMREAD_COLOR`` accepts is accepted, converted the way CenDetect's
``cv2.imread`` did it: grayscale is expanded to BGR, an alpha channel is dropped, CMYK JPEGs
are converted, 16-bit images are reduced to 8 bits, EXIF orientation is applied. Before any
pixel is decoded the header is read (Pillow's lazy ``Image.open``) and images above a pixel
limit are refused, as Pillow's decompression-bomb check does. Truncation is detected from the
format's end marker (JPEG ``EOI``, PNG ``IEND``, the WebP RIFF length), which a partial decode
by OpenCV would otherwise hide.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageDecodeError",
    "decode_image",
    "is_complete",
    "read_image_file",
]

#: where Pillow refuses to open an image (``DecompressionBombError``): twice its
#: ``Image.MAX_IMAGE_PIXELS`` warning level, 178,956,970 pixels
DEFAULT_MAX_PIXELS = 2 * int(1024 * 1024 * 1024 // 4 // 3)


class ImageDecodeError(ValueError):
    """An input could not be turned into an image.

    Attributes:
        source: the file (or payload name) the error is about.
        reason: what is wrong with it, in a few words (no file name).
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


def is_complete(data: bytes) -> bool | None:
    """Whether ``data`` holds a whole file of its format.

    Returns True or False for JPEG (ends with the ``EOI`` marker, trailing zero bytes
    allowed), PNG (ends with the ``IEND`` chunk) and WebP (the RIFF header's length is all
    there), None for formats without such a marker (BMP, TIFF...).
    """
    if data[:3] == b"\xff\xd8\xff":
        return data.rstrip(b"\x00")[-2:] == b"\xff\xd9"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return data[-12:-8] == b"\x00\x00\x00\x00" and data[-8:-4] == b"IEND"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return len(data) >= int.from_bytes(data[4:8], "little") + 8
    if data[:2] == b"BM" and len(data) >= 6:
        return len(data) >= int.from_bytes(data[2:6], "little")
    return None


def _header(data: bytes, source: str, max_pixels: int) -> None:
    """Refuse images whose header says they are too large; tolerate what Pillow cannot read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        pillow_limit = 2 * Image.MAX_IMAGE_PIXELS
        if max_pixels > pillow_limit:
            return  # the caller allows more than Pillow opens: OpenCV decodes, then we check
        raise ImageDecodeError(
            source, f"image is larger than {pillow_limit} pixels, above the limit of {max_pixels}"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # OpenCV may still know the format; it gives the verdict below
    if w * h > max_pixels:
        raise ImageDecodeError(
            source,
            f"image is {w}x{h} = {w * h} pixels, above the limit of {max_pixels} "
            "(raise it with --max-pixels)",
        )


def decode_image(
    data: bytes | bytearray | memoryview, source: str = "<bytes>", max_pixels: int | None = None
) -> np.ndarray:
    """Decode an encoded image to BGR uint8 ``[H, W, 3]``.

    Args:
        data: the file's bytes.
        source: a name for messages (the path, or a payload id).
        max_pixels: refuse images with more pixels than this; default
            :data:`DEFAULT_MAX_PIXELS`.

    Raises:
        ImageDecodeError: empty, truncated, too large, or not an image OpenCV can decode.
    """
    data = bytes(data)
    limit = DEFAULT_MAX_PIXELS if max_pixels is None else int(max_pixels)
    if len(data) == 0:
        raise ImageDecodeError(source, "file is empty (0 bytes)")
    _header(data, source, limit)
    if is_complete(data) is False:
        raise ImageDecodeError(source, "file is truncated (the format's end marker is missing)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageDecodeError(
            source, "not a readable image (corrupt data or a format OpenCV cannot decode)"
        )
    h, w = image.shape[:2]
    if h * w > limit:  # formats Pillow could not read: checked after decoding
        raise ImageDecodeError(
            source, f"image is {w}x{h} = {w * h} pixels, above the limit of {limit}"
        )
    return image


def read_image_file(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Read and decode an image file to BGR uint8 ``[H, W, 3]`` (unicode paths work).

    Raises:
        ImageDecodeError: the file cannot be read (missing, a folder, no permission) or
            decoded (see :func:`decode_image`).
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ImageDecodeError(str(p), "no such file") from None
    except IsADirectoryError:
        raise ImageDecodeError(str(p), "is a folder, not a file") from None
    except PermissionError:
        raise ImageDecodeError(str(p), "cannot read the file: permission denied") from None
    except OSError as exc:
        raise ImageDecodeError(str(p), f"cannot read the file: {exc.strerror or exc}") from None
    return decode_image(data, str(p), max_pixels)
