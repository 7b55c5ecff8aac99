// Internal to the compositor: the pixel model's arithmetic (compositor.h) and the per-instance
// row sampler. Not part of any binding.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace cendetect {
namespace detail {

// Where the two bilinear taps of one output pixel fall along one axis of the mask.
struct Tap {
  int32_t lo;     // lower cell index (the upper one is lo + 1); 0 when neither is inside
  uint8_t valid;  // bit 0: cell lo is inside the mask, bit 1: cell lo + 1 is inside
  float frac;     // weight of cell lo + 1 (torch's w along x, n along y)
  float rest;     // weight of cell lo (torch's e along x, s along y)
};

// Taps of pixels p0 .. p0 + count - 1 along an axis with box edges [b0, b1] and m mask cells.
void axis_taps(int64_t p0, int64_t count, float b0, float b1, int64_t m, Tap* out);

// out[i] = (bilinear sample >= thr) for one stretch of a row: a, b, c, d are the mask values at
// the nw, ne, sw, se taps (0 outside the mask), e, w the column weights, s, n the row weights.
// Bit-identical to torch's vectorised CPU grid_sample (same products, same fused sum).
void sample_row(const float* a, const float* b, const float* c, const float* d, const float* e,
                const float* w, float s, float n, float thr, int64_t len, uint8_t* out);

// What the pixels of a piece of a row are: certainly outside the mask, certainly inside, or to
// be sampled exactly. kNarrow is internal to Sampler (a segment each row decides again).
enum Kind : uint8_t { kOut = 0, kIn = 1, kExact = 2, kNarrow = 3 };

// Straddling column segments shorter than this are sampled exactly rather than narrowed by a
// binary search (Sampler::narrow): a search costs ~20 ns per segment and row, sampling a pixel
// ~1 ns (benchmarks/bench_compositor.py, 4096 x 4096).
constexpr int64_t kMinNarrow = 24;

struct Run {
  int64_t begin, end;
  Kind kind;
  int64_t seg0, seg1;  // kNarrow runs: the column segments they span
};

// Samples one instance's window row by row.
//
// Column taps are computed once per instance, and columns with equal taps form segments (at most
// mask_w + 1). Per pair of mask rows, each segment reads four mask values; a bilinear sample is
// their weighted mean with non-negative weights summing to 1 (to a few ulp). So where all four
// are finite, >= 0 and above threshold * (1 + 1e-5) + 1e-30, every sample of the segment is
// >= threshold whatever the weights, and where all are below threshold * (1 - 1e-5) - 1e-30
// none is: such segments are decided without sampling (the margins are ~100x the worst rounding
// error of the 7-operation sum, whose terms are all >= 0). For the others, with all four values
// in [0, 1], each image row decides again with its row weights fixed: the sample along the
// segment is e * L + w * R (L, R the row-interpolated values, e = fl(1 - w)), within 2e-7 of the
// line L + (R - L) * w; where the line is more than 1e-5 from the threshold the pixel is decided,
// and only pixels around the crossing are sampled exactly. The tests compare every pixel with
// torch's grid_sample, at the threshold included.
class Sampler {
 public:
  void reset(const float* mask, int64_t mask_h, int64_t mask_w, const float* box,
             const int64_t* window, float threshold);

  // Calls fn(begin, end, kind), kind kIn, kOut or kExact, for consecutive pieces covering the
  // columns [0, width) of image row y (inside the window); neighbours never share a kind.
  template <typename F>
  void row(int64_t y, const F& fn) {
    row_ = &rows_[static_cast<size_t>(y - y0_)];
    const int64_t key = (static_cast<int64_t>(row_->lo) << 2) | row_->valid;
    if (key != cached_) {
      gather();
      cached_ = key;
    }
    Emit<F> emit{fn};
    for (const Run& r : runs_) {
      if (r.kind != kNarrow) {
        emit(r.begin, r.end, r.kind);
      } else {
        for (int64_t k = r.seg0; k < r.seg1; ++k) narrow(segments_[static_cast<size_t>(k)], emit);
      }
    }
    emit.flush();
  }

  // Exact samples of the current row's columns [begin, end): out[i - begin] = 0 or 1.
  void exact(int64_t begin, int64_t end, uint8_t* out) const {
    sample_row(a_.data() + begin, b_.data() + begin, c_.data() + begin, d_.data() + begin,
               e_.data() + begin, w_.data() + begin, row_->rest, row_->frac, thr_, end - begin,
               out);
  }

 private:
  // Merges adjacent pieces of one kind before passing them on.
  template <typename F>
  struct Emit {
    const F& fn;
    int64_t begin = 0, end = 0;
    Kind kind = kOut;
    void operator()(int64_t b, int64_t e, Kind k) {
      if (b >= e) return;
      if (end > begin && k == kind) {
        end = e;
        return;
      }
      flush();
      begin = b;
      end = e;
      kind = k;
    }
    void flush() {
      if (end > begin) fn(begin, end, kind);
      begin = end;
    }
  };

  void gather();

  template <typename E>
  void narrow(const Run& seg, E& emit) const {
    const double s = row_->rest, n = row_->frac;
    const double left = s * a_[seg.begin] + n * c_[seg.begin];
    const double right = s * b_[seg.begin] + n * d_[seg.begin];
    constexpr double kMargin = 1e-5;
    const double hi = double{thr_} + kMargin, lo = double{thr_} - kMargin;
    if (!(s >= 0.0 && n >= 0.0)) {
      emit(seg.begin, seg.end, kExact);
    } else if (std::min(left, right) >= hi) {
      emit(seg.begin, seg.end, kIn);
    } else if (std::max(left, right) <= lo) {
      emit(seg.begin, seg.end, kOut);
    } else if (seg.end - seg.begin < kMinNarrow || left == right) {
      emit(seg.begin, seg.end, kExact);
    } else {
      // Columns with w <= w1 lie on the left value's side of the band, w >= w2 on the right's
      // (w never decreases along a segment).
      const double slope = right - left;
      const double w1 = ((slope > 0 ? lo : hi) - left) / slope;
      const double w2 = ((slope > 0 ? hi : lo) - left) / slope;
      const float* w = w_.data();
      const int64_t p1 =
          std::upper_bound(w + seg.begin, w + seg.end, w1,
                           [](double v, float x) { return v < double{x}; }) -
          w;
      const int64_t p2 = std::max(
          p1, static_cast<int64_t>(std::lower_bound(w + seg.begin, w + seg.end, w2,
                                                    [](float x, double v) { return x < v; }) -
                                   w));
      emit(seg.begin, p1, slope > 0 ? kOut : kIn);
      emit(p1, p2, kExact);
      emit(p2, seg.end, slope > 0 ? kIn : kOut);
    }
  }

  const float* mask_ = nullptr;
  const Tap* row_ = nullptr;
  int64_t mask_w_ = 0, width_ = 0, y0_ = 0, cached_ = -1;
  float thr_ = 0, in_lo_ = 0, out_hi_ = 0;
  std::vector<Tap> cols_, rows_;
  std::vector<float> e_, w_, a_, b_, c_, d_;
  std::vector<Run> segments_, runs_;
};

}  // namespace detail
}  // namespace cendetect
