#include "png_filter.h"

#include <cstdlib>
#include <stdexcept>

namespace cendetect {

namespace {

inline uint8_t paeth(int a, int b, int c) {
  const int p = a + b - c;
  const int pa = std::abs(p - a);
  const int pb = std::abs(p - b);
  const int pc = std::abs(p - c);
  if (pa <= pb && pa <= pc) return static_cast<uint8_t>(a);
  if (pb <= pc) return static_cast<uint8_t>(b);
  return static_cast<uint8_t>(c);
}

// Filters one row. C: channels, known at compile time so that the channel swap and the
// per-sample loop unroll. prev is the row above in OpenCV order, or nullptr for the first row.
template <int C, int F>
void filter_row(const uint8_t* row, const uint8_t* prev, int64_t width, uint8_t* out) {
  // PNG sample k of a pixel reads OpenCV channel order[k] (BGR(A) -> RGB(A)).
  constexpr int order[4] = {C >= 3 ? 2 : 0, 1, 0, 3};
  for (int64_t x = 0; x < width; ++x) {
    const uint8_t* p = row + x * C;
    for (int k = 0; k < C; ++k) {
      const int ch = order[k];
      const int orig = p[ch];
      const int a = x > 0 ? p[ch - C] : 0;
      const int b = prev ? prev[x * C + ch] : 0;
      int pred = 0;
      if constexpr (F == 1) {
        pred = a;
      } else if constexpr (F == 2) {
        pred = b;
      } else if constexpr (F == 3) {
        pred = (a + b) >> 1;
      } else if constexpr (F == 4) {
        const int c = (x > 0 && prev) ? prev[x * C + ch - C] : 0;
        pred = paeth(a, b, c);
      }
      out[x * C + k] = static_cast<uint8_t>(orig - pred);
    }
  }
}

template <int C, int F>
void filter_image(const uint8_t* src, int64_t height, int64_t width, int64_t row_stride,
                  uint8_t* out) {
  const int64_t out_stride = 1 + width * C;
  for (int64_t y = 0; y < height; ++y) {
    const uint8_t* row = src + y * row_stride;
    const uint8_t* prev = y > 0 ? row - row_stride : nullptr;
    uint8_t* o = out + y * out_stride;
    o[0] = static_cast<uint8_t>(F);
    filter_row<C, F>(row, prev, width, o + 1);
  }
}

template <int C>
void dispatch_filter(const uint8_t* src, int64_t height, int64_t width, int64_t row_stride,
                     int filter, uint8_t* out) {
  switch (filter) {
    case 0: return filter_image<C, 0>(src, height, width, row_stride, out);
    case 1: return filter_image<C, 1>(src, height, width, row_stride, out);
    case 2: return filter_image<C, 2>(src, height, width, row_stride, out);
    case 3: return filter_image<C, 3>(src, height, width, row_stride, out);
    case 4: return filter_image<C, 4>(src, height, width, row_stride, out);
    default: throw std::invalid_argument("png_filter_rows: filter must be 0-4");
  }
}

}  // namespace

void png_filter_rows(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                     int64_t row_stride, int filter, uint8_t* out) {
  if (height < 0 || width < 0) throw std::invalid_argument("png_filter_rows: negative size");
  switch (channels) {
    case 1: return dispatch_filter<1>(src, height, width, row_stride, filter, out);
    case 3: return dispatch_filter<3>(src, height, width, row_stride, filter, out);
    case 4: return dispatch_filter<4>(src, height, width, row_stride, filter, out);
    default: throw std::invalid_argument("png_filter_rows: channels must be 1, 3 or 4");
  }
}

}  // namespace cendetect
