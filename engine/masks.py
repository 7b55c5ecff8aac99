"""Compact instance masks: one box-cropped bitmap per instance, never an N x H x W array.

:class:`InstanceMasks` is what the compositor's :func:`~cendetect.engine.compositor.paste_masks`
returns and what :class:`~cendetect.engine.postprocess.Detections` keeps. Instance ``i`` is the
bitmap ``crop(i)`` (``bool [y1 - y0, x1 - x0]``) placed at ``windows[i] = (x0, y0, x1, y1)`` of an
``image_size = (H, W)`` image; every pixel outside the window is False. All bitmaps share one flat
``uint8`` buffer (0 or 1), ``data[offsets[i]:offsets[i + 1]]``, so native code can read them
without copies. Conversions use well-kept libraries: COCO RLE through pycocotools, polygons
through ``cv2.findContours``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["InstanceMasks"]


@dataclass(frozen=True, eq=False)
class InstanceMasks:
    """Per-instance bitmaps cropped to their windows.

    Attributes:
        image_size: (H, W) of the full-resolution image.
        windows: ``int64 [N, 4]`` x0, y0, x1, y1 of each bitmap in image pixels (half-open,
            ``0 <= x0 <= x1 <= W``, same for y); an empty window means an empty mask.
        offsets: ``int64 [N + 1]``, bitmap ``i`` is ``data[offsets[i]:offsets[i + 1]]``.
        data: ``uint8 [offsets[N]]`` row-major bitmaps, 0 or 1 (other nonzero bytes given to the
            constructor become 1).
    """

    image_size: tuple[int, int]
    windows: np.ndarray
    offsets: np.ndarray
    data: np.ndarray

    def __post_init__(self) -> None:
        h, w = (int(v) for v in self.image_size)
        if h < 0 or w < 0:
            raise ValueError(f"image_size must be non-negative (H, W), got {self.image_size}")
        win = np.ascontiguousarray(self.windows, dtype=np.int64).reshape(-1, 4)
        off = np.ascontiguousarray(self.offsets, dtype=np.int64).reshape(-1)
        data = np.ascontiguousarray(self.data).reshape(-1)
        if data.dtype == np.bool_:
            data = data.view(np.uint8)
        if data.dtype != np.uint8:
            raise ValueError(f"InstanceMasks.data must be uint8 or bool, got {data.dtype}")
        if data.size and int(data.max()) > 1:  # any nonzero byte means "in the mask"
            data = (data != 0).view(np.uint8)
        n = win.shape[0]
        inside = (
            (win[:, 0] >= 0)
            & (win[:, 0] <= win[:, 2])
            & (win[:, 2] <= w)
            & (win[:, 1] >= 0)
            & (win[:, 1] <= win[:, 3])
            & (win[:, 3] <= h)
        )
        if not inside.all():
            i = int(np.flatnonzero(~inside)[0])
            raise ValueError(f"window {i} {win[i].tolist()} is not inside the {h}x{w} image")
        areas = (win[:, 2] - win[:, 0]) * (win[:, 3] - win[:, 1])
        expected = np.concatenate([[0], np.cumsum(areas)])
        if off.shape != (n + 1,) or not np.array_equal(off, expected):
            raise ValueError("offsets must be [0, cumsum(window areas)] (one bitmap per window)")
        if data.shape[0] != int(expected[-1]):
            raise ValueError(f"data holds {data.shape[0]} bytes, the windows {int(expected[-1])}")
        object.__setattr__(self, "image_size", (h, w))
        object.__setattr__(self, "windows", win)
        object.__setattr__(self, "offsets", off)
        object.__setattr__(self, "data", data)

    # ---- construction ------------------------------------------------------------------

    @classmethod
    def _trusted(
        cls, image_size: tuple[int, int], windows: np.ndarray, offsets: np.ndarray, data: np.ndarray
    ) -> InstanceMasks:
        """From the compositor's own output, which is consistent by construction: skips the
        checks (and the pass over ``data``) of the public constructor."""
        self = object.__new__(cls)
        for name, value in zip(
            ("image_size", "windows", "offsets", "data"), (image_size, windows, offsets, data)
        ):
            object.__setattr__(self, name, value)
        return self

    @classmethod
    def empty(cls, image_size: tuple[int, int]) -> InstanceMasks:
        """No instances on an ``image_size`` image."""
        z = np.zeros(0, dtype=np.int64)
        return cls(image_size, z.reshape(0, 4), np.zeros(1, np.int64), np.zeros(0, np.uint8))

    @classmethod
    def from_crops(
        cls, image_size: tuple[int, int], windows: np.ndarray, crops: Sequence[np.ndarray]
    ) -> InstanceMasks:
        """From one ``[y1 - y0, x1 - x0]`` bitmap (bool or 0/1) per window."""
        win = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
        if len(crops) != win.shape[0]:
            raise ValueError(f"{len(crops)} crops for {win.shape[0]} windows")
        parts = []
        for i, c in enumerate(crops):
            c = np.asarray(c)
            shape = (int(win[i, 3] - win[i, 1]), int(win[i, 2] - win[i, 0]))
            if c.shape != shape:
                raise ValueError(f"crop {i} has shape {c.shape}, its window {shape}")
            parts.append((c != 0).astype(np.uint8).reshape(-1))
        data = np.concatenate(parts) if parts else np.zeros(0, np.uint8)
        areas = (win[:, 2] - win[:, 0]) * (win[:, 3] - win[:, 1])
        return cls(image_size, win, np.concatenate([[0], np.cumsum(areas)]), data)

    @classmethod
    def from_full(cls, masks: np.ndarray) -> InstanceMasks:
        """From full-resolution ``[N, H, W]`` masks, each cropped to its tight bounding box."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"expected masks of shape [N, H, W], got {masks.shape}")
        n, h, w = masks.shape
        windows = np.zeros((n, 4), dtype=np.int64)
        crops = []
        for i in range(n):
            ys = np.flatnonzero(masks[i].any(axis=1))
            xs = np.flatnonzero(masks[i].any(axis=0))
            if ys.size:
                windows[i] = (xs[0], ys[0], xs[-1] + 1, ys[-1] + 1)
            x0, y0, x1, y1 = windows[i]
            crops.append(masks[i, y0:y1, x0:x1])
        return cls.from_crops((h, w), windows, crops)

    # ---- access ------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self.windows.shape[0])

    def crop(self, i: int) -> np.ndarray:
        """``bool [y1 - y0, x1 - x0]`` bitmap of instance ``i`` (a read-only view)."""
        x0, y0, x1, y1 = (int(v) for v in self.windows[i])
        view = self.data[self.offsets[i] : self.offsets[i + 1]].view(np.bool_)
        view = view.reshape(y1 - y0, x1 - x0)
        view.flags.writeable = False
        return view

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.crop(i) for i in range(len(self)))

    def areas(self) -> np.ndarray:
        """``int64 [N]`` pixel count of each mask."""
        return np.array([int(np.count_nonzero(c)) for c in self], dtype=np.int64)

    def select(self, index: Any) -> InstanceMasks:
        """The instances ``index`` picks (an integer array, a boolean mask or a slice)."""
        idx = np.arange(len(self))[index]
        idx = np.atleast_1d(idx)
        return InstanceMasks.from_crops(
            self.image_size, self.windows[idx], [self.crop(i) for i in idx]
        )

    # ---- conversions -------------------------------------------------------------------

    def to_full(self) -> np.ndarray:
        """``bool [N, H, W]`` full-resolution masks (allocates N x H x W bytes)."""
        h, w = self.image_size
        out = np.zeros((len(self), h, w), dtype=np.bool_)
        for i, (x0, y0, x1, y1) in enumerate(self.windows):
            out[i, y0:y1, x0:x1] = self.crop(i)
        return out

    def union(self) -> np.ndarray:
        """``bool [H, W]``: pixels in any mask."""
        out = np.zeros(self.image_size, dtype=np.bool_)
        for i, (x0, y0, x1, y1) in enumerate(self.windows):
            out[y0:y1, x0:x1] |= self.crop(i)
        return out

    def to_rle(self) -> list[dict[str, Any]]:
        """COCO run-length encodings (pycocotools ``mask.encode``), one per instance.

        ``counts`` is the compressed string as ``str`` (what COCO JSON holds); ``size`` is
        ``[H, W]``. Works on one H x W Fortran-order buffer, reused across instances.
        """
        from pycocotools import mask as mask_utils

        h, w = self.image_size
        canvas = np.zeros((h, w, 1), dtype=np.uint8, order="F")
        out = []
        for i, (x0, y0, x1, y1) in enumerate(self.windows):
            canvas[y0:y1, x0:x1, 0] = self.crop(i)
            rle = mask_utils.encode(canvas)[0]
            canvas[y0:y1, x0:x1, 0] = 0
            counts = rle["counts"]
            rle["counts"] = counts.decode("ascii") if isinstance(counts, bytes) else counts
            out.append(rle)
        return out

    def to_polygons(self, holes: bool = False) -> list[list[np.ndarray]]:
        """Outlines from ``cv2.findContours``: per instance, a list of ``int32 [K, 2]`` (x, y).

        Vertices are image pixel indices of the boundary pixels (OpenCV's convention;
        ``CHAIN_APPROX_SIMPLE``). ``holes=False`` gives outer contours only
        (``RETR_EXTERNAL``); ``holes=True`` also the hole boundaries (``RETR_CCOMP``). For COCO
        ``segmentation`` polygons use ``[p.ravel().tolist() for p in polys if len(p) >= 3]``.
        """
        mode = cv2.RETR_CCOMP if holes else cv2.RETR_EXTERNAL
        out = []
        for i, (x0, y0, _, _) in enumerate(self.windows):
            crop = self.crop(i)
            if not crop.any():
                out.append([])
                continue
            # One pixel of zero padding: contours touching the crop's edge are still closed.
            padded = np.pad(crop.view(np.uint8), 1)
            contours, _ = cv2.findContours(
                padded, mode, cv2.CHAIN_APPROX_SIMPLE, offset=(int(x0) - 1, int(y0) - 1)
            )
            out.append([c.reshape(-1, 2).astype(np.int32) for c in contours])
        return out

    def dilate(self, pixels: int) -> InstanceMasks:
        """Each mask grown by ``pixels`` in every direction (square kernel, as hent-AI's).

        Windows grow by ``pixels`` too (clamped to the image); ``pixels = 0`` returns self.
        """
        k = int(pixels)
        if k < 0:
            raise ValueError(f"dilate needs pixels >= 0, got {pixels}")
        if k == 0 or len(self) == 0:
            return self
        h, w = self.image_size
        kernel = np.ones((2 * k + 1, 2 * k + 1), dtype=np.uint8)
        windows = self.windows.copy()
        crops = []
        for i, (x0, y0, x1, y1) in enumerate(self.windows):
            if x1 <= x0 or y1 <= y0:
                crops.append(np.zeros((y1 - y0, x1 - x0), dtype=np.uint8))
                continue
            padded = np.pad(self.crop(i).view(np.uint8), k)
            grown = cv2.dilate(padded, kernel)
            nx0, ny0 = max(x0 - k, 0), max(y0 - k, 0)
            nx1, ny1 = min(x1 + k, w), min(y1 + k, h)
            windows[i] = (nx0, ny0, nx1, ny1)
            crops.append(grown[ny0 - (y0 - k) : ny1 - (y0 - k), nx0 - (x0 - k) : nx1 - (x0 - k)])
        return InstanceMasks.from_crops(self.image_size, windows, crops)
