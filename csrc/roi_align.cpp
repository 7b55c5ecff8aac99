#include "roi_align.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "parallel.h"

namespace cendetect {
namespace {

// Bilinear samples a thread chunk should hold: ~32k samples take tens of microseconds, more
// than starting a std::thread, so smaller jobs stay on the calling thread.
constexpr int64_t kMinSamplesPerChunk = int64_t{1} << 15;
// The adaptive grid is ceil(roi_size / pooled_size); this cap only keeps the conversion to an
// integer defined for absurd (e.g. 1e30-pixel) rois. Real rois are far below it.
constexpr double kMaxGrid = 1 << 20;

// Where one bilinear sample falls along one axis.
template <typename T>
struct Tap {
  int64_t lo;
  int64_t hi;
  T frac;        // weight of `hi`
  T one_minus;   // weight of `lo`
  bool valid;    // false: outside [-1, size], the sample contributes 0
};

template <typename T>
struct RoiGeometry {
  T start_w, start_h, bin_w, bin_h;
  int64_t grid_h, grid_w;
};

int64_t adaptive_grid(double cells) {
  const double c = std::ceil(cells);
  if (!(c > 0)) return 0;  // empty or negative roi (or NaN): no samples, output 0
  return static_cast<int64_t>(std::min(c, kMaxGrid));
}

template <typename T>
RoiGeometry<T> roi_geometry(const T* roi, T scale, int64_t pooled_h, int64_t pooled_w,
                            int64_t sampling_ratio, bool aligned) {
  const T offset = aligned ? T(0.5) : T(0);
  RoiGeometry<T> g;
  g.start_w = roi[1] * scale - offset;
  g.start_h = roi[2] * scale - offset;
  T roi_w = (roi[3] * scale - offset) - g.start_w;
  T roi_h = (roi[4] * scale - offset) - g.start_h;
  if (!aligned) {  // legacy (aligned=False) behaviour: rois are at least one cell
    roi_w = std::max(roi_w, T(1));
    roi_h = std::max(roi_h, T(1));
  }
  g.bin_h = roi_h / static_cast<T>(pooled_h);
  g.bin_w = roi_w / static_cast<T>(pooled_w);
  // Adaptive grid: ceil(roi_size / pooled_size), i.e. ceil(bin size).
  g.grid_h = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(g.bin_h);
  g.grid_w = sampling_ratio > 0 ? sampling_ratio : adaptive_grid(g.bin_w);
  return g;
}

// Sample positions along one axis, for pooled cell p and sub-sample i at taps[p * grid + i].
// The expression order matches mmcv's kernel so float32 results agree to the last bit.
template <typename T>
void axis_taps(T start, T bin, int64_t pooled, int64_t grid, int64_t size, Tap<T>* taps) {
  for (int64_t p = 0; p < pooled; ++p) {
    for (int64_t i = 0; i < grid; ++i) {
      T v = start + static_cast<T>(p) * bin +
            static_cast<T>(static_cast<float>(i) + .5f) * bin / static_cast<T>(grid);
      Tap<T>& t = taps[p * grid + i];
      if (!(v >= T(-1) && v <= static_cast<T>(size))) {  // also rejects NaN
        t = Tap<T>{0, 0, T(0), T(0), false};
        continue;
      }
      if (v <= 0) v = 0;
      int64_t lo = static_cast<int64_t>(v);
      int64_t hi;
      if (lo >= size - 1) {
        hi = lo = size - 1;
        v = static_cast<T>(lo);
      } else {
        hi = lo + 1;
      }
      t.lo = lo;
      t.hi = hi;
      t.frac = v - static_cast<T>(lo);
      t.one_minus = T(1) - t.frac;
      t.valid = true;
    }
  }
}

// Where one roi reads from: its image's [C, H, W] features at one level.
template <typename T>
struct Source {
  const T* feat;  // null: the roi's output is all zeros
  int64_t height, width;
  T scale;
};

// Pools channels [c0, c1) of one roi into out ([C, pooled_h, pooled_w] for this roi).
template <typename T>
void pool_roi(const Source<T>& src, const T* roi, int64_t c0, int64_t c1, int64_t pooled_h,
              int64_t pooled_w, int64_t sampling_ratio, bool aligned, std::vector<Tap<T>>& ys,
              std::vector<Tap<T>>& xs, T* out) {
  const int64_t H = src.height, W = src.width, bins = pooled_h * pooled_w;
  if (src.feat == nullptr || H <= 0 || W <= 0) {
    std::fill(out + c0 * bins, out + c1 * bins, T(0));
    return;
  }
  const RoiGeometry<T> g =
      roi_geometry(roi, src.scale, pooled_h, pooled_w, sampling_ratio, aligned);
  ys.resize(static_cast<size_t>(pooled_h * g.grid_h));
  xs.resize(static_cast<size_t>(pooled_w * g.grid_w));
  axis_taps(g.start_h, g.bin_h, pooled_h, g.grid_h, H, ys.data());
  axis_taps(g.start_w, g.bin_w, pooled_w, g.grid_w, W, xs.data());
  // Every sample is counted, also those outside the map; an empty grid gives 0 / 1.
  const T count = static_cast<T>(std::max<int64_t>(g.grid_h * g.grid_w, 1));
  for (int64_t c = c0; c < c1; ++c) {
    const T* f = src.feat + c * H * W;
    T* o = out + c * bins;
    for (int64_t ph = 0; ph < pooled_h; ++ph) {
      const Tap<T>* ty = ys.data() + ph * g.grid_h;
      for (int64_t pw = 0; pw < pooled_w; ++pw) {
        const Tap<T>* tx = xs.data() + pw * g.grid_w;
        T acc = 0;
        for (int64_t iy = 0; iy < g.grid_h; ++iy) {
          const Tap<T>& y = ty[iy];
          if (!y.valid) continue;
          const T* row_lo = f + y.lo * W;
          const T* row_hi = f + y.hi * W;
          for (int64_t ix = 0; ix < g.grid_w; ++ix) {
            const Tap<T>& x = tx[ix];
            if (!x.valid) continue;
            const T w1 = y.one_minus * x.one_minus, w2 = y.one_minus * x.frac;
            const T w3 = y.frac * x.one_minus, w4 = y.frac * x.frac;
            acc += w1 * row_lo[x.lo] + w2 * row_lo[x.hi] + w3 * row_hi[x.lo] + w4 * row_hi[x.hi];
          }
        }
        o[ph * pooled_w + pw] = acc / count;
      }
    }
  }
}

template <typename T>
int64_t first_bad_batch_index(const T* rois, int64_t n_rois, int64_t batch) {
  for (int64_t k = 0; k < n_rois; ++k) {
    const T b = rois[5 * k];
    if (!(b > T(-1) && b < static_cast<T>(batch))) return k;  // truncates into [0, batch)
  }
  return -1;
}

// Runs pool_roi over all (roi, channel block) pairs on the worker threads.
template <typename T, typename SourceOf>
void pool_all(const T* rois, int64_t n_rois, int64_t channels, int64_t pooled_h,
              int64_t pooled_w, int64_t sampling_ratio, bool aligned, const SourceOf& source_of,
              T* output) {
  if (n_rois <= 0 || channels <= 0) return;
  const int64_t bins = pooled_h * pooled_w;
  // Few rois: split channels too, so every thread gets work.
  const int64_t want_items = 4 * static_cast<int64_t>(get_num_threads());
  int64_t blocks = 1;
  if (n_rois < want_items) blocks = std::min(channels, (want_items + n_rois - 1) / n_rois);
  const int64_t block = (channels + blocks - 1) / blocks;
  blocks = (channels + block - 1) / block;
  // Assumes about four samples per bin (the 2 x 2 grid typical of FPN levels).
  const int64_t grain = std::max<int64_t>(1, kMinSamplesPerChunk / (4 * block * bins));
  parallel_for(n_rois * blocks, grain, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> ys, xs;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t k = item / blocks;
      const int64_t c0 = (item % blocks) * block;
      const int64_t c1 = std::min(channels, c0 + block);
      const T* roi = rois + 5 * k;
      pool_roi(source_of(k), roi, c0, c1, pooled_h, pooled_w, sampling_ratio, aligned, ys, xs,
               output + k * channels * bins);
    }
  });
}

