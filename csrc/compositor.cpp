#include "compositor.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "mask_sampler.h"
#include "parallel.h"
#include "work_pool.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__) || defined(__clang__)
#define CD_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define CD_INLINE __forceinline
#else
#define CD_INLINE inline
#endif

namespace cendetect {
namespace {

using detail::kExact;
using detail::kIn;
using detail::Kind;
using detail::Sampler;

// Window pixels a chunk of work should hold: 64k pixels take ~20-60 us to sample and paint,
// several times what handing a chunk to a pool worker costs; smaller jobs stay on the calling
// thread (benchmarks/bench_compositor.py, 1024 x 1024 with 5 instances: 0.18 M pixels).
constexpr int64_t kMinPixelsPerChunk = int64_t{1} << 16;
// Mask sides above this are refused: cell indices must be exact in float32.
constexpr int64_t kMaxMaskSide = int64_t{1} << 20;

// ---- painting runs of selected pixels ----------------------------------------------------

CD_INLINE uint64_t load8(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// First index >= x of m[0, len) whose byte is not `byte`, or len: 32 bytes at a time (SSE2,
// baseline on x86-64), else 8.
CD_INLINE int64_t skip_bytes(const uint8_t* m, int64_t x, int64_t len, uint8_t byte) {
#if defined(__SSE2__)
  const __m128i pat = _mm_set1_epi8(static_cast<char>(byte));
  for (; x + 32 <= len; x += 32) {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m + x));
    const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m + x + 16));
    const unsigned eq = static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(lo, pat))) |
                        (static_cast<unsigned>(_mm_movemask_epi8(_mm_cmpeq_epi8(hi, pat))) << 16);
    if (eq != 0xffffffffu) return x + __builtin_ctz(~eq);
  }
#endif
  const uint64_t pattern = 0x0101010101010101ull * byte;
  for (; x + 8 <= len; x += 8) {
    const uint64_t diff = load8(m + x) ^ pattern;
    if (diff != 0) {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
      return x + (__builtin_ctzll(diff) >> 3);
#else
      break;
#endif
    }
  }
  while (x < len && m[x] == byte) ++x;
  return x;
}

// Calls fn(begin, end) for every run of nonzero bytes of m[0, len).
template <typename F>
CD_INLINE void for_each_run(const uint8_t* m, int64_t len, const F& fn) {
  int64_t x = 0;
  while (x < len) {
    x = skip_bytes(m, x, len, 0);
    if (x >= len) break;
    const int64_t begin = x;
    x = skip_bytes(m, x, len, 1);
    while (x < len && m[x] != 0) x = skip_bytes(m, x + 1, len, 1);  // bytes other than 0/1
    fn(begin, x);
  }
}

// Writes one colour over runs of pixels: memset for one channel, else memcpy from a 1024-pixel
// pattern (3 KiB for BGR, stays in L1): one call per run for typical runs, at memcpy speed.
class ColorFill {
 public:
  ColorFill(const uint8_t* color, int64_t channels) : channels_(channels) {
    const auto size = static_cast<size_t>(kPatternPixels * channels);
    pattern_.resize(size);
    std::memcpy(pattern_.data(), color, static_cast<size_t>(channels));
    for (size_t done = static_cast<size_t>(channels); done < size; done *= 2) {
      std::memcpy(pattern_.data() + done, pattern_.data(), std::min(done, size - done));
    }
  }
  void operator()(uint8_t* dst, int64_t pixels) const {
    if (channels_ == 1) {
      std::memset(dst, pattern_[0], static_cast<size_t>(pixels));
      return;
    }
    for (; pixels > kPatternPixels; pixels -= kPatternPixels) {
      std::memcpy(dst, pattern_.data(), pattern_.size());
      dst += pattern_.size();
    }
    std::memcpy(dst, pattern_.data(), static_cast<size_t>(pixels * channels_));
  }

 private:
  static constexpr int64_t kPatternPixels = 1024;
  int64_t channels_;
  std::vector<uint8_t> pattern_;
};

