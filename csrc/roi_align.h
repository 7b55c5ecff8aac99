// RoIAlign, average pooling (CPU), with mmcv.ops.RoIAlign semantics.
//
// Pixel model: feature value f[y][x] sits at continuous coordinate (x, y) (pixel centres at
// integers after the aligned shift). For a roi (b, x1, y1, x2, y2) in image pixels:
//   start = x1 * spatial_scale - offset, end = x2 * spatial_scale - offset,
//   offset = 0.5 when aligned, else 0 (and then width/height are clamped to at least 1);
//   each of the pooled_h x pooled_w bins averages grid_h x grid_w bilinear samples at the
//   sub-bin centres, grid = sampling_ratio if > 0 else ceil(roi_size / pooled_size);
//   a sample with y < -1, y > H, x < -1 or x > W contributes 0 (but is still counted);
//   samples in [-1, 0] are clamped to 0 and those past the last pixel to the last pixel.
#pragma once

#include <cstdint>

namespace cendetect {

// input: [batch, channels, height, width] contiguous; rois: [n_rois, 5] contiguous;
// output: [n_rois, channels, pooled_h, pooled_w], fully written.
// Returns -1 on success, else the index of the first roi whose batch index (rois[k][0],
// truncated toward zero) is not in [0, batch); the output is then left unwritten.
int64_t roi_align(const float* input, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, const float* rois, int64_t n_rois, int64_t pooled_h,
                  int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, bool aligned,
                  float* output);
int64_t roi_align(const double* input, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, const double* rois, int64_t n_rois, int64_t pooled_h,
                  int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, bool aligned,
                  double* output);

// mmdetection SingleRoIExtractor: each roi goes to level
//   floor(log2(sqrt((x2 - x1) * (y2 - y1)) / finest_scale + 1e-6)) clamped to [0, levels - 1]
// and is pooled there with that level's scale. With more than one level, a roi whose level is
// NaN (negative area) gets zeros, as in mmdetection. feats[l]: [batch, channels, heights[l],
// widths[l]] contiguous (may be null when empty). output: [n_rois, channels, size, size].
// Returns as roi_align.
int64_t multi_level_roi_align(const float* const* feats, const int64_t* heights,
                              const int64_t* widths, const double* spatial_scales,
                              int64_t levels, int64_t batch, int64_t channels, const float* rois,
                              int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
                              bool aligned, int64_t finest_scale, float* output);
int64_t multi_level_roi_align(const double* const* feats, const int64_t* heights,
                              const int64_t* widths, const double* spatial_scales,
                              int64_t levels, int64_t batch, int64_t channels,
                              const double* rois, int64_t n_rois, int64_t output_size,
                              int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                              double* output);

// Channels-last variant of multi_level_roi_align: feats[l] is [batch, heights[l], widths[l],
// channels] contiguous (NHWC) and output is [n_rois, size, size, channels]. Same pixel model,
// level mapping and return value; per channel the arithmetic is identical, so the results equal
// the NCHW kernel's bit for bit. The uint16_t overload reads bfloat16 features (their raw bits)
// and pools in float32.
int64_t multi_level_roi_align_nhwc(const float* const* feats, const int64_t* heights,
                                   const int64_t* widths, const double* spatial_scales,
                                   int64_t levels, int64_t batch, int64_t channels,
                                   const float* rois, int64_t n_rois, int64_t output_size,
                                   int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                                   float* output);
int64_t multi_level_roi_align_nhwc(const double* const* feats, const int64_t* heights,
                                   const int64_t* widths, const double* spatial_scales,
                                   int64_t levels, int64_t batch, int64_t channels,
                                   const double* rois, int64_t n_rois, int64_t output_size,
                                   int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                                   double* output);
int64_t multi_level_roi_align_nhwc(const uint16_t* const* feats, const int64_t* heights,
                                   const int64_t* widths, const double* spatial_scales,
                                   int64_t levels, int64_t batch, int64_t channels,
                                   const float* rois, int64_t n_rois, int64_t output_size,
                                   int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                                   float* output);

// Backward of multi_level_roi_align_nhwc with respect to the features: RoIAlign is linear in its
// features, so each output value's gradient is spread back onto the four bilinear taps of every
// sample of its bin with the forward's weights (w / count). grad_out: [n_rois, size, size,
// channels]; grad_feats[l]: [batch, heights[l], widths[l], channels] (NHWC), fully written
// (zeroed first, then accumulated; null for an empty level). Rois get no gradient (as mmcv).
// Threads own disjoint channel blocks, so the scatter needs no atomics and the result does not
// depend on the number of threads: every feature gradient is summed in roi order, then bin, then
// sample order. Returns as roi_align.
int64_t multi_level_roi_align_nhwc_backward(const float* grad_out, const int64_t* heights,
                                            const int64_t* widths, const double* spatial_scales,
                                            int64_t levels, int64_t batch, int64_t channels,
                                            const float* rois, int64_t n_rois,
                                            int64_t output_size, int64_t sampling_ratio,
                                            bool aligned, int64_t finest_scale,
                                            float* const* grad_feats);
int64_t multi_level_roi_align_nhwc_backward(const double* grad_out, const int64_t* heights,
                                            const int64_t* widths, const double* spatial_scales,
                                            int64_t levels, int64_t batch, int64_t channels,
                                            const double* rois, int64_t n_rois,
                                            int64_t output_size, int64_t sampling_ratio,
                                            bool aligned, int64_t finest_scale,
                                            double* const* grad_feats);

}  // namespace cendetect
