#include "mask_sampler.h"

#include <cmath>

#if defined(__GNUC__) || defined(__clang__)
#define CD_INLINE inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define CD_INLINE __forceinline
#else
#define CD_INLINE inline
#endif

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CD_X86_DISPATCH 1
#endif

namespace cendetect {
namespace detail {
namespace {

// Correctly rounded float fused multiply-add: one instruction where the function is compiled
// with FMA enabled, the C library's exact fmaf otherwise (same result either way).
CD_INLINE float fused(float a, float b, float c) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_fmaf(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

CD_INLINE float floor_f(float v) {
#if defined(__GNUC__) || defined(__clang__)
  return __builtin_floorf(v);
#else
  return std::floor(v);
#endif
}

// mmdetection: u = ((x + 0.5) - x1) / (x2 - x1) * 2 - 1 in float32, inf -> 0; torch's CPU
// grid_sample: X = fma(u + 1, size / 2, -0.5); taps floor(X) and floor(X) + 1, weights
// w = X - floor(X) and e = 1 - w.
CD_INLINE void axis_taps_body(int64_t p0, int64_t count, float b0, float b1, int64_t m,
                              Tap* out) {
  const float half_m = static_cast<float>(m) / 2.0f;
  const float last = static_cast<float>(m - 1);
  for (int64_t k = 0; k < count; ++k) {
    const float centre = static_cast<float>(p0 + k) + 0.5f;
    float g = (centre - b0) / (b1 - b0) * 2.0f - 1.0f;
    if (std::isinf(g)) g = 0.0f;  // zero-width box: mmdet maps the whole window to the centre
    const float c = fused(g + 1.0f, half_m, -0.5f);
    const float f = floor_f(c);
    Tap t;
    t.frac = c - f;
    t.rest = 1.0f - t.frac;
    t.lo = 0;
    t.valid = 0;
    if (f >= -1.0f && f <= last) {  // false for NaN and for far-away taps
      t.lo = static_cast<int32_t>(f);
      if (f >= 0.0f) t.valid |= 1;
      if (f <= last - 1.0f) t.valid |= 2;
    }
    out[k] = t;
  }
}

// torch (aten/src/ATen/native/cpu/GridSamplerKernel.cpp): nw = s * e, ne = s * w, sw = n * e,
// se = n * w; out = nw * v_nw + ne * v_ne + sw * v_sw + se * v_se, which its AVX2/AVX-512 builds
// evaluate as one product and three fused multiply-adds, left to right.
CD_INLINE void sample_row_body(const float* a, const float* b, const float* c, const float* d,
                               const float* e, const float* w, float s, float n, float thr,
                               int64_t len, uint8_t* out) {
  for (int64_t i = 0; i < len; ++i) {
    const float ei = e[i];
    const float wi = w[i];
    float v = (s * ei) * a[i];
    v = fused(s * wi, b[i], v);
    v = fused(n * ei, c[i], v);
    v = fused(n * wi, d[i], v);
    out[i] = static_cast<uint8_t>(v >= thr);
  }
}

void axis_taps_generic(int64_t p0, int64_t count, float b0, float b1, int64_t m, Tap* out) {
  axis_taps_body(p0, count, b0, b1, m, out);
}

void sample_row_generic(const float* a, const float* b, const float* c, const float* d,
                        const float* e, const float* w, float s, float n, float thr, int64_t len,
                        uint8_t* out) {
  sample_row_body(a, b, c, d, e, w, s, n, thr, len, out);
}

#ifdef CD_X86_DISPATCH
// The same code compiled with AVX2 + FMA: vectorised, and fmaf/floorf become instructions.
__attribute__((target("avx2,fma"))) void axis_taps_avx2(int64_t p0, int64_t count, float b0,
                                                         float b1, int64_t m, Tap* out) {
  axis_taps_body(p0, count, b0, b1, m, out);
}

__attribute__((target("avx2,fma"))) void sample_row_avx2(const float* a, const float* b,
                                                          const float* c, const float* d,
                                                          const float* e, const float* w, float s,
                                                          float n, float thr, int64_t len,
                                                          uint8_t* out) {
  sample_row_body(a, b, c, d, e, w, s, n, thr, len, out);
}

bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

const bool kAvx2 = cpu_has_avx2_fma();
#endif

}  // namespace

void axis_taps(int64_t p0, int64_t count, float b0, float b1, int64_t m, Tap* out) {
#ifdef CD_X86_DISPATCH
  if (kAvx2) {
    axis_taps_avx2(p0, count, b0, b1, m, out);
    return;
  }
#endif
  axis_taps_generic(p0, count, b0, b1, m, out);
}

void sample_row(const float* a, const float* b, const float* c, const float* d, const float* e,
                const float* w, float s, float n, float thr, int64_t len, uint8_t* out) {
#ifdef CD_X86_DISPATCH
  if (kAvx2) {
    sample_row_avx2(a, b, c, d, e, w, s, n, thr, len, out);
    return;
  }
#endif
  sample_row_generic(a, b, c, d, e, w, s, n, thr, len, out);
}

void Sampler::reset(const float* mask, int64_t mask_h, int64_t mask_w, const float* box,
                    const int64_t* window, float threshold) {
  mask_ = mask;
  mask_w_ = mask_w;
  thr_ = threshold;
  in_lo_ = threshold * (1.0f + 1e-5f) + 1e-30f;
  out_hi_ = threshold * (1.0f - 1e-5f) - 1e-30f;
  y0_ = window[1];
  width_ = window[2] - window[0];
  const auto len = static_cast<size_t>(width_);
  cols_.resize(len);
  rows_.resize(static_cast<size_t>(window[3] - window[1]));
  for (auto* v : {&e_, &w_, &a_, &b_, &c_, &d_}) v->resize(len);
  axis_taps(window[0], width_, box[0], box[2], mask_w, cols_.data());
  axis_taps(window[1], window[3] - window[1], box[1], box[3], mask_h, rows_.data());
  segments_.clear();
  for (int64_t i = 0; i < width_; ++i) {
    e_[i] = cols_[i].rest;
    w_[i] = cols_[i].frac;
    // Columns with the same taps read the same four mask cells: one segment.
    if (i == 0 || cols_[i].lo != cols_[i - 1].lo || cols_[i].valid != cols_[i - 1].valid) {
      segments_.push_back(Run{i, i + 1, kOut, 0, 0});
    } else {
      segments_.back().end = i + 1;
    }
  }
  cached_ = -1;
}

// The mask values under the taps of the current row's pair of mask rows, and the runs they make
// (class comment): per column segment, so the cost does not grow with the box width except for
// the columns that may need exact samples.
void Sampler::gather() {
  const Tap& t = *row_;
  const float* top = (t.valid & 1) ? mask_ + static_cast<int64_t>(t.lo) * mask_w_ : nullptr;
  const float* bottom = (t.valid & 2) ? mask_ + static_cast<int64_t>(t.lo + 1) * mask_w_ : nullptr;
  runs_.clear();
  constexpr float kMax = 3.0e38f;
  for (size_t k = 0; k < segments_.size(); ++k) {
    const Run& seg = segments_[k];
    const int32_t l = cols_[seg.begin].lo;
    const uint8_t v = cols_[seg.begin].valid;
    const float a = (top && (v & 1)) ? top[l] : 0.0f;
    const float b = (top && (v & 2)) ? top[l + 1] : 0.0f;
    const float c = (bottom && (v & 1)) ? bottom[l] : 0.0f;
    const float d = (bottom && (v & 2)) ? bottom[l + 1] : 0.0f;
    const bool finite = a >= 0.0f && b >= 0.0f && c >= 0.0f && d >= 0.0f && a <= kMax &&
                        b <= kMax && c <= kMax && d <= kMax;  // false for NaN
    Kind kind = kExact;
    if (finite && a >= in_lo_ && b >= in_lo_ && c >= in_lo_ && d >= in_lo_) {
      kind = kIn;
    } else if (finite && a < out_hi_ && b < out_hi_ && c < out_hi_ && d < out_hi_) {
      kind = kOut;
    } else {
      std::fill(a_.begin() + seg.begin, a_.begin() + seg.end, a);
      std::fill(b_.begin() + seg.begin, b_.begin() + seg.end, b);
      std::fill(c_.begin() + seg.begin, c_.begin() + seg.end, c);
      std::fill(d_.begin() + seg.begin, d_.begin() + seg.end, d);
      if (finite && a <= 1.0f && b <= 1.0f && c <= 1.0f && d <= 1.0f) kind = kNarrow;
    }
    const auto ki = static_cast<int64_t>(k);
    if (!runs_.empty() && runs_.back().kind == kind) {
      runs_.back().end = seg.end;
      runs_.back().seg1 = ki + 1;
    } else {
      runs_.push_back(Run{seg.begin, seg.end, kind, ki, ki + 1});
    }
  }
}

}  // namespace detail
}  // namespace cendetect
