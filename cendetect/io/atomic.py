"""Atomic output writing: a reader never sees a half-written file, a crash never leaves one.

Data goes to a temporary file in the destination folder, is flushed and fsync'ed, then renamed
over the destination with ``os.replace`` (atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from cendetect.io.png import encode_png


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; rename it to ``path`` on success.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_image_atomic(path: str | os.PathLike[str], image: np.ndarray) -> None:
    """Encode ``image`` (BGR or gray uint8) by the path's extension and write it atomically.

    8-bit PNGs go through :func:`cendetect.io.png.encode_png` (ISA-L deflate, several times
    faster than OpenCV's libpng path); everything else through ``cv2.imencode``.
    """
    ext = Path(path).suffix.lower() or ".png"
    data = None
    if ext == ".png" and image.dtype == np.uint8:
        with contextlib.suppress(ValueError):  # a layout encode_png does not write: OpenCV's
            data = encode_png(image)
    if data is not None:
        write_bytes_atomic(path, data)
        return
    ok, buf = cv2.imencode(ext, image)
    if not ok:
        raise ValueError(
            f"{path}: OpenCV could not encode a {image.dtype} {image.shape} image as {ext}"
        )
    write_bytes_atomic(path, buf.tobytes())
