// Exact-edge refinement of a pasted bar mask (CPU). The definition, step by step, is the
// reference implementation in engine/refine.py (refine_bar_reference); this kernel equals it
// pixel for pixel: every step is integer arithmetic (lower medians, a lower percentile,
// Euclidean disks through exact squared distance transforms, flood fills), and the few
// floating-point expressions (band and core radii, the tolerance, the area ratio) are evaluated
// in double in the same order on both sides.
#pragma once

#include <cstdint>
#include <vector>

#include "refine_mosaic.h"

namespace cendetect {

constexpr uint8_t kRefineNone = 0, kRefineBar = 1, kRefineMosaic = 2;

struct BarRefineParams {
  double band_frac = 0.15;
  int64_t band_min = 2;
  int64_t band_max = 48;
  double core_frac = 0.1;
  double tol_scale = 1.5;
  double tol_offset = 6.0;
  double tol_min = 8.0;
  double tol_max = 40.0;
  double max_spread = 24.0;
  int64_t min_area = 16;
  double min_ratio = 0.5;
  double max_ratio = 2.0;
  bool edge_rule = true;
  double rim_max = 0.05;  // step 7: share of the band's outer contour the result may reach
  int64_t clip = 2;       // and then how far past the model's mask it may grow (px)
};

// image: BGR uint8 [height, width, 3] rows `stride` bytes apart. An instance's window is
// x0, y0, x1, y1 (half-open, inside the image) of its bitmap ([y1 - y0, x1 - x0] bytes, nonzero =
// in the mask); a refined instance gets the window grown by its band + 1 (clamped to the image)
// and a new bitmap, a kept one its own.
// Every instance i with kinds[i] == kRefineBar (the bar rule, below) or kRefineMosaic
// (refine_mosaic.h), in parallel over instances (compositor threads); other kinds are copied.
// windows [n, 4], offsets [n + 1] and bits: InstanceMasks' layout. On return, new_windows,
// new_offsets and new_bits hold all n instances (refined or copied) and changed[i] says which
// were refined. Throws std::invalid_argument (before reading any bitmap) when a window is not
// inside the image or the offsets do not match the windows and bits_size.
void refine_instances(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                      const int64_t* windows, const int64_t* offsets, const uint8_t* bits,
                      int64_t bits_size, int64_t n, const uint8_t* kinds,
                      const BarRefineParams& bar_params,
                      const MosaicRefineParams& mosaic_params,
                      std::vector<int64_t>& new_windows, std::vector<int64_t>& new_offsets,
                      std::vector<uint8_t>& new_bits, uint8_t* changed);

}  // namespace cendetect