// Paints the pixels of dst whose byte in m[0, len) is set: the pieces sampled exactly, a few to
// a few dozen pixels at the edge of a mask. Per pixel for BGR: bytes just written by the sampler
// are read back one at a time, which store-to-load forwarding serves (wide reloads would stall).
CD_INLINE void paint_bytes(const uint8_t* m, int64_t len, const ColorFill& fill,
                           const uint8_t* color, int64_t ch, uint8_t* dst) {
  if (ch != 3) {
    for_each_run(m, len, [&](int64_t b, int64_t e) { fill(dst + b * ch, e - b); });
    return;
  }
  const uint8_t c0 = color[0], c1 = color[1], c2 = color[2];
  for (int64_t i = 0; i < len; ++i, dst += 3) {
    if (m[i]) {
      dst[0] = c0;
      dst[1] = c1;
      dst[2] = c2;
    }
  }
}

// ---- scheduling ----------------------------------------------------------------------------

// Chunks for `work` window pixels: none smaller than kMinPixelsPerChunk, and up to 4 per thread
// so that threads which finish early (or start late) even out (run_chunks claims dynamically).
int64_t chunks_for(int64_t work) {
  const int64_t threads = std::max(get_num_threads(), 1);
  if (threads == 1) return 1;
  const int64_t by_size = std::max<int64_t>(work / kMinPixelsPerChunk, 1);
  return std::min<int64_t>(by_size, 4 * threads);
}

// Splits the image rows into bands of about equal work (window pixels per row) and runs
// fn(row_begin, row_end) on each band; bands are disjoint, so threads never share a pixel.
template <typename F>
void parallel_rows(const int64_t* windows, int64_t n, int64_t height, const F& fn) {
  if (height <= 0 || n <= 0) return;
  std::vector<int64_t> cum(static_cast<size_t>(height) + 1, 0);  // diff, then running cost
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* wdw = windows + 4 * i;
    const int64_t w = wdw[2] - wdw[0];
    if (w <= 0 || wdw[3] <= wdw[1]) continue;
    cum[wdw[1]] += w;
    cum[wdw[3]] -= w;
  }
  int64_t per_row = 0, total = 0;
  for (int64_t y = 0; y < height; ++y) {
    per_row += cum[y];
    cum[y] = total;
    total += per_row + 1;  // +1: every row costs something, keeps `cum` increasing
  }
  cum[height] = total;
  const int64_t chunks = chunks_for(total - height);
  if (chunks <= 1) {
    fn(int64_t{0}, height);
    return;
  }
  std::vector<int64_t> bounds(static_cast<size_t>(chunks) + 1, height);
  bounds[0] = 0;
  for (int64_t k = 1; k < chunks; ++k) {
    const int64_t target = total / chunks * k;
    bounds[k] = std::lower_bound(cum.begin(), cum.end(), target) - cum.begin();
  }
  run_chunks(chunks, [&](int64_t k) {
    const int64_t lo = std::min(bounds[k], height);
    const int64_t hi = std::min(bounds[k + 1], height);
    if (lo < hi) fn(lo, hi);
  });
}

// ---- argument checks -----------------------------------------------------------------------

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

void check_windows(const int64_t* windows, int64_t n, int64_t height, int64_t width) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* w = windows + 4 * i;
    if (!(0 <= w[0] && w[0] <= w[2] && w[2] <= width && 0 <= w[1] && w[1] <= w[3] &&
          w[3] <= height)) {
      bad("window " + std::to_string(i) + " is not inside the " + std::to_string(height) + "x" +
          std::to_string(width) + " image");
    }
  }
}

void check_offsets(const int64_t* windows, const int64_t* offsets, int64_t n, int64_t size) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* w = windows + 4 * i;
    const int64_t area = (w[2] - w[0]) * (w[3] - w[1]);
    if (offsets[i] < 0 || offsets[i + 1] - offsets[i] != area || offsets[i + 1] > size) {
      bad("offsets do not match the windows (instance " + std::to_string(i) + ")");
    }
  }
}

void check_masks(int64_t n, int64_t mask_h, int64_t mask_w) {
  if (n < 0) bad("negative instance count");
  if (n > 0 && (mask_h < 1 || mask_w < 1 || mask_h > kMaxMaskSide || mask_w > kMaxMaskSide)) {
    bad("mask side out of range: " + std::to_string(mask_h) + "x" + std::to_string(mask_w));
  }
}

void check_image(const ImageView& im) {
  if (im.height < 0 || im.width < 0) bad("negative image size");
  if (im.channels < 1 || im.channels > 64) bad("image channels must be in [1, 64]");
  if (im.height > 0 && im.width > 0 && im.data == nullptr) bad("image has no data");
}

