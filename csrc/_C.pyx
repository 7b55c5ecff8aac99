# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""cendetect's compiled CPU kernels (C++ in csrc/, bound here with Cython).

Inputs are C-contiguous numpy arrays (torch CPU tensors pass as zero-copy ``.numpy()`` views);
the GIL is released around every kernel. Not meant to be called directly: use cendetect.ops,
which validates inputs and registers the torch custom ops.
"""

from libc.stdint cimport int64_t, uint16_t
from libcpp cimport bool as cbool
from libcpp.vector cimport vector

cdef extern from "parallel.h" namespace "cendetect" nogil:
    int c_get_num_threads "cendetect::get_num_threads"()
    void c_set_num_threads "cendetect::set_num_threads"(int n)

cdef extern from "nms.h" namespace "cendetect" nogil:
    int64_t c_nms "cendetect::nms"(
        const float* boxes, const float* scores, int64_t n, double thr, int64_t* keep) except +
    int64_t c_nms "cendetect::nms"(
        const double* boxes, const double* scores, int64_t n, double thr, int64_t* keep) except +
    int64_t c_batched_nms "cendetect::batched_nms"(
        const float* boxes, const float* scores, const int64_t* idxs, int64_t n, double thr,
        int64_t* keep) except +
    int64_t c_batched_nms "cendetect::batched_nms"(
        const double* boxes, const double* scores, const int64_t* idxs, int64_t n, double thr,
        int64_t* keep) except +

cdef extern from "roi_align.h" namespace "cendetect" nogil:
    int64_t c_roi_align "cendetect::roi_align"(
        const float* input, int64_t batch, int64_t channels, int64_t height, int64_t width,
        const float* rois, int64_t n_rois, int64_t pooled_h, int64_t pooled_w,
        double spatial_scale, int64_t sampling_ratio, cbool aligned, float* output) except +
    int64_t c_roi_align "cendetect::roi_align"(
        const double* input, int64_t batch, int64_t channels, int64_t height, int64_t width,
        const double* rois, int64_t n_rois, int64_t pooled_h, int64_t pooled_w,
        double spatial_scale, int64_t sampling_ratio, cbool aligned, double* output) except +
    int64_t c_multi_level_roi_align "cendetect::multi_level_roi_align"(
        const float* const* feats, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const float* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, float* output) except +
    int64_t c_multi_level_roi_align "cendetect::multi_level_roi_align"(
        const double* const* feats, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const double* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, double* output) except +
    int64_t c_multi_level_roi_align_nhwc "cendetect::multi_level_roi_align_nhwc"(
        const float* const* feats, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const float* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, float* output) except +
    int64_t c_multi_level_roi_align_nhwc "cendetect::multi_level_roi_align_nhwc"(
        const double* const* feats, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const double* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, double* output) except +
    int64_t c_multi_level_roi_align_nhwc "cendetect::multi_level_roi_align_nhwc"(
        const uint16_t* const* feats, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const float* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, float* output) except +
    int64_t c_multi_level_roi_align_nhwc_backward "cendetect::multi_level_roi_align_nhwc_backward"(
        const float* grad_out, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const float* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, float* const* grad_feats) except +
    int64_t c_multi_level_roi_align_nhwc_backward "cendetect::multi_level_roi_align_nhwc_backward"(
        const double* grad_out, const int64_t* heights, const int64_t* widths,
        const double* spatial_scales, int64_t levels, int64_t batch, int64_t channels,
        const double* rois, int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
        cbool aligned, int64_t finest_scale, double* const* grad_feats) except +

cdef extern from "deform_conv.h" namespace "cendetect" nogil:
    void c_deform_im2col "cendetect::deform_im2col"(
        const float* input, const float* offset, int64_t n_images, int64_t channels,
        int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
        int64_t pad_w, int64_t stride_h, int64_t stride_w, int64_t dilation_h,
        int64_t dilation_w, int64_t deform_groups, int64_t out_h, int64_t out_w,
        int64_t row_begin, int64_t row_end, float* columns) except +
    void c_deform_im2col "cendetect::deform_im2col"(
        const double* input, const double* offset, int64_t n_images, int64_t channels,
        int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w, int64_t pad_h,
        int64_t pad_w, int64_t stride_h, int64_t stride_w, int64_t dilation_h,
        int64_t dilation_w, int64_t deform_groups, int64_t out_h, int64_t out_w,
        int64_t row_begin, int64_t row_end, double* columns) except +

ctypedef fused real:
    float
    double


def get_num_threads() -> int:
    """Threads the kernels use (default: $CENDETECT_NUM_THREADS, else the core count)."""
    return c_get_num_threads()


def set_num_threads(int n) -> None:
    """Sets the kernels' thread count; n <= 0 restores the default."""
    c_set_num_threads(n)


