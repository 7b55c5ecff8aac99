// Mosaic mask refinement of one pasted instance (CPU): find the pixelation grid in the core of
// the model's mask, then decide per cell and, in the cells the selection's edge cuts, per pixel.
// The definition, step by step, is the reference implementation in engine/refine_mosaic.py
// (refine_mosaic_reference); this kernel equals it pixel for pixel. Integer arithmetic where
// the definition allows; the grid search (Fourier sums by a phasor recurrence, atan2, floor)
// evaluates the same double expressions in the same order, and the build turns off fused
// multiply-adds (-ffp-contract=off).
#pragma once

#include <cstdint>
#include <vector>

#include "morphology.h"

namespace cendetect {

struct MosaicRefineParams {
  double band_frac = 0.1;
  int64_t band_min = 2;
  int64_t band_max = 32;
  double core_frac = 0.1;
  int64_t min_area = 64;
  int64_t min_core = 16;
  double search_min = 2.5;
  double min_period = 3.0;
  double min_contrast = 1.5;
  int64_t max_candidates = 6;
  double seam = 1.5;
  double tol_scale = 1.5;
  double tol_offset = 4.0;
  double tol_min = 6.0;
  double tol_max = 30.0;
  double max_spread = 24.0;
  double whole_frac = 0.8;
  double cover = 0.5;
  double cut_frac = 0.2;
  double min_ratio = 0.7;
  double max_ratio = 1.4;
};

// A mosaic grid: seams at t = phase + k * period on each axis (t: pixel-edge coordinates of
// the refinement's region; the boundary between columns x and x + 1 is t = x + 1).
struct MosaicGrid {
  double period = 0.0, phase_x = 0.0, phase_y = 0.0, contrast = 0.0;
};

struct MosaicScratch : morph::Scratch {
  std::vector<uint8_t> region, core, in_band, flat, seam, cand, verdict;
  std::vector<int16_t> big;
  std::vector<int64_t> sums, counts, cell_x, cell_y, n_inner, n_flat, n_cov, n_all, col_cell;
  std::vector<double> prof_x, prof_y, q_x, q_y, dist_x, dist_y, spec;
  std::vector<uint8_t> ok_x, ok_y;
  std::vector<int64_t> peaks;
};

// The grid the core's pixel steps show, or false without a candidate (too small a core).
// image: BGR uint8 rows `stride` bytes apart; the region is [ry0, ry0 + h) x [rx0, rx0 + w);
// core: h x w.
bool estimate_mosaic_grid(const uint8_t* image, int64_t stride, int64_t rx0, int64_t ry0,
                          int64_t h, int64_t w, const std::vector<uint8_t>& core,
                          const MosaicRefineParams& params, MosaicGrid& grid, MosaicScratch& sc);

// One instance: window x0, y0, x1, y1 (half-open, inside the image) of its bitmap `crop`
// ([y1 - y0, x1 - x0], nonzero = in the mask). On success returns true with the refined bitmap
// in `out` over out_window (the window grown by the band + 1, clamped to the image); false
// keeps the model's mask.
bool refine_mosaic_one(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                       const int64_t window[4], const uint8_t* crop,
                       const MosaicRefineParams& params, int64_t out_window[4],
                       std::vector<uint8_t>& out, MosaicScratch& sc);

}  // namespace cendetect