template <typename T>
int64_t roi_align_impl(const T* input, int64_t batch, int64_t channels, int64_t height,
                       int64_t width, const T* rois, int64_t n_rois, int64_t pooled_h,
                       int64_t pooled_w, double spatial_scale, int64_t sampling_ratio,
                       bool aligned, T* output) {
  const int64_t bad = first_bad_batch_index(rois, n_rois, batch);
  if (bad >= 0) return bad;
  const T scale = static_cast<T>(spatial_scale);
  const int64_t image = channels * height * width;
  auto source_of = [&](int64_t k) {
    const int64_t b = static_cast<int64_t>(rois[5 * k]);
    return Source<T>{input == nullptr ? nullptr : input + b * image, height, width, scale};
  };
  pool_all(rois, n_rois, channels, pooled_h, pooled_w, sampling_ratio, aligned, source_of,
           output);
  return -1;
}

// mmdetection's SingleRoIExtractor.map_roi_levels, in the rois' precision. -1: NaN level.
template <typename T>
int64_t roi_level(const T* roi, int64_t levels, int64_t finest_scale) {
  if (levels == 1) return 0;  // mmdetection pools every roi on a single level, unmapped
  const T scale = std::sqrt((roi[3] - roi[1]) * (roi[4] - roi[2]));
  const T level = std::floor(std::log2(scale / static_cast<T>(finest_scale) + static_cast<T>(1e-6)));
  if (std::isnan(level)) return -1;
  if (level <= 0) return 0;
  if (level >= static_cast<T>(levels - 1)) return levels - 1;
  return static_cast<int64_t>(level);
}

