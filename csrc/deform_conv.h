// Deformable im2col (CPU) for DCNv1, with mmcv.ops.DeformConv2d semantics.
//
// The dense part of a deformable convolution (weights x columns) is a plain matrix product and is
// done by the caller (torch.matmul, cendetect/ops/deform_conv_op.py); this kernel fills the
// columns, which is the irregular part.
//
// Sampling model: output pixel (ho, wo), kernel tap (i, j) of deformable group d reads the input
// at the continuous point
//   y = (ho * stride_h - pad_h + i * dilation_h) + offset[b, d*2*kh*kw + 2*(i*kw + j),     ho, wo]
//   x = (wo * stride_w - pad_w + j * dilation_w) + offset[b, d*2*kh*kw + 2*(i*kw + j) + 1, ho, wo]
// (the integer part converted to T, then the offset added, as mmcv) where input[b, c, y, x] sits
// at integer (x, y). A sample with y <= -1, y >= H, x <= -1 or x >= W (or NaN) is 0; otherwise it
// is the bilinear blend w1*v1 + w2*v2 + w3*v3 + w4*v4 of its four neighbours (in that order,
// w1 = (1-ly)*(1-lx) top-left ... w4 = ly*lx bottom-right), neighbours outside the image reading
// 0. Channel c belongs to deformable group c / (channels / deform_groups).
#pragma once

#include <cstdint>

namespace cendetect {

// input: [n_images, channels, height, width] contiguous (the images of this chunk);
// offset: [n_images, deform_groups * 2 * kernel_h * kernel_w, out_h, out_w] contiguous;
// columns: [n_images, channels * kernel_h * kernel_w, row_end - row_begin, out_w], fully written:
// row (c * kernel_h + i) * kernel_w + j holds tap (i, j) of channel c for output rows
// [row_begin, row_end). channels must be a multiple of deform_groups.
void deform_im2col(const float* input, const float* offset, int64_t n_images, int64_t channels,
                   int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w,
                   int64_t pad_h, int64_t pad_w, int64_t stride_h, int64_t stride_w,
                   int64_t dilation_h, int64_t dilation_w, int64_t deform_groups, int64_t out_h,
                   int64_t out_w, int64_t row_begin, int64_t row_end, float* columns);
void deform_im2col(const double* input, const double* offset, int64_t n_images,
                   int64_t channels, int64_t height, int64_t width, int64_t kernel_h,
                   int64_t kernel_w, int64_t pad_h, int64_t pad_w, int64_t stride_h,
                   int64_t stride_w, int64_t dilation_h, int64_t dilation_w,
                   int64_t deform_groups, int64_t out_h, int64_t out_w, int64_t row_begin,
                   int64_t row_end, double* columns);

}  // namespace cendetect