CD_INLINE uint8_t* image_row(const ImageView& im, int64_t y) { return im.data + y * im.row_stride; }

}  // namespace

void paste_windows(const float* boxes, int64_t n, int64_t height, int64_t width,
                   int64_t* windows) {
  if (n < 0 || height < 0 || width < 0) bad("negative size");
  for (int64_t i = 0; i < n; ++i) {
    const float* b = boxes + 4 * i;
    int64_t* w = windows + 4 * i;
    w[0] = w[1] = w[2] = w[3] = 0;
    const bool finite = std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) &&
                        std::isfinite(b[3]);
    if (!finite || b[2] < b[0] || b[3] < b[1]) continue;
    // In double and clamped before the integer conversion, so any finite box is defined.
    const double x0 = std::min(std::max(std::floor(double{b[0]}) - 1.0, 0.0), double(width));
    const double y0 = std::min(std::max(std::floor(double{b[1]}) - 1.0, 0.0), double(height));
    const double x1 = std::min(std::max(std::ceil(double{b[2]}) + 1.0, 0.0), double(width));
    const double y1 = std::min(std::max(std::ceil(double{b[3]}) + 1.0, 0.0), double(height));
    if (x1 <= x0 || y1 <= y0) continue;
    w[0] = static_cast<int64_t>(x0);
    w[1] = static_cast<int64_t>(y0);
    w[2] = static_cast<int64_t>(x1);
    w[3] = static_cast<int64_t>(y1);
  }
}

void paste_masks(const float* masks, int64_t n, int64_t mask_h, int64_t mask_w,
                 const float* boxes, const int64_t* windows, const int64_t* offsets,
                 int64_t height, int64_t width, float threshold, uint8_t* out) {
  check_masks(n, mask_h, mask_w);
  if (n == 0) return;
  check_windows(windows, n, height, width);
  check_offsets(windows, offsets, n, offsets[n]);
  // Rows of all instances, one after another; a row costs its width + 1. Chunk k takes the rows
  // whose cost interval starts in [k * total / chunks, (k + 1) * total / chunks).
  std::vector<int64_t> cum(static_cast<size_t>(n) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* w = windows + 4 * i;
    cum[i + 1] = cum[i] + (w[3] - w[1]) * (w[2] - w[0] + 1);
  }
  const int64_t total = cum[n];
  const int64_t chunks = chunks_for(total);
  const int64_t mask_size = mask_h * mask_w;
  run_chunks(chunks, [&](int64_t k) {
    Sampler sampler;
    const int64_t lo = total / chunks * k;
    const int64_t hi = k + 1 == chunks ? total : total / chunks * (k + 1);
    int64_t i = std::upper_bound(cum.begin(), cum.end(), lo) - cum.begin() - 1;
    for (; i < n && cum[i] < hi; ++i) {
      const int64_t* w = windows + 4 * i;
      const int64_t rows = w[3] - w[1];
      const int64_t cost = w[2] - w[0] + 1;
      if (rows <= 0 || cost <= 1) continue;
      const int64_t r0 = std::max<int64_t>((lo - cum[i] + cost - 1) / cost, 0);
      const int64_t r1 = std::min<int64_t>((hi - cum[i] + cost - 1) / cost, rows);
      if (r0 >= r1) continue;
      sampler.reset(masks + i * mask_size, mask_h, mask_w, boxes + 4 * i, w, threshold);
      uint8_t* bits = out + offsets[i];
      for (int64_t r = r0; r < r1; ++r) {
        uint8_t* row = bits + r * (cost - 1);
        sampler.row(w[1] + r, [&](int64_t b, int64_t e, Kind kind) {
          if (kind == kExact) {
            sampler.exact(b, e, row + b);
          } else {
            std::memset(row + b, kind, static_cast<size_t>(e - b));
          }
        });
      }
    }
  });
}

