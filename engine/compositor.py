"""Mask compositor: paste every instance mask at full resolution, in C++ (cendetect._compositor).

Pixel model (mmdetection ``_do_paste_mask``, detectron2 ``paste_masks_in_image``): pixel
``(x, y)`` of an ``H x W`` image has its centre at ``(x + 0.5, y + 0.5)``. For instance ``i``
with box ``(x1, y1, x2, y2)`` (float32 image pixels, continuous: pixel ``x`` spans ``[x, x + 1)``)
and mask ``P`` of ``Mh x Mw`` probabilities, the centre maps into the box as::

    u = ((x + 0.5) - x1) / (x2 - x1) * 2 - 1        # float32, every operation rounded
    v = ((y + 0.5) - y1) / (y2 - y1) * 2 - 1        # +-inf (zero-size box) becomes 0

and ``P`` is sampled there bilinearly as ``grid_sample(align_corners=False,
padding_mode="zeros")`` does, i.e. at mask position ``X = (u + 1) * Mw / 2 - 0.5`` (``Y``
likewise), with mask cells outside ``P`` reading 0. The pixel belongs to the instance when the
sample is ``>= threshold``. Only the window ``[floor(x1) - 1, ceil(x2) + 1) x [floor(y1) - 1,
ceil(y2) + 1)`` clamped to the image is evaluated, as mmdetection does (for thresholds >= 0.5
nothing outside it could pass). Boxes with a non-finite coordinate, or with ``x2 < x1`` or
``y2 < y1``, select nothing. The arithmetic mirrors torch's vectorised CPU ``grid_sample``
(AVX2/AVX-512 builds, which fuse the unnormalisation and the weighted sum into FMAs), so the
result equals mmdetection's on such CPUs bit for bit, at the threshold too.

Nothing here allocates an ``N x H x W`` array: :func:`paste_masks` returns compact bitmaps
(:class:`~cendetect.engine.masks.InstanceMasks`, one byte per window pixel) and
:func:`fill_masks` samples and paints in one pass with no intermediate at all. Inputs are numpy
arrays or torch CPU tensors (zero-copy); for CUDA tensors see :mod:`cendetect.engine.paste_torch`.
Work is split across instances and rows on ``get_num_threads()`` threads with the GIL released;
the output does not depend on the thread count.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np
import torch

from cendetect.engine.masks import InstanceMasks

__all__ = [
    "ANNOTATION_COLORS",
    "GREEN",
    "fill_masks",
    "get_num_threads",
    "paste_masks",
    "paste_windows",
    "set_num_threads",
]

#: CenDetect's output colour (BGR and RGB alike): what DeepCreamPy-style tools look for.
GREEN = (0, 255, 0)
#: Annotation-mask colours (BGR) by class: 0 = bar, 1 = mosaic.
ANNOTATION_COLORS = ((0, 255, 0), (0, 255, 255))

_ext: ModuleType | None
try:
    from cendetect import _compositor as _ext
except ImportError as exc:  # pragma: no cover - only without a build
    _ext, _IMPORT_ERROR = None, exc
else:
    _IMPORT_ERROR = None

ArrayLike = np.ndarray | torch.Tensor
ColorsLike = Sequence[int] | Sequence[Sequence[int]] | Mapping[Any, Sequence[int]] | np.ndarray


def _native() -> ModuleType:
    if _ext is None:
        raise RuntimeError(
            f"the mask compositor (cendetect._compositor) is not built: {_IMPORT_ERROR}. Build it "
            "from the repository root with `pip install --no-build-isolation -e .`."
        )
    return _ext


def get_num_threads() -> int:
    """Threads the compositor uses (default: ``$CENDETECT_NUM_THREADS``, else all cores)."""
    return int(_native().get_num_threads())


def set_num_threads(num_threads: int) -> None:
    """Sets the compositor's threads; ``num_threads <= 0`` restores the default.

    Independent of ``torch.set_num_threads`` and of ``cendetect.ops.set_num_threads``.
    """
    _native().set_num_threads(int(num_threads))


# ---- input validation: every user error is a ValueError naming the argument and the fix -----


def as_array(x: Any, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        if x.device.type != "cpu":
            raise ValueError(
                f"{name} is on {x.device}; call .cpu() first, or use "
                "cendetect.engine.paste_torch for CUDA tensors"
            )
        x = x.detach()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    try:
        return np.asarray(x)
    except Exception as exc:
        raise ValueError(f"{name} is not array-like ({type(x).__name__}): {exc}") from exc


def as_mask_probs(mask_probs: ArrayLike) -> np.ndarray:
    """C-contiguous ``float32 [N, Mh, Mw]`` from float ``[N, Mh, Mw]`` or ``[N, 1, Mh, Mw]``."""
    m = as_array(mask_probs, "mask_probs")
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        raise ValueError(f"mask_probs must be [N, M, M] (or [N, 1, M, M]), got shape {m.shape}")
    if not np.issubdtype(m.dtype, np.floating):
        raise ValueError(
            f"mask_probs must be floating-point probabilities in [0, 1], got dtype {m.dtype}"
        )
    if m.shape[0] > 0 and (m.shape[1] < 1 or m.shape[2] < 1):
        raise ValueError(f"mask_probs has an empty mask side: shape {m.shape}")
    return np.ascontiguousarray(m, dtype=np.float32)  # M is small: converting is cheap


def as_boxes(boxes: ArrayLike, n: int | None = None) -> np.ndarray:
    """``float32 [N, 4]`` (x1, y1, x2, y2) C-contiguous; float32 is what mmdetection uses."""
    b = as_array(boxes, "boxes")
    if b.ndim == 1 and b.shape[0] == 0:
        b = b.reshape(0, 4)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be [N, 4] (x1, y1, x2, y2), got shape {b.shape}")
    if not (np.issubdtype(b.dtype, np.floating) or np.issubdtype(b.dtype, np.integer)):
        raise ValueError(f"boxes must be real numbers, got dtype {b.dtype}")
    if n is not None and b.shape[0] != n:
        raise ValueError(f"{b.shape[0]} boxes for {n} masks: they must pair up")
    with np.errstate(over="ignore", invalid="ignore"):
        return np.ascontiguousarray(b, dtype=np.float32)


def as_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """(H, W) as non-negative Python ints."""
    try:
        h, w = (operator.index(v) for v in image_size)
    except (TypeError, ValueError) as exc:
        msg = f"image_size must be (height, width) integers, got {image_size!r}"
        raise ValueError(msg) from exc
    if h < 0 or w < 0:
        raise ValueError(f"image_size must be non-negative, got {(h, w)}")
    return h, w


def as_threshold(threshold: float) -> float:
    """A threshold in (0, 1] (the comparison is done in float32, as mmdetection does)."""
    t = float(threshold)
    if not (0.0 < t <= 1.0):
        raise ValueError(
            f"threshold must be in (0, 1], got {threshold} (soft masks, mmdetection's "
            "mask_thr_binary < 0, are not supported)"
        )
    return float(np.float32(t))


def as_labels(labels: ArrayLike | None, n: int) -> np.ndarray | None:
    """``int64 [N]`` class indices, or None."""
    if labels is None:
        return None
    lab = as_array(labels, "labels").reshape(-1)
    if lab.shape[0] != n:
        raise ValueError(f"{lab.shape[0]} labels for {n} instances")
    if n and not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integer class indices, got dtype {lab.dtype}")
    return lab.astype(np.int64)


def _color_array(c: Any, channels: int, what: str) -> np.ndarray:
    a = np.asarray(c)
    if a.ndim == 0:
        a = np.full(channels, a)
    if a.shape != (channels,) or not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} must be {channels} numbers in [0, 255], got {c!r}")
    if not np.all(np.isfinite(a)) or a.min() < 0 or a.max() > 255 or np.any(a != np.round(a)):
        raise ValueError(f"{what} must be integers in [0, 255], got {c!r}")
    return a.astype(np.uint8)


def resolve_colors(
    colors: ColorsLike | None,
    labels: np.ndarray | None,
    n: int,
    channels: int,
    default: ColorsLike,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """``uint8 [N, channels]``: one colour per instance.

    ``colors`` is one colour for every instance (``(0, 255, 0)``, or a number for one channel),
    a per-class table ``[K, channels]`` indexed by label, or a mapping from label (or class name,
    with ``class_names``) to colour. None means ``default``.
    """
    spec = default if colors is None else colors
    if isinstance(spec, Mapping):
        table: dict[int, np.ndarray] = {}
        for key, c in spec.items():
            if isinstance(key, str):
                if class_names is None or key not in class_names:
                    raise ValueError(f"colors names class {key!r}, not one of {class_names}")
                key = list(class_names).index(key)
            table[int(key)] = _color_array(c, channels, f"colors[{key!r}]")
        return _per_label(lambda k: table.get(k), labels, n, channels, f"{len(table)} entries")
    arr = np.asarray(spec)
    if arr.ndim <= 1:
        return np.tile(_color_array(arr, channels, "colors"), (n, 1))
    if arr.ndim != 2:
        raise ValueError(f"colors must be a colour, a [K, {channels}] table or a mapping")
    rows = [_color_array(r, channels, f"colors[{i}]") for i, r in enumerate(arr)]
    return _per_label(
        lambda k: rows[k] if 0 <= k < len(rows) else None, labels, n, channels, f"{len(rows)} rows"
    )


def _per_label(get: Any, labels: np.ndarray | None, n: int, channels: int, size: str) -> np.ndarray:
    if n == 0:
        return np.zeros((0, channels), dtype=np.uint8)
    if labels is None:
        raise ValueError("per-class colors need labels (one class index per instance)")
    out = np.empty((n, channels), dtype=np.uint8)
    for i, k in enumerate(labels.tolist()):
        c = get(int(k))
        if c is None:
            raise ValueError(f"label {k} has no colour: colors has {size}")
        out[i] = c
    return out


def prepare_image(
    image: ArrayLike, inplace: bool, channels: Sequence[int] = (3,)
) -> tuple[np.ndarray, np.ndarray | None]:
    """(work, write_back): a packed uint8 ``[H, W, C]`` array to draw on, and the array to copy
    it back into afterwards (None when ``work`` already is the caller's memory)."""
    img = as_array(image, "image")
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got dtype {img.dtype}")
    if img.ndim == 2 and 1 in channels:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[2] not in channels:
        want = " or ".join(f"[H, W, {c}]" for c in channels)
        raise ValueError(f"image must be {want} (BGR), got shape {img.shape}")
    if not inplace:
        return np.ascontiguousarray(img).copy(), None
    if not img.flags.writeable:
        raise ValueError("image is read-only; pass inplace=False to get a new array")
    packed = img.strides[2] == 1 and img.strides[1] == img.shape[2]
    if packed:
        return img, None
    return np.ascontiguousarray(img), img  # e.g. a channel-reversed view: draw, then copy back


def paste_windows(boxes: ArrayLike, image_size: Sequence[int]) -> np.ndarray:
    """``int64 [N, 4]``: the window (x0, y0, x1, y1) evaluated for each box (see the module)."""
    b = as_boxes(boxes)
    h, w = as_image_size(image_size)
    out = np.zeros((b.shape[0], 4), dtype=np.int64)
    _native().paste_windows(b, h, w, out)
    return out


def paste_masks(
    mask_probs: ArrayLike,
    boxes: ArrayLike,
    image_size: Sequence[int],
    threshold: float = 0.5,
) -> InstanceMasks:
    """Paste ``M x M`` mask probabilities into their boxes on an ``image_size`` image.

    Args:
        mask_probs: ``[N, Mh, Mw]`` (or ``[N, 1, Mh, Mw]``) float16/32/64 probabilities.
        boxes: ``[N, 4]`` x1, y1, x2, y2 in image pixels (converted to float32).
        image_size: (H, W) of the image.
        threshold: a pixel is in the mask when its bilinear sample is ``>= threshold``.

    Returns compact masks: one window-sized bitmap per instance (module docstring for the
    pixel model); ``.to_full()`` gives ``bool [N, H, W]``.
    """
    m = as_mask_probs(mask_probs)
    b = as_boxes(boxes, m.shape[0])
    h, w = as_image_size(image_size)
    thr = as_threshold(threshold)
    ext = _native()
    windows = np.zeros((m.shape[0], 4), dtype=np.int64)
    ext.paste_windows(b, h, w, windows)
    areas = (windows[:, 2] - windows[:, 0]) * (windows[:, 3] - windows[:, 1])
    offsets = np.zeros(m.shape[0] + 1, dtype=np.int64)
    np.cumsum(areas, out=offsets[1:])
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    ext.paste_masks(m, b, windows, offsets, h, w, thr, data)
    return InstanceMasks._trusted((h, w), windows, offsets, data)


def fill_masks(
    image: ArrayLike,
    mask_probs: ArrayLike,
    boxes: ArrayLike,
    labels: ArrayLike | None = None,
    colors: ColorsLike | None = None,
    threshold: float = 0.5,
    inplace: bool = False,
) -> np.ndarray:
    """Paste and fill in one pass: every selected pixel of every instance gets its colour.

    The fast path for CenDetect's output: no mask is stored anywhere. Same pixel model as
    :func:`paste_masks`; where instances overlap, later ones are painted over earlier ones.

    Args:
        image: ``uint8 [H, W, 3]`` BGR (numpy or torch CPU tensor).
        mask_probs, boxes, threshold: as :func:`paste_masks`.
        labels: ``int [N]`` class indices, needed for per-class ``colors``.
        colors: one colour, a per-class ``[K, 3]`` table or ``{label: colour}``; default pure
            green ``(0, 255, 0)`` for every class.
        inplace: draw into ``image`` (and return it) instead of into a copy.

    Returns the composited ``uint8 [H, W, 3]`` image.
    """
    m = as_mask_probs(mask_probs)
    n = m.shape[0]
    b = as_boxes(boxes, n)
    thr = as_threshold(threshold)
    work, write_back = prepare_image(image, inplace)
    cols = resolve_colors(colors, as_labels(labels, n), n, work.shape[2], GREEN)
    ext = _native()
    windows = np.zeros((n, 4), dtype=np.int64)
    ext.paste_windows(b, work.shape[0], work.shape[1], windows)
    ext.paste_fill(m, b, windows, thr, cols, work)
    if write_back is not None:
        write_back[...] = work
        return write_back
    return work


def fill_instances(
    work: np.ndarray, masks: InstanceMasks, colors: np.ndarray, alpha: float = 1.0
) -> None:
    """Paints (``alpha = 1``) or blends ``colors[i]`` over instance i's pixels of ``work``."""
    _check_fits(work, masks)
    a = int(round(float(alpha) * 256))
    if not (0 <= a <= 256) or math.isnan(alpha):
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    colors = np.ascontiguousarray(colors, dtype=np.uint8)
    _native().fill_bitmaps(masks.data, masks.windows, masks.offsets, colors, a, work)


def copy_instances(
    work: np.ndarray, masks: InstanceMasks, src: np.ndarray, x0: int, y0: int
) -> None:
    """Copies instance pixels from ``src`` (an image region whose pixel (0, 0) is ``work``'s
    ``(x0, y0)``) into ``work``."""
    _check_fits(work, masks)
    src = np.ascontiguousarray(src, dtype=np.uint8)
    _native().copy_bitmaps(masks.data, masks.windows, masks.offsets, src, int(x0), int(y0), work)


def _check_fits(work: np.ndarray, masks: InstanceMasks) -> None:
    if not isinstance(masks, InstanceMasks):
        raise ValueError(f"masks must be InstanceMasks, got {type(masks).__name__}")
    if tuple(work.shape[:2]) != masks.image_size:
        raise ValueError(
            f"the masks are for a {masks.image_size[0]}x{masks.image_size[1]} image, "
            f"the image is {work.shape[0]}x{work.shape[1]}"
        )
