// Exact binary morphology and region clean-up shared by the mask refinements (refine.cpp for
// bars, refine_mosaic.cpp for mosaics). Everything is integer arithmetic: Euclidean disks come
// from an exact thresholded distance sweep (per column the vertical distance, per row the runs
// each column's nearest pixel covers), so the results equal OpenCV's erode/dilate with the disk
// kernel `dx^2 + dy^2 <= r^2` (engine/refine.py's reference) pixel for pixel.
#pragma once

#include <cstdint>
#include <vector>

// Clones of a hot loop for AVX-512, AVX2 and the x86-64 baseline, picked at load time from
// what the CPU has (GCC on x86-64 Linux; elsewhere one portable build). Only for loops whose
// result does not depend on the vector width: integer work, or floating-point lanes that each
// do the scalar operations in the scalar order (the build's -ffp-contract=off forbids fused
// multiply-adds, so every clone rounds alike).
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define CENDETECT_SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CENDETECT_SIMD_CLONES
#endif

namespace cendetect {
namespace morph {

// Buffers reused across the instances one thread refines (no allocation, no page faults per
// instance). Plain members rather than thread_local: in a shared library every thread_local
// access goes through __tls_get_addr, which costs more than the loops it would save.
// A run of equal pixels in one row of a grid: row, first and one-past-last column.
struct Run {
  int32_t y, x0, x1;
};

struct Scratch {
  std::vector<int32_t> g, half, diff;
  std::vector<uint8_t> bg, keep, reached;
  std::vector<int32_t> first, parent;
  std::vector<Run> runs;
};

// The region a refinement works in: an instance's window grown by its band + 1 and clamped to
// the image, with the model's mask copied in.
struct Region {
  int64_t area = 0;      // pixels of the model's mask
  double root = 0.0;     // sqrt(area)
  int64_t band = 0;      // clamp(round_half_up(band_frac * root), band_min, band_max)
  int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // in the image, half-open
  int64_t w = 0, h = 0;
};

// floor(x + 0.5), as the references' _round_half_up.
int64_t round_half_up(double x);

// Fills `region` (h x w, 0/1) and returns false when the window is empty or the mask has fewer
// than min_area pixels (the model's mask is then kept).
bool build_region(int64_t height, int64_t width, const int64_t window[4], const uint8_t* crop,
                  double band_frac, int64_t band_min, int64_t band_max, int64_t min_area,
                  Region& r, std::vector<uint8_t>& region);

// The lower 90th percentile (the ((9 (n - 1)) / 10)-th smallest, 0-based) of n values in
// 0..255 given by their histogram.
int64_t lower_90th(const int64_t* hist, int64_t n);

// A tolerance from a spread: clamp(scale * spread + offset, lo, hi), in double.
double spread_tolerance(int64_t spread, double scale, double offset, double lo, double hi);

// Pixels within Euclidean distance r of `mask` (h x w, row-major; the disk dilation, outside
// the grid adds nothing).
void dilate_disk(const std::vector<uint8_t>& mask, int64_t h, int64_t w, int64_t r,
                 std::vector<uint8_t>& out, Scratch& sc);

// Pixels whose whole disk of radius r lies in `mask`, outside the grid counting as background.
void erode_disk(const std::vector<uint8_t>& mask, int64_t h, int64_t w, int64_t r,
                std::vector<uint8_t>& out, Scratch& sc);

// The 8-connected components of `cand` that hold a pixel of `seeds`, with their holes filled
// (background not 4-connected to the grid's border). `cand` is (h + 2) x (w + 2) with a ring of
// zeros around the h x w grid; `seeds` and `out` are h x w. Returns the area of `out`, or -1
// (out untouched) when no seed pixel is in `cand`.
int64_t seeded_components_filled(const std::vector<uint8_t>& cand,
                                 const std::vector<uint8_t>& seeds, int64_t h, int64_t w,
                                 std::vector<uint8_t>& out, Scratch& sc);

}  // namespace morph
}  // namespace cendetect