template <typename T>
int64_t multi_level_impl(const T* const* feats, const int64_t* heights, const int64_t* widths,
                         const double* spatial_scales, int64_t levels, int64_t batch,
                         int64_t channels, const T* rois, int64_t n_rois, int64_t output_size,
                         int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                         T* output) {
  const int64_t bad = first_bad_batch_index(rois, n_rois, batch);
  if (bad >= 0) return bad;
  std::vector<int64_t> level_of(static_cast<size_t>(n_rois));
  for (int64_t k = 0; k < n_rois; ++k) level_of[k] = roi_level(rois + 5 * k, levels, finest_scale);
  auto source_of = [&](int64_t k) {
    const int64_t l = level_of[k];
    if (l < 0 || feats[l] == nullptr) return Source<T>{nullptr, 0, 0, T(0)};
    const int64_t b = static_cast<int64_t>(rois[5 * k]);
    const T* feat = feats[l] + b * channels * heights[l] * widths[l];
    return Source<T>{feat, heights[l], widths[l], static_cast<T>(spatial_scales[l])};
  };
  pool_all(rois, n_rois, channels, output_size, output_size, sampling_ratio, aligned, source_of,
           output);
  return -1;
}


// ---------------------------------------------------------------------------------------------
// Channels-last (NHWC) multi-level pooling. For every bin and sample, the four bilinear taps are
// read as contiguous channel vectors, so the channel loop vectorizes. Per channel the arithmetic
// is the one of pool_roi above, in the same order (acc += w1*a + w2*b + w3*c + w4*d over the
// grid, then acc / count, no fused multiply-adds), so both layouts give bit-identical results.

// target_clones: the channel loops get AVX-512 and AVX2 versions picked at load time, while the
// module itself stays built for the x86-64 baseline. -ffp-contract=off keeps FMAs out of every
// version.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CENDETECT_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CENDETECT_CLONES
#endif

inline float bf16_to_float(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &wide, sizeof f);
  return f;
}

CENDETECT_CLONES
void accumulate_taps(float* __restrict acc, const float* __restrict a, const float* __restrict b,
                     const float* __restrict c, const float* __restrict d, float w1, float w2,
                     float w3, float w4, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w1 * a[i] + w2 * b[i] + w3 * c[i] + w4 * d[i];
}

