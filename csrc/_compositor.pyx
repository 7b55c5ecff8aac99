# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""cendetect's mask compositor kernels (csrc/compositor.cpp), bound with Cython.

Not meant to be called directly: use cendetect.engine.compositor, which validates and converts
inputs. Arrays are numpy (torch CPU tensors pass as zero-copy ``.numpy()`` views); images are
``uint8 [H, W, C]`` with channel stride 1, pixel stride C and any row stride. The GIL is released
around every kernel; bad arguments raise ValueError (std::invalid_argument), MemoryError
(std::bad_alloc).
"""

from libc.stdint cimport int64_t, uint8_t
from libc.string cimport memcpy
from libcpp cimport bool as cbool
from libcpp.vector cimport vector

import numpy as np


cdef extern from "parallel.h" namespace "cendetect" nogil:
    int c_get_num_threads "cendetect::get_num_threads"()
    void c_set_num_threads "cendetect::set_num_threads"(int n)


cdef extern from "compositor.h" namespace "cendetect" nogil:
    cdef struct ImageView "cendetect::ImageView":
        uint8_t* data
        int64_t height
        int64_t width
        int64_t channels
        int64_t row_stride

    void c_paste_windows "cendetect::paste_windows"(
        const float* boxes, int64_t n, int64_t height, int64_t width,
        int64_t* windows) except +
    void c_paste_masks "cendetect::paste_masks"(
        const float* masks, int64_t n, int64_t mask_h, int64_t mask_w, const float* boxes,
        const int64_t* windows, const int64_t* offsets, int64_t height, int64_t width,
        float threshold, uint8_t* out) except +
    void c_paste_fill "cendetect::paste_fill"(
        const float* masks, int64_t n, int64_t mask_h, int64_t mask_w, const float* boxes,
        const int64_t* windows, float threshold, const uint8_t* colors,
        ImageView image) except +
    void c_fill_bitmaps "cendetect::fill_bitmaps"(
        const uint8_t* bits, const int64_t* windows, const int64_t* offsets, int64_t n,
        const uint8_t* colors, int alpha, ImageView image) except +
    void c_copy_bitmaps "cendetect::copy_bitmaps"(
        const uint8_t* bits, const int64_t* windows, const int64_t* offsets, int64_t n,
        const uint8_t* src, int64_t src_height, int64_t src_width, int64_t src_row_stride,
        int64_t src_x0, int64_t src_y0, ImageView image) except +


cdef extern from "paste_legacy.h" namespace "cendetect" nogil:
    void c_paste_legacy_windows "cendetect::paste_legacy_windows"(
        const float* boxes, int64_t n, int64_t mask_size, int64_t height, int64_t width,
        int64_t* windows) except +
    void c_paste_legacy_masks "cendetect::paste_legacy_masks"(
        const float* masks, int64_t n, int64_t mask_size, const float* boxes,
        const int64_t* windows, const int64_t* offsets, float threshold, uint8_t* out) except +


cdef extern from "refine.h" namespace "cendetect" nogil:
    cdef cppclass BarRefineParams "cendetect::BarRefineParams":
        double band_frac
        int64_t band_min
        int64_t band_max
        double core_frac
        double tol_scale
        double tol_offset
        double tol_min
        double tol_max
        double max_spread
        int64_t min_area
        double min_ratio
        double max_ratio
        cbool edge_rule
        double rim_max
        int64_t clip

    cdef cppclass MosaicRefineParams "cendetect::MosaicRefineParams":
        double band_frac
        int64_t band_min
        int64_t band_max
        double core_frac
        int64_t min_area
        int64_t min_core
        double search_min
        double min_period
        double min_contrast
        int64_t max_candidates
        double seam
        double tol_scale
        double tol_offset
        double tol_min
        double tol_max
        double max_spread
        double whole_frac
        double cover
        double cut_frac
        double min_ratio
        double max_ratio

    void c_refine_instances "cendetect::refine_instances"(
        const uint8_t* image, int64_t height, int64_t width, int64_t stride,
        const int64_t* windows, const int64_t* offsets, const uint8_t* bits, int64_t bits_size,
        int64_t n, const uint8_t* kinds, const BarRefineParams& bar_params,
        const MosaicRefineParams& mosaic_params,
        vector[int64_t]& new_windows, vector[int64_t]& new_offsets, vector[uint8_t]& new_bits,
        uint8_t* changed) except +


cdef extern from "png_filter.h" namespace "cendetect" nogil:
    void c_png_filter_rows "cendetect::png_filter_rows"(
        const uint8_t* src, int64_t height, int64_t width, int64_t channels, int64_t row_stride,
        int filter, uint8_t* out) except +


def get_num_threads() -> int:
    """Threads the compositor uses (default: $CENDETECT_NUM_THREADS, else the core count)."""
    return c_get_num_threads()


def set_num_threads(int n) -> None:
    """Sets the compositor's thread count; n <= 0 restores the default."""
    c_set_num_threads(n)