def nms(const real[:, ::1] boxes, const real[::1] scores, double iou_threshold,
        int64_t[::1] keep) -> int:
    """Writes kept indices (decreasing score) into keep[:k]; returns k."""
    cdef int64_t n = boxes.shape[0]
    if n == 0:
        return 0
    with nogil:
        n = c_nms(&boxes[0, 0], &scores[0], n, iou_threshold, &keep[0])
    return n


def batched_nms(const real[:, ::1] boxes, const real[::1] scores, const int64_t[::1] idxs,
                double iou_threshold, int64_t[::1] keep) -> int:
    """Per-group nms; writes kept indices (decreasing score) into keep[:k]; returns k."""
    cdef int64_t n = boxes.shape[0]
    if n == 0:
        return 0
    with nogil:
        n = c_batched_nms(&boxes[0, 0], &scores[0], &idxs[0], n, iou_threshold, &keep[0])
    return n


def roi_align(const real[:, :, :, ::1] input, const real[:, ::1] rois, real[:, :, :, ::1] out,
              double spatial_scale, int64_t sampling_ratio, cbool aligned) -> int:
    """Fills out [K, C, h, w]; returns -1, or the index of a roi with a bad batch index."""
    cdef int64_t k = rois.shape[0]
    cdef const real* inp = NULL
    cdef int64_t bad
    if k == 0 or out.shape[1] == 0:
        return -1
    if input.shape[0] > 0 and input.shape[1] > 0 and input.shape[2] > 0 and input.shape[3] > 0:
        inp = &input[0, 0, 0, 0]
    with nogil:
        bad = c_roi_align(inp, input.shape[0], input.shape[1], input.shape[2], input.shape[3],
                          &rois[0, 0], k, out.shape[2], out.shape[3], spatial_scale,
                          sampling_ratio, aligned, &out[0, 0, 0, 0])
    return bad


cdef int64_t _level_shapes(list feats, list spatial_scales, int h_axis,
                           vector[int64_t]& heights, vector[int64_t]& widths,
                           vector[double]& scales) except? -1:
    """Appends each level's height (axis h_axis), width (the next axis) and scale; returns the
    batch size (0 with no levels)."""
    cdef int64_t batch = 0
    for level, feat in enumerate(feats):
        batch = feat.shape[0]
        heights.push_back(feat.shape[h_axis])
        widths.push_back(feat.shape[h_axis + 1])
        scales.push_back(spatial_scales[level])
    return batch


def multi_level_roi_align(list feats, const real[:, ::1] rois, real[:, :, :, ::1] out,
                          list spatial_scales, int64_t sampling_ratio, cbool aligned,
                          int64_t finest_scale) -> int:
    """Fills out [K, C, s, s] from the roi's FPN level; returns as roi_align."""
    cdef int64_t k = rois.shape[0]
    cdef vector[const real*] ptrs
    cdef vector[int64_t] heights, widths
    cdef vector[double] scales
    cdef const real[:, :, :, ::1] feat
    cdef int64_t levels = len(feats)
    cdef int64_t batch, bad
    if k == 0 or out.shape[1] == 0:
        return -1
    batch = _level_shapes(feats, spatial_scales, 2, heights, widths, scales)
    for f in feats:
        feat = f
        ptrs.push_back(&feat[0, 0, 0, 0] if feat.size > 0 else NULL)
    # The list keeps every array alive; `feat` only borrowed their buffers.
    with nogil:
        bad = c_multi_level_roi_align(
            ptrs.data(), heights.data(), widths.data(), scales.data(), levels, batch,
            out.shape[1], &rois[0, 0], k, out.shape[2], sampling_ratio, aligned, finest_scale,
            &out[0, 0, 0, 0])
    return bad


def multi_level_roi_align_nhwc(list feats, const real[:, ::1] rois, real[:, :, :, ::1] out,
                               list spatial_scales, int64_t sampling_ratio, cbool aligned,
                               int64_t finest_scale) -> int:
    """Channels-last multi_level_roi_align: feats [B, H, W, C], out [K, s, s, C]."""
    cdef int64_t k = rois.shape[0]
    cdef vector[const real*] ptrs
    cdef vector[int64_t] heights, widths
    cdef vector[double] scales
    cdef const real[:, :, :, ::1] feat
    cdef int64_t levels = len(feats)
    cdef int64_t batch, bad
    if k == 0 or out.shape[3] == 0:
        return -1
    batch = _level_shapes(feats, spatial_scales, 1, heights, widths, scales)
    for f in feats:
        feat = f
        ptrs.push_back(&feat[0, 0, 0, 0] if feat.size > 0 else NULL)
    with nogil:
        bad = c_multi_level_roi_align_nhwc(
            ptrs.data(), heights.data(), widths.data(), scales.data(), levels, batch,
            out.shape[3], &rois[0, 0], k, out.shape[1], sampling_ratio, aligned, finest_scale,
            &out[0, 0, 0, 0])
    return bad


