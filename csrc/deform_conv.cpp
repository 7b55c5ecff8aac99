#include "deform_conv.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"

namespace cendetect {
namespace {

// Bilinear samples a thread chunk should hold: ~32k samples take tens of microseconds, more
// than starting a std::thread, so smaller jobs stay on the calling thread.
constexpr int64_t kMinSamplesPerChunk = int64_t{1} << 15;

// Where one sample of one output pixel falls: four neighbour indices into an input plane (-1 for
// a neighbour outside the image) and their bilinear weights. Computed once per deformable group
// and reused for every channel of the group.
template <typename T>
struct Sample {
  int64_t idx[4];
  T w[4];
};

template <typename T>
Sample<T> locate(T y, T x, int64_t height, int64_t width) {
  Sample<T> s{{-1, -1, -1, -1}, {T(0), T(0), T(0), T(0)}};
  // mmcv: a sample is 0 unless -1 < y < H and -1 < x < W (NaN fails every test).
  if (!(y > T(-1) && x > T(-1) && y < static_cast<T>(height) && x < static_cast<T>(width))) {
    return s;
  }
  const T y_floor = std::floor(y);
  const T x_floor = std::floor(x);
  const int64_t y_lo = static_cast<int64_t>(y_floor);
  const int64_t x_lo = static_cast<int64_t>(x_floor);
  const int64_t y_hi = y_lo + 1;
  const int64_t x_hi = x_lo + 1;
  // The same expressions, in the same precision, as mmcv's deformable_im2col_bilinear.
  const T ly = y - y_floor;
  const T lx = x - x_floor;
  const T hy = T(1) - ly;
  const T hx = T(1) - lx;
  s.w[0] = hy * hx;
  s.w[1] = hy * lx;
  s.w[2] = ly * hx;
  s.w[3] = ly * lx;
  const bool top = y_lo >= 0, bottom = y_hi <= height - 1;
  const bool left = x_lo >= 0, right = x_hi <= width - 1;
  if (top && left) s.idx[0] = y_lo * width + x_lo;
  if (top && right) s.idx[1] = y_lo * width + x_hi;
  if (bottom && left) s.idx[2] = y_hi * width + x_lo;
  if (bottom && right) s.idx[3] = y_hi * width + x_hi;
  return s;
}

template <typename T>
inline T corner(const T* plane, int64_t idx) {
  return idx >= 0 ? plane[idx] : T(0);
}

template <typename T>
void deform_im2col_impl(const T* input, const T* offset, int64_t n_images, int64_t channels,
                        int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w,
                        int64_t pad_h, int64_t pad_w, int64_t stride_h, int64_t stride_w,
                        int64_t dilation_h, int64_t dilation_w, int64_t deform_groups,
                        int64_t out_h, int64_t out_w, int64_t row_begin, int64_t row_end,
                        T* columns) {
  const int64_t rows = row_end - row_begin;
  const int64_t taps = kernel_h * kernel_w;
  const int64_t group_channels = channels / deform_groups;
  if (n_images <= 0 || channels <= 0 || rows <= 0 || out_w <= 0) return;
  const int64_t plane = height * width;
  const int64_t out_plane = out_h * out_w;
  const int64_t col_plane = rows * out_w;
  // One task: image b, deformable group d, tap t, output row r; it writes that row of the
  // columns for every channel of group d.
  const int64_t n_tasks = n_images * deform_groups * taps * rows;
  const int64_t per_task = std::max<int64_t>(group_channels * out_w, 1);
  const int64_t grain = std::max<int64_t>(kMinSamplesPerChunk / per_task, 1);
  parallel_for(n_tasks, grain, [&](int64_t begin, int64_t end) {
    std::vector<Sample<T>> samples(static_cast<size_t>(out_w));
    for (int64_t task = begin; task < end; ++task) {
      int64_t rest = task;
      const int64_t r = rest % rows;
      rest /= rows;
      const int64_t t = rest % taps;
      rest /= taps;
      const int64_t d = rest % deform_groups;
      const int64_t b = rest / deform_groups;
      const int64_t ho = row_begin + r;
      const int64_t i = t / kernel_w;
      const int64_t j = t % kernel_w;
      const T* off_y =
          offset + ((b * deform_groups + d) * 2 * taps + 2 * t) * out_plane + ho * out_w;
      const T* off_x = off_y + out_plane;
      // Integer grid position first, converted once, then the offset added (as mmcv).
      const T base_y = static_cast<T>(ho * stride_h - pad_h + i * dilation_h);
      for (int64_t wo = 0; wo < out_w; ++wo) {
        const T base_x = static_cast<T>(wo * stride_w - pad_w + j * dilation_w);
        samples[wo] = locate(base_y + off_y[wo], base_x + off_x[wo], height, width);
      }
      for (int64_t cg = 0; cg < group_channels; ++cg) {
        const int64_t c = d * group_channels + cg;
        const T* src = input + (b * channels + c) * plane;
        T* dst = columns + ((b * channels + c) * taps + t) * col_plane + r * out_w;
        for (int64_t wo = 0; wo < out_w; ++wo) {
          const Sample<T>& s = samples[wo];
          dst[wo] = s.w[0] * corner(src, s.idx[0]) + s.w[1] * corner(src, s.idx[1]) +
                    s.w[2] * corner(src, s.idx[2]) + s.w[3] * corner(src, s.idx[3]);
        }
      }
    }
  });
}

}  // namespace

void deform_im2col(const float* input, const float* offset, int64_t n_images, int64_t channels,
                   int64_t height, int64_t width, int64_t kernel_h, int64_t kernel_w,
                   int64_t pad_h, int64_t pad_w, int64_t stride_h, int64_t stride_w,
                   int64_t dilation_h, int64_t dilation_w, int64_t deform_groups, int64_t out_h,
                   int64_t out_w, int64_t row_begin, int64_t row_end, float* columns) {
  deform_im2col_impl(input, offset, n_images, channels, height, width, kernel_h, kernel_w, pad_h,
                     pad_w, stride_h, stride_w, dilation_h, dilation_w, deform_groups, out_h,
                     out_w, row_begin, row_end, columns);
}

void deform_im2col(const double* input, const double* offset, int64_t n_images,
                   int64_t channels, int64_t height, int64_t width, int64_t kernel_h,
                   int64_t kernel_w, int64_t pad_h, int64_t pad_w, int64_t stride_h,
                   int64_t stride_w, int64_t dilation_h, int64_t dilation_w,
                   int64_t deform_groups, int64_t out_h, int64_t out_w, int64_t row_begin,
                   int64_t row_end, double* columns) {
  deform_im2col_impl(input, offset, n_images, channels, height, width, kernel_h, kernel_w, pad_h,
                     pad_w, stride_h, stride_w, dilation_h, dilation_w, deform_groups, out_h,
                     out_w, row_begin, row_end, columns);
}

}  // namespace cendetect