void paste_fill(const float* masks, int64_t n, int64_t mask_h, int64_t mask_w,
                const float* boxes, const int64_t* windows, float threshold,
                const uint8_t* colors, ImageView image) {
  check_masks(n, mask_h, mask_w);
  check_image(image);
  if (n == 0) return;
  check_windows(windows, n, image.height, image.width);
  const int64_t mask_size = mask_h * mask_w;
  const int64_t ch = image.channels;
  parallel_rows(windows, n, image.height, [&](int64_t y_begin, int64_t y_end) {
    Sampler sampler;
    std::vector<uint8_t> row;
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* w = windows + 4 * i;
      const int64_t y0 = std::max(w[1], y_begin), y1 = std::min(w[3], y_end);
      const int64_t len = w[2] - w[0];
      if (y0 >= y1 || len <= 0) continue;
      sampler.reset(masks + i * mask_size, mask_h, mask_w, boxes + 4 * i, w, threshold);
      row.resize(static_cast<size_t>(len));
      const uint8_t* color = colors + i * ch;
      const ColorFill fill(color, ch);
      for (int64_t y = y0; y < y1; ++y) {
        uint8_t* dst = image_row(image, y) + w[0] * ch;
        sampler.row(y, [&](int64_t b, int64_t e, Kind kind) {
          if (kind == kIn) {
            fill(dst + b * ch, e - b);
          } else if (kind == kExact) {
            sampler.exact(b, e, row.data());
            paint_bytes(row.data(), e - b, fill, color, ch, dst + b * ch);
          }
        });
      }
    }
  });
}

void fill_bitmaps(const uint8_t* bits, const int64_t* windows, const int64_t* offsets, int64_t n,
                  const uint8_t* colors, int alpha, ImageView image) {
  check_image(image);
  if (alpha < 0 || alpha > 256) bad("alpha must be in [0, 256]");
  if (n <= 0) return;
  check_windows(windows, n, image.height, image.width);
  check_offsets(windows, offsets, n, offsets[n]);
  const int64_t ch = image.channels;
  parallel_rows(windows, n, image.height, [&](int64_t y_begin, int64_t y_end) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* w = windows + 4 * i;
      const int64_t y0 = std::max(w[1], y_begin), y1 = std::min(w[3], y_end);
      const int64_t len = w[2] - w[0];
      if (y0 >= y1 || len <= 0) continue;
      const uint8_t* color = colors + i * ch;
      const ColorFill fill(color, ch);
      for (int64_t y = y0; y < y1; ++y) {
        const uint8_t* m = bits + offsets[i] + (y - w[1]) * len;
        uint8_t* dst = image_row(image, y) + w[0] * ch;
        if (alpha == 256) {
          for_each_run(m, len, [&](int64_t b, int64_t e) { fill(dst + b * ch, e - b); });
          continue;
        }
        for_each_run(m, len, [&](int64_t b, int64_t e) {
          for (uint8_t* p = dst + b * ch; p < dst + e * ch; p += ch) {
            for (int64_t c = 0; c < ch; ++c) {
              p[c] = static_cast<uint8_t>((p[c] * (256 - alpha) + color[c] * alpha + 128) >> 8);
            }
          }
        });
      }
    }
  });
}

void copy_bitmaps(const uint8_t* bits, const int64_t* windows, const int64_t* offsets, int64_t n,
                  const uint8_t* src, int64_t src_height, int64_t src_width,
                  int64_t src_row_stride, int64_t src_x0, int64_t src_y0, ImageView image) {
  check_image(image);
  if (n <= 0) return;
  check_windows(windows, n, image.height, image.width);
  check_offsets(windows, offsets, n, offsets[n]);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* w = windows + 4 * i;
    if (w[2] <= w[0] || w[3] <= w[1]) continue;
    if (w[0] < src_x0 || w[1] < src_y0 || w[2] > src_x0 + src_width ||
        w[3] > src_y0 + src_height || src == nullptr) {
      bad("the source image does not cover window " + std::to_string(i));
    }
  }
  const int64_t ch = image.channels;
  parallel_rows(windows, n, image.height, [&](int64_t y_begin, int64_t y_end) {
    for (int64_t i = 0; i < n; ++i) {
      const int64_t* w = windows + 4 * i;
      const int64_t y0 = std::max(w[1], y_begin), y1 = std::min(w[3], y_end);
      const int64_t len = w[2] - w[0];
      if (y0 >= y1 || len <= 0) continue;
      for (int64_t y = y0; y < y1; ++y) {
        const uint8_t* m = bits + offsets[i] + (y - w[1]) * len;
        uint8_t* dst = image_row(image, y) + w[0] * ch;
        const uint8_t* s = src + (y - src_y0) * src_row_stride + (w[0] - src_x0) * ch;
        for_each_run(m, len, [&](int64_t b, int64_t e) {
          std::memcpy(dst + b * ch, s + b * ch, static_cast<size_t>((e - b) * ch));
        });
      }
    }
  });
}

}  // namespace cendetect
