#include "paste_legacy.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "parallel.h"

namespace cendetect {
namespace {

// The expanded box of maskrcnn-benchmark's expand_boxes + .to(int32): float32 arithmetic,
// truncation toward zero.
void expanded_box(const float* b, int64_t mask_size, int32_t out[4]) {
  const float scale = static_cast<float>(static_cast<double>(mask_size + 2) / mask_size);
  float w_half = (b[2] - b[0]) * 0.5f;
  float h_half = (b[3] - b[1]) * 0.5f;
  const float x_c = (b[2] + b[0]) * 0.5f;
  const float y_c = (b[3] + b[1]) * 0.5f;
  w_half *= scale;
  h_half *= scale;
  out[0] = static_cast<int32_t>(x_c - w_half);
  out[1] = static_cast<int32_t>(y_c - h_half);
  out[2] = static_cast<int32_t>(x_c + w_half);
  out[3] = static_cast<int32_t>(y_c + h_half);
}

// torch's linear interpolation taps along one axis (HelperInterpLinear,
// compute_source_index_and_lambda, align_corners=False, float32).
void taps(int64_t in, int64_t out, std::vector<int64_t>& i0, std::vector<int64_t>& i1,
          std::vector<float>& w0, std::vector<float>& w1) {
  i0.resize(out);
  i1.resize(out);
  w0.resize(out);
  w1.resize(out);
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  for (int64_t o = 0; o < out; ++o) {
    if (out == in) {
      i0[o] = i1[o] = o;
      w0[o] = 1.0f;
      w1[o] = 0.0f;
      continue;
    }
    float real = scale * (static_cast<float>(o) + 0.5f) - 0.5f;
    if (real < 0.0f) real = 0.0f;
    const int64_t idx = std::min(static_cast<int64_t>(std::floor(real)), in - 1);
    const float lambda = std::min(std::max(real - static_cast<float>(idx), 0.0f), 1.0f);
    i0[o] = idx;
    i1[o] = idx + (idx < in - 1 ? 1 : 0);
    w1[o] = lambda;
    w0[o] = 1.0f - lambda;
  }
}

}  // namespace

void paste_legacy_windows(const float* boxes, int64_t n, int64_t mask_size, int64_t height,
                          int64_t width, int64_t* windows) {
  for (int64_t i = 0; i < n; ++i) {
    int32_t b[4];
    expanded_box(boxes + 4 * i, mask_size, b);
    int64_t* win = windows + 4 * i;
    win[0] = std::max<int64_t>(b[0], 0);
    win[1] = std::max<int64_t>(b[1], 0);
    win[2] = std::min<int64_t>(static_cast<int64_t>(b[2]) + 1, width);
    win[3] = std::min<int64_t>(static_cast<int64_t>(b[3]) + 1, height);
    if (win[2] <= win[0] || win[3] <= win[1]) {  // nothing of the box inside the image
      win[0] = win[1] = win[2] = win[3] = 0;
    }
  }
}

void paste_legacy_masks(const float* masks, int64_t n, int64_t mask_size, const float* boxes,
                        const int64_t* windows, const int64_t* offsets, float threshold,
                        uint8_t* out) {
  const int64_t p = mask_size + 2;  // the padded map
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> padded(static_cast<size_t>(p * p));
    std::vector<int64_t> yi0, yi1, xi0, xi1;
    std::vector<float> yw0, yw1, xw0, xw1;
    for (int64_t i = begin; i < end; ++i) {
      const int64_t* win = windows + 4 * i;
      if (win[2] <= win[0] || win[3] <= win[1]) continue;
      int32_t b[4];
      expanded_box(boxes + 4 * i, mask_size, b);
      const int64_t w = std::max<int64_t>(static_cast<int64_t>(b[2]) - b[0] + 1, 1);
      const int64_t h = std::max<int64_t>(static_cast<int64_t>(b[3]) - b[1] + 1, 1);
      std::fill(padded.begin(), padded.end(), 0.0f);
      const float* m = masks + i * mask_size * mask_size;
      for (int64_t y = 0; y < mask_size; ++y) {
        std::copy(m + y * mask_size, m + (y + 1) * mask_size, padded.data() + (y + 1) * p + 1);
      }
      taps(p, h, yi0, yi1, yw0, yw1);
      taps(p, w, xi0, xi1, xw0, xw1);
      uint8_t* dst = out + offsets[i];
      const int64_t ww = win[2] - win[0];
      for (int64_t y = win[1]; y < win[3]; ++y) {
        const int64_t oy = y - b[1];  // row of the resized map
        const float* r0 = padded.data() + yi0[oy] * p;
        const float* r1 = padded.data() + yi1[oy] * p;
        const float h0 = yw0[oy], h1 = yw1[oy];
        uint8_t* row = dst + (y - win[1]) * ww;
        for (int64_t x = win[0]; x < win[2]; ++x) {
          const int64_t ox = x - b[0];
          // torch's basic_loop order: the inner (width) sums first, then the outer (height)
          const float t0 = r0[xi0[ox]] * xw0[ox] + r0[xi1[ox]] * xw1[ox];
          const float t1 = r1[xi0[ox]] * xw0[ox] + r1[xi1[ox]] * xw1[ox];
          const float v = t0 * h0 + t1 * h1;
          row[x - win[0]] = v > threshold;
        }
      }
    }
  });
}

}  // namespace cendetect