CENDETECT_CLONES
void accumulate_taps(double* __restrict acc, const double* __restrict a,
                     const double* __restrict b, const double* __restrict c,
                     const double* __restrict d, double w1, double w2, double w3, double w4,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] += w1 * a[i] + w2 * b[i] + w3 * c[i] + w4 * d[i];
}

CENDETECT_CLONES
void accumulate_taps(float* __restrict acc, const uint16_t* __restrict a,
                     const uint16_t* __restrict b, const uint16_t* __restrict c,
                     const uint16_t* __restrict d, float w1, float w2, float w3, float w4,
                     int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    acc[i] += w1 * bf16_to_float(a[i]) + w2 * bf16_to_float(b[i]) + w3 * bf16_to_float(c[i]) +
              w4 * bf16_to_float(d[i]);
  }
}

CENDETECT_CLONES
void divide_by(float* __restrict acc, float count, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = acc[i] / count;
}

CENDETECT_CLONES
void divide_by(double* __restrict acc, double count, int64_t n) {
  for (int64_t i = 0; i < n; ++i) acc[i] = acc[i] / count;
}

// Where one roi reads from in NHWC features: its image's [H, W, C] map at one level.
template <typename In, typename T>
struct SourceNhwc {
  const In* feat;  // null: the roi's output is all zeros
  int64_t height, width;
  T scale;
};

// Pools channels [c0, c1) of one roi into out ([pooled_h, pooled_w, C] for this roi).
template <typename In, typename T>
void pool_roi_nhwc(const SourceNhwc<In, T>& src, const T* roi, int64_t channels, int64_t c0,
                   int64_t c1, int64_t pooled_h, int64_t pooled_w, int64_t sampling_ratio,
                   bool aligned, std::vector<Tap<T>>& ys, std::vector<Tap<T>>& xs, T* out) {
  const int64_t H = src.height, W = src.width, n = c1 - c0;
  for (int64_t bin = 0; bin < pooled_h * pooled_w; ++bin) {
    std::fill(out + bin * channels + c0, out + bin * channels + c1, T(0));
  }
  if (src.feat == nullptr || H <= 0 || W <= 0) return;
  const RoiGeometry<T> g =
      roi_geometry(roi, src.scale, pooled_h, pooled_w, sampling_ratio, aligned);
  ys.resize(static_cast<size_t>(pooled_h * g.grid_h));
  xs.resize(static_cast<size_t>(pooled_w * g.grid_w));
  axis_taps(g.start_h, g.bin_h, pooled_h, g.grid_h, H, ys.data());
  axis_taps(g.start_w, g.bin_w, pooled_w, g.grid_w, W, xs.data());
  const T count = static_cast<T>(std::max<int64_t>(g.grid_h * g.grid_w, 1));
  const In* f = src.feat + c0;
  for (int64_t ph = 0; ph < pooled_h; ++ph) {
    const Tap<T>* ty = ys.data() + ph * g.grid_h;
    for (int64_t pw = 0; pw < pooled_w; ++pw) {
      const Tap<T>* tx = xs.data() + pw * g.grid_w;
      T* acc = out + (ph * pooled_w + pw) * channels + c0;
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const Tap<T>& y = ty[iy];
        if (!y.valid) continue;
        const In* row_lo = f + y.lo * W * channels;
        const In* row_hi = f + y.hi * W * channels;
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          const Tap<T>& x = tx[ix];
          if (!x.valid) continue;
          const T w1 = y.one_minus * x.one_minus, w2 = y.one_minus * x.frac;
          const T w3 = y.frac * x.one_minus, w4 = y.frac * x.frac;
          accumulate_taps(acc, row_lo + x.lo * channels, row_lo + x.hi * channels,
                          row_hi + x.lo * channels, row_hi + x.hi * channels, w1, w2, w3, w4, n);
        }
      }
      divide_by(acc, count, n);
    }
  }
}