cdef ImageView _view(uint8_t[:, :, :] image) except *:
    cdef ImageView v
    if image.strides[2] != 1 or image.strides[1] != image.shape[2]:
        raise ValueError("image pixels must be packed (channel stride 1, pixel stride channels)")
    v.height = image.shape[0]
    v.width = image.shape[1]
    v.channels = image.shape[2]
    v.row_stride = image.strides[0]
    v.data = NULL
    if v.height > 0 and v.width > 0 and v.channels > 0:
        v.data = &image[0, 0, 0]
    return v


cdef inline const float* _fptr3(const float[:, :, ::1] a) noexcept nogil:
    if a.shape[0] > 0 and a.shape[1] > 0 and a.shape[2] > 0:
        return &a[0, 0, 0]
    return NULL


cdef inline const uint8_t* _bptr(const uint8_t[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


def _check_n(int64_t n, object name, int64_t got):
    if got != n:
        raise ValueError(f"{name} has {got} rows, expected {n}")


def paste_windows(const float[:, ::1] boxes, int64_t height, int64_t width,
                  int64_t[:, ::1] windows) -> None:
    """Fills windows [N, 4] with each box's evaluation window (x0, y0, x1, y1) in the image."""
    cdef int64_t n = boxes.shape[0]
    if boxes.shape[1] != 4 or windows.shape[1] != 4:
        raise ValueError("boxes and windows must be [N, 4]")
    _check_n(n, "windows", windows.shape[0])
    if n == 0:
        return
    with nogil:
        c_paste_windows(&boxes[0, 0], n, height, width, &windows[0, 0])


def paste_masks(const float[:, :, ::1] masks, const float[:, ::1] boxes,
                const int64_t[:, ::1] windows, const int64_t[::1] offsets, int64_t height,
                int64_t width, float threshold, uint8_t[::1] out) -> None:
    """Writes every instance's window bitmap (0/1) into out[offsets[i]:offsets[i + 1]]."""
    cdef int64_t n = masks.shape[0]
    _check_n(n, "boxes", boxes.shape[0])
    _check_n(n, "windows", windows.shape[0])
    _check_n(n + 1, "offsets", offsets.shape[0])
    if n == 0:
        return
    if boxes.shape[1] != 4 or windows.shape[1] != 4:
        raise ValueError("boxes and windows must be [N, 4]")
    if offsets[n] > out.shape[0]:
        raise ValueError("out is smaller than the bitmaps")
    cdef uint8_t* dst = &out[0] if out.shape[0] > 0 else NULL
    with nogil:
        c_paste_masks(_fptr3(masks), n, masks.shape[1], masks.shape[2], &boxes[0, 0],
                      &windows[0, 0], &offsets[0], height, width, threshold, dst)


def paste_legacy_windows(const float[:, ::1] boxes, int64_t mask_size, int64_t height,
                         int64_t width, int64_t[:, ::1] windows) -> None:
    """Fills windows [N, 4] with each instance's legacy-paste window (csrc/paste_legacy.h)."""
    cdef int64_t n = boxes.shape[0]
    if boxes.shape[1] != 4 or windows.shape[1] != 4:
        raise ValueError("boxes and windows must be [N, 4]")
    _check_n(n, "windows", windows.shape[0])
    if n == 0:
        return
    with nogil:
        c_paste_legacy_windows(&boxes[0, 0], n, mask_size, height, width, &windows[0, 0])


def paste_legacy_masks(const float[:, :, ::1] masks, const float[:, ::1] boxes,
                       const int64_t[:, ::1] windows, const int64_t[::1] offsets,
                       float threshold, uint8_t[::1] out) -> None:
    """maskrcnn-benchmark's paste of every instance into out[offsets[i]:offsets[i + 1]]."""
    cdef int64_t n = masks.shape[0]
    _check_n(n, "boxes", boxes.shape[0])
    _check_n(n, "windows", windows.shape[0])
    _check_n(n + 1, "offsets", offsets.shape[0])
    if n == 0:
        return
    if masks.shape[1] != masks.shape[2]:
        raise ValueError("the legacy paste takes square M x M masks")
    if offsets[n] > out.shape[0]:
        raise ValueError("out is smaller than the bitmaps")
    cdef uint8_t* dst = &out[0] if out.shape[0] > 0 else NULL
    with nogil:
        c_paste_legacy_masks(_fptr3(masks), n, masks.shape[1], &boxes[0, 0], &windows[0, 0],
                             &offsets[0], threshold, dst)


def paste_fill(const float[:, :, ::1] masks, const float[:, ::1] boxes,
               const int64_t[:, ::1] windows, float threshold, const uint8_t[:, ::1] colors,
               uint8_t[:, :, :] image) -> None:
    """Samples every mask and paints its selected pixels with colors[i], in one pass."""
    cdef int64_t n = masks.shape[0]
    cdef ImageView view = _view(image)
    _check_n(n, "boxes", boxes.shape[0])
    _check_n(n, "windows", windows.shape[0])
    _check_n(n, "colors", colors.shape[0])
    if n == 0:
        return
    if boxes.shape[1] != 4 or windows.shape[1] != 4:
        raise ValueError("boxes and windows must be [N, 4]")
    if colors.shape[1] != view.channels:
        raise ValueError(f"colors have {colors.shape[1]} channels, the image {view.channels}")
    with nogil:
        c_paste_fill(_fptr3(masks), n, masks.shape[1], masks.shape[2], &boxes[0, 0],
                     &windows[0, 0], threshold, &colors[0, 0], view)


def fill_bitmaps(const uint8_t[::1] bits, const int64_t[:, ::1] windows,
                 const int64_t[::1] offsets, const uint8_t[:, ::1] colors, int alpha,
                 uint8_t[:, :, :] image) -> None:
    """Paints (alpha 256) or blends (alpha < 256) colors[i] over instance i's selected pixels."""
    cdef int64_t n = windows.shape[0]
    cdef ImageView view = _view(image)
    _check_n(n + 1, "offsets", offsets.shape[0])
    _check_n(n, "colors", colors.shape[0])
    if n == 0:
        return
    if windows.shape[1] != 4:
        raise ValueError("windows must be [N, 4]")
    if colors.shape[1] != view.channels:
        raise ValueError(f"colors have {colors.shape[1]} channels, the image {view.channels}")
    if offsets[n] > bits.shape[0]:
        raise ValueError("bits is smaller than the offsets say")
    with nogil:
        c_fill_bitmaps(_bptr(bits), &windows[0, 0], &offsets[0], n, &colors[0, 0], alpha, view)


def copy_bitmaps(const uint8_t[::1] bits, const int64_t[:, ::1] windows,
                 const int64_t[::1] offsets, const uint8_t[:, :, :] src, int64_t src_x0,
                 int64_t src_y0, uint8_t[:, :, :] image) -> None:
    """Copies the selected pixels from src (placed at src_x0, src_y0) into the image."""
    cdef int64_t n = windows.shape[0]
    cdef ImageView view = _view(image)
    cdef const uint8_t* sp = NULL
    _check_n(n + 1, "offsets", offsets.shape[0])
    if n == 0:
        return
    if windows.shape[1] != 4:
        raise ValueError("windows must be [N, 4]")
    if src.shape[2] != view.channels or src.strides[2] != 1 or src.strides[1] != src.shape[2]:
        raise ValueError("src must have the image's channels, packed")
    if offsets[n] > bits.shape[0]:
        raise ValueError("bits is smaller than the offsets say")
    if src.shape[0] > 0 and src.shape[1] > 0:
        sp = &src[0, 0, 0]
    with nogil:
        c_copy_bitmaps(_bptr(bits), &windows[0, 0], &offsets[0], n, sp, src.shape[0],
                       src.shape[1], src.strides[0], src_x0, src_y0, view)


def png_filter_rows(const uint8_t[:, :, :] image, int filter, uint8_t[:, ::1] out) -> None:
    """PNG scanlines of image [H, W, C] (C 1, 3 or 4; BGR(A) swapped to RGB(A)) with one
    filter type (0-4) into out [H, 1 + W * C] (csrc/png_filter.h)."""
    cdef int64_t h = image.shape[0], w = image.shape[1], c = image.shape[2]
    if image.strides[2] != 1 or image.strides[1] != c:
        raise ValueError("image pixels must be packed (channel stride 1, pixel stride channels)")
    if out.shape[0] != h or out.shape[1] != 1 + w * c:
        raise ValueError(f"out must be [{h}, {1 + w * c}], got [{out.shape[0]}, {out.shape[1]}]")
    if h == 0 or w == 0:
        return
    with nogil:
        c_png_filter_rows(&image[0, 0, 0], h, w, c, image.strides[0], filter, &out[0, 0])


def refine_instances(const uint8_t[:, :, :] image, const int64_t[:, ::1] windows,
                     const int64_t[::1] offsets, const uint8_t[::1] bits, const uint8_t[::1] kinds,
                     dict params, dict mosaic_params):
    """Refinement of the instances with kinds[i] 1 (bar) or 2 (mosaic) (csrc/refine.h);
    returns (windows [n, 4], offsets [n + 1], bits, changed [n] uint8) as new numpy arrays."""
    cdef int64_t n = windows.shape[0]
    cdef BarRefineParams p
    cdef MosaicRefineParams mp
    cdef vector[int64_t] nw, no
    cdef vector[uint8_t] nb
    _check_n(n + 1, "offsets", offsets.shape[0])
    _check_n(n, "kinds", kinds.shape[0])
    if image.shape[2] != 3 or image.strides[2] != 1 or image.strides[1] != 3:
        raise ValueError("image must be uint8 [H, W, 3] with packed pixels")
    if n > 0 and windows.shape[1] != 4:
        raise ValueError("windows must be [N, 4]")
    p.band_frac = params["band_frac"]
    p.band_min = params["band_min"]
    p.band_max = params["band_max"]
    p.core_frac = params["core_frac"]
    p.tol_scale = params["tol_scale"]
    p.tol_offset = params["tol_offset"]
    p.tol_min = params["tol_min"]
    p.tol_max = params["tol_max"]
    p.max_spread = params["max_spread"]
    p.min_area = params["min_area"]
    p.min_ratio = params["min_ratio"]
    p.max_ratio = params["max_ratio"]
    p.edge_rule = params["edge_rule"]
    p.rim_max = params["rim_max"]
    p.clip = params["clip"]
    for key in ("band_frac", "core_frac", "search_min", "min_period", "min_contrast", "seam",
                "tol_scale", "tol_offset", "tol_min", "tol_max", "max_spread", "whole_frac",
                "cover", "cut_frac", "min_ratio", "max_ratio", "band_min", "band_max", "min_area",
                "min_core", "max_candidates"):
        if key not in mosaic_params:
            raise KeyError(f"mosaic_params lacks {key!r}")
    mp.band_frac = mosaic_params["band_frac"]
    mp.band_min = mosaic_params["band_min"]
    mp.band_max = mosaic_params["band_max"]
    mp.core_frac = mosaic_params["core_frac"]
    mp.min_area = mosaic_params["min_area"]
    mp.min_core = mosaic_params["min_core"]
    mp.search_min = mosaic_params["search_min"]
    mp.min_period = mosaic_params["min_period"]
    mp.min_contrast = mosaic_params["min_contrast"]
    mp.max_candidates = mosaic_params["max_candidates"]
    mp.seam = mosaic_params["seam"]
    mp.tol_scale = mosaic_params["tol_scale"]
    mp.tol_offset = mosaic_params["tol_offset"]
    mp.tol_min = mosaic_params["tol_min"]
    mp.tol_max = mosaic_params["tol_max"]
    mp.max_spread = mosaic_params["max_spread"]
    mp.whole_frac = mosaic_params["whole_frac"]
    mp.cover = mosaic_params["cover"]
    mp.cut_frac = mosaic_params["cut_frac"]
    mp.min_ratio = mosaic_params["min_ratio"]
    mp.max_ratio = mosaic_params["max_ratio"]
    changed = np.zeros(n, np.uint8)
    cdef uint8_t[::1] ch = changed
    cdef const uint8_t* img = &image[0, 0, 0] if image.shape[0] > 0 and image.shape[1] > 0 else NULL
    cdef const uint8_t* bp = &bits[0] if bits.shape[0] > 0 else NULL
    if n == 0:
        return (np.zeros((0, 4), np.int64), np.zeros(1, np.int64), np.zeros(0, np.uint8), changed)
    with nogil:
        c_refine_instances(img, image.shape[0], image.shape[1], image.strides[0],
                           &windows[0, 0], &offsets[0], bp, bits.shape[0], n, &kinds[0], p, mp,
                           nw, no, nb, &ch[0])
    out_w = np.empty((n, 4), np.int64)
    out_o = np.empty(n + 1, np.int64)
    out_b = np.empty(nb.size(), np.uint8)
    cdef int64_t[:, ::1] ow = out_w
    cdef int64_t[::1] oo = out_o
    cdef uint8_t[::1] ob = out_b
    memcpy(&ow[0, 0], nw.data(), 4 * n * sizeof(int64_t))
    memcpy(&oo[0], no.data(), (n + 1) * sizeof(int64_t))
    if nb.size() > 0:
        memcpy(&ob[0], nb.data(), nb.size())
    return out_w, out_o, out_b, changed