def multi_level_roi_align_nhwc_bf16(list feats, const float[:, ::1] rois,
                                    float[:, :, :, ::1] out, list spatial_scales,
                                    int64_t sampling_ratio, cbool aligned,
                                    int64_t finest_scale) -> int:
    """As multi_level_roi_align_nhwc for bfloat16 features passed as their uint16 bits."""
    cdef int64_t k = rois.shape[0]
    cdef vector[const uint16_t*] ptrs
    cdef vector[int64_t] heights, widths
    cdef vector[double] scales
    cdef const uint16_t[:, :, :, ::1] feat
    cdef int64_t levels = len(feats)
    cdef int64_t batch, bad
    if k == 0 or out.shape[3] == 0:
        return -1
    batch = _level_shapes(feats, spatial_scales, 1, heights, widths, scales)
    for f in feats:
        feat = f
        ptrs.push_back(&feat[0, 0, 0, 0] if feat.size > 0 else NULL)
    with nogil:
        bad = c_multi_level_roi_align_nhwc(
            ptrs.data(), heights.data(), widths.data(), scales.data(), levels, batch,
            out.shape[3], &rois[0, 0], k, out.shape[1], sampling_ratio, aligned, finest_scale,
            &out[0, 0, 0, 0])
    return bad


def multi_level_roi_align_nhwc_backward(const real[:, :, :, ::1] grad_out,
                                        const real[:, ::1] rois, list grad_feats,
                                        list spatial_scales, int64_t sampling_ratio,
                                        cbool aligned, int64_t finest_scale) -> int:
    """Feature gradient of multi_level_roi_align_nhwc: grad_out [K, s, s, C] is spread onto
    grad_feats (each [B, H, W, C], overwritten); returns as roi_align."""
    cdef int64_t k = rois.shape[0]
    cdef vector[real*] ptrs
    cdef vector[int64_t] heights, widths
    cdef vector[double] scales
    cdef real[:, :, :, ::1] feat
    cdef int64_t levels = len(grad_feats)
    cdef int64_t batch, bad
    batch = _level_shapes(grad_feats, spatial_scales, 1, heights, widths, scales)
    for f in grad_feats:
        feat = f
        ptrs.push_back(&feat[0, 0, 0, 0] if feat.size > 0 else NULL)
    if k == 0 or grad_out.shape[3] == 0:
        for f in grad_feats:
            f[...] = 0
        return -1
    with nogil:
        bad = c_multi_level_roi_align_nhwc_backward(
            &grad_out[0, 0, 0, 0], heights.data(), widths.data(), scales.data(), levels, batch,
            grad_out.shape[3], &rois[0, 0], k, grad_out.shape[1], sampling_ratio, aligned,
            finest_scale, ptrs.data())
    return bad

def deform_im2col(const real[:, :, :, ::1] input, const real[:, :, :, ::1] offset,
                  real[:, :, :, ::1] columns, int64_t kernel_h, int64_t kernel_w,
                  int64_t pad_h, int64_t pad_w, int64_t stride_h, int64_t stride_w,
                  int64_t dilation_h, int64_t dilation_w, int64_t deform_groups,
                  int64_t row_begin) -> None:
    """Fills columns [B, C * kh * kw, rows, Wo] for output rows [row_begin, row_begin + rows).

    input [B, C, H, W]; offset [B, deform_groups * 2 * kh * kw, Ho, Wo] (csrc/deform_conv.h).
    """
    cdef int64_t n = input.shape[0]
    cdef int64_t rows = columns.shape[2]
    cdef const real* inp = NULL
    # The kernel trusts these sizes; a mismatch would read or write out of bounds.
    if (deform_groups <= 0 or input.shape[1] % deform_groups != 0
            or offset.shape[0] != n or offset.shape[1] != deform_groups * 2 * kernel_h * kernel_w
            or columns.shape[0] != n or columns.shape[1] != input.shape[1] * kernel_h * kernel_w
            or columns.shape[3] != offset.shape[3] or row_begin < 0
            or row_begin + rows > offset.shape[2]):
        raise ValueError("deform_im2col: inconsistent input, offset and columns shapes")
    if n == 0 or columns.shape[1] == 0 or rows == 0 or columns.shape[3] == 0:
        return
    if input.shape[1] > 0 and input.shape[2] > 0 and input.shape[3] > 0:
        inp = &input[0, 0, 0, 0]
    with nogil:
        c_deform_im2col(inp, &offset[0, 0, 0, 0], n, input.shape[1], input.shape[2],
                        input.shape[3], kernel_h, kernel_w, pad_h, pad_w, stride_h, stride_w,
                        dilation_h, dilation_w, deform_groups, offset.shape[2], offset.shape[3],
                        row_begin, row_begin + rows, &columns[0, 0, 0, 0])