template <typename In, typename T>
int64_t multi_level_nhwc_impl(const In* const* feats, const int64_t* heights,
                              const int64_t* widths, const double* spatial_scales,
                              int64_t levels, int64_t batch, int64_t channels, const T* rois,
                              int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
                              bool aligned, int64_t finest_scale, T* output) {
  const int64_t bad = first_bad_batch_index(rois, n_rois, batch);
  if (bad >= 0) return bad;
  if (n_rois <= 0 || channels <= 0) return -1;
  std::vector<int64_t> level_of(static_cast<size_t>(n_rois));
  for (int64_t k = 0; k < n_rois; ++k) level_of[k] = roi_level(rois + 5 * k, levels, finest_scale);
  const int64_t bins = output_size * output_size;
  // As pool_all: few rois split the channels too, so every thread gets work.
  const int64_t want_items = 4 * static_cast<int64_t>(get_num_threads());
  int64_t blocks = 1;
  if (n_rois < want_items) blocks = std::min(channels, (want_items + n_rois - 1) / n_rois);
  const int64_t block = (channels + blocks - 1) / blocks;
  blocks = (channels + block - 1) / block;
  const int64_t grain = std::max<int64_t>(1, kMinSamplesPerChunk / (4 * block * bins));
  parallel_for(n_rois * blocks, grain, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> ys, xs;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t k = item / blocks;
      const int64_t c0 = (item % blocks) * block;
      const int64_t c1 = std::min(channels, c0 + block);
      const int64_t l = level_of[k];
      SourceNhwc<In, T> src{nullptr, 0, 0, T(0)};
      if (l >= 0 && feats[l] != nullptr) {
        const int64_t b = static_cast<int64_t>(rois[5 * k]);
        src = SourceNhwc<In, T>{feats[l] + b * heights[l] * widths[l] * channels, heights[l],
                                widths[l], static_cast<T>(spatial_scales[l])};
      }
      pool_roi_nhwc(src, rois + 5 * k, channels, c0, c1, output_size, output_size,
                    sampling_ratio, aligned, ys, xs, output + k * bins * channels);
    }
  });
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Backward (NHWC): the transpose of pool_roi_nhwc. For channels [c0, c1) of every roi, each
// bin's incoming gradient g / count is added to the four taps of each valid sample with the
// forward's weights.

// y += w * x. The four taps of a sample on the last row or column coincide (lo == hi), so
// they are accumulated by four separate calls rather than one loop over four pointers.
CENDETECT_CLONES
void axpy(float* __restrict y, const float* __restrict x, float w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += w * x[i];
}

CENDETECT_CLONES
void axpy(double* __restrict y, const double* __restrict x, double w, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += w * x[i];
}

template <typename T>
void unpool_roi_nhwc(T* grad_feat, int64_t H, int64_t W, T scale, const T* roi,
                     int64_t channels, int64_t c0, int64_t c1, int64_t pooled,
                     int64_t sampling_ratio, bool aligned, const T* grad, std::vector<Tap<T>>& ys,
                     std::vector<Tap<T>>& xs, std::vector<T>& scaled) {
  const int64_t n = c1 - c0;
  const RoiGeometry<T> g = roi_geometry(roi, scale, pooled, pooled, sampling_ratio, aligned);
  ys.resize(static_cast<size_t>(pooled * g.grid_h));
  xs.resize(static_cast<size_t>(pooled * g.grid_w));
  axis_taps(g.start_h, g.bin_h, pooled, g.grid_h, H, ys.data());
  axis_taps(g.start_w, g.bin_w, pooled, g.grid_w, W, xs.data());
  const T count = static_cast<T>(std::max<int64_t>(g.grid_h * g.grid_w, 1));
  scaled.resize(static_cast<size_t>(n));
  T* f = grad_feat + c0;
  for (int64_t ph = 0; ph < pooled; ++ph) {
    const Tap<T>* ty = ys.data() + ph * g.grid_h;
    for (int64_t pw = 0; pw < pooled; ++pw) {
      const Tap<T>* tx = xs.data() + pw * g.grid_w;
      const T* gb = grad + (ph * pooled + pw) * channels + c0;
      for (int64_t i = 0; i < n; ++i) scaled[i] = gb[i] / count;
      for (int64_t iy = 0; iy < g.grid_h; ++iy) {
        const Tap<T>& y = ty[iy];
        if (!y.valid) continue;
        T* row_lo = f + y.lo * W * channels;
        T* row_hi = f + y.hi * W * channels;
        for (int64_t ix = 0; ix < g.grid_w; ++ix) {
          const Tap<T>& x = tx[ix];
          if (!x.valid) continue;
          const T w1 = y.one_minus * x.one_minus, w2 = y.one_minus * x.frac;
          const T w3 = y.frac * x.one_minus, w4 = y.frac * x.frac;
          axpy(row_lo + x.lo * channels, scaled.data(), w1, n);
          axpy(row_lo + x.hi * channels, scaled.data(), w2, n);
          axpy(row_hi + x.lo * channels, scaled.data(), w3, n);
          axpy(row_hi + x.hi * channels, scaled.data(), w4, n);
        }
      }
    }
  }
}

template <typename T>
int64_t multi_level_nhwc_backward_impl(const T* grad_out, const int64_t* heights,
                                       const int64_t* widths, const double* spatial_scales,
                                       int64_t levels, int64_t batch, int64_t channels,
                                       const T* rois, int64_t n_rois, int64_t output_size,
                                       int64_t sampling_ratio, bool aligned,
                                       int64_t finest_scale, T* const* grad_feats) {
  const int64_t bad = first_bad_batch_index(rois, n_rois, batch);
  if (bad >= 0) return bad;
  if (channels <= 0) return -1;
  std::vector<int64_t> level_of(static_cast<size_t>(n_rois));
  for (int64_t k = 0; k < n_rois; ++k) level_of[k] = roi_level(rois + 5 * k, levels, finest_scale);
  const int64_t bins = output_size * output_size;
  // Channel blocks of at least 16 values (one cache line of float32): a block is one thread's
  // work item and covers every roi, so no two threads ever write the same feature value.
  const int64_t threads = static_cast<int64_t>(get_num_threads());
  int64_t blocks = std::max<int64_t>(1, std::min((channels + 15) / 16, 2 * threads));
  const int64_t block = (channels + blocks - 1) / blocks;
  blocks = (channels + block - 1) / block;
  parallel_for(blocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<Tap<T>> ys, xs;
    std::vector<T> scaled;
    for (int64_t item = begin; item < end; ++item) {
      const int64_t c0 = item * block;
      const int64_t c1 = std::min(channels, c0 + block);
      for (int64_t l = 0; l < levels; ++l) {
        if (grad_feats[l] == nullptr) continue;
        const int64_t pixels = batch * heights[l] * widths[l];
        for (int64_t p = 0; p < pixels; ++p) {
          std::fill(grad_feats[l] + p * channels + c0, grad_feats[l] + p * channels + c1, T(0));
        }
      }
      for (int64_t k = 0; k < n_rois; ++k) {
        const int64_t l = level_of[k];
        if (l < 0 || grad_feats[l] == nullptr || heights[l] <= 0 || widths[l] <= 0) continue;
        const int64_t b = static_cast<int64_t>(rois[5 * k]);
        unpool_roi_nhwc(grad_feats[l] + b * heights[l] * widths[l] * channels, heights[l],
                        widths[l], static_cast<T>(spatial_scales[l]), rois + 5 * k, channels, c0,
                        c1, output_size, sampling_ratio, aligned,
                        grad_out + k * bins * channels, ys, xs, scaled);
      }
    }
  });
  return -1;
}

}  // namespace

int64_t roi_align(const float* input, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, const float* rois, int64_t n_rois, int64_t pooled_h,
                  int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, bool aligned,
                  float* output) {
  return roi_align_impl(input, batch, channels, height, width, rois, n_rois, pooled_h, pooled_w,
                        spatial_scale, sampling_ratio, aligned, output);
}

int64_t roi_align(const double* input, int64_t batch, int64_t channels, int64_t height,
                  int64_t width, const double* rois, int64_t n_rois, int64_t pooled_h,
                  int64_t pooled_w, double spatial_scale, int64_t sampling_ratio, bool aligned,
                  double* output) {
  return roi_align_impl(input, batch, channels, height, width, rois, n_rois, pooled_h, pooled_w,
                        spatial_scale, sampling_ratio, aligned, output);
}

int64_t multi_level_roi_align(const float* const* feats, const int64_t* heights,
                              const int64_t* widths, const double* spatial_scales,
                              int64_t levels, int64_t batch, int64_t channels, const float* rois,
                              int64_t n_rois, int64_t output_size, int64_t sampling_ratio,
                              bool aligned, int64_t finest_scale, float* output) {
  return multi_level_impl(feats, heights, widths, spatial_scales, levels, batch, channels, rois,
                          n_rois, output_size, sampling_ratio, aligned, finest_scale, output);
}

int64_t multi_level_roi_align(const double* const* feats, const int64_t* heights,
                              const int64_t* widths, const double* spatial_scales,
                              int64_t levels, int64_t batch, int64_t channels,
                              const double* rois, int64_t n_rois, int64_t output_size,
                              int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                              double* output) {
  return multi_level_impl(feats, heights, widths, spatial_scales, levels, batch, channels, rois,
                          n_rois, output_size, sampling_ratio, aligned, finest_scale, output);
}

int64_t multi_level_roi_align_nhwc(const float* const* feats, const int64_t* heights,
                                   const int64_t* widths, const double* spatial_scales,
                                   int64_t levels, int64_t batch, int64_t channels,
                                   const float* rois, int64_t n_rois, int64_t output_size,
                                   int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                                   float* output) {
  return multi_level_nhwc_impl(feats, heights, widths, spatial_scales, levels, batch, channels,
                               rois, n_rois, output_size, sampling_ratio, aligned, finest_scale,
                               output);
}

int64_t multi_level_roi_align_nhwc(const double* const* feats, const int64_t* heights,
                                   const int64_t* widths, const double* spatial_scales,
                                   int64_t levels, int64_t batch, int64_t channels,
                                   const double* rois, int64_t n_rois, int64_t output_size,
                                   int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                                   double* output) {
  return multi_level_nhwc_impl(feats, heights, widths, spatial_scales, levels, batch, channels,
                               rois, n_rois, output_size, sampling_ratio, aligned, finest_scale,
                               output);
}

int64_t multi_level_roi_align_nhwc(const uint16_t* const* feats, const int64_t* heights,
                                   const int64_t* widths, const double* spatial_scales,
                                   int64_t levels, int64_t batch, int64_t channels,
                                   const float* rois, int64_t n_rois, int64_t output_size,
                                   int64_t sampling_ratio, bool aligned, int64_t finest_scale,
                                   float* output) {
  return multi_level_nhwc_impl(feats, heights, widths, spatial_scales, levels, batch, channels,
                               rois, n_rois, output_size, sampling_ratio, aligned, finest_scale,
                               output);
}

int64_t multi_level_roi_align_nhwc_backward(const float* grad_out, const int64_t* heights,
                                            const int64_t* widths, const double* spatial_scales,
                                            int64_t levels, int64_t batch, int64_t channels,
                                            const float* rois, int64_t n_rois,
                                            int64_t output_size, int64_t sampling_ratio,
                                            bool aligned, int64_t finest_scale,
                                            float* const* grad_feats) {
  return multi_level_nhwc_backward_impl(grad_out, heights, widths, spatial_scales, levels, batch,
                                        channels, rois, n_rois, output_size, sampling_ratio,
                                        aligned, finest_scale, grad_feats);
}

int64_t multi_level_roi_align_nhwc_backward(const double* grad_out, const int64_t* heights,
                                            const int64_t* widths, const double* spatial_scales,
                                            int64_t levels, int64_t batch, int64_t channels,
                                            const double* rois, int64_t n_rois,
                                            int64_t output_size, int64_t sampling_ratio,
                                            bool aligned, int64_t finest_scale,
                                            double* const* grad_feats) {
  return multi_level_nhwc_backward_impl(grad_out, heights, widths, spatial_scales, levels, batch,
                                        channels, rois, n_rois, output_size, sampling_ratio,
                                        aligned, finest_scale, grad_feats);
}

}  // namespace cendetect
