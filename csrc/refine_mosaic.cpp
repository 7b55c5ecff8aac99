#include "refine_mosaic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>

namespace cendetect {
namespace {

constexpr double kTwoPi = 2.0 * 3.14159265358979323846;

double wrap(double v, double s) { return v - s * std::floor(v / s); }

inline int max_step(const uint8_t* a, const uint8_t* b) {
  return std::max({std::abs(a[0] - b[0]), std::abs(a[1] - b[1]), std::abs(a[2] - b[2])});
}

// Mean max-channel step across each column boundary (axis 0: between x and x + 1) or row
// boundary (axis 1), over pairs of core pixels; fewer than 3 pairs: not valid (0).
void step_profile(const uint8_t* image, int64_t stride, int64_t rx0, int64_t ry0, int64_t h,
                  int64_t w, const std::vector<uint8_t>& core, int axis,
                  std::vector<double>& prof, std::vector<uint8_t>& ok, MosaicScratch& sc) {
  const int64_t n = axis == 0 ? w - 1 : h - 1;
  std::vector<int64_t>& sums = sc.sums;
  std::vector<int64_t>& counts = sc.counts;
  sums.assign(static_cast<size_t>(std::max<int64_t>(n, 0)), 0);
  counts.assign(sums.size(), 0);
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
    const uint8_t* c = core.data() + y * w;
    if (axis == 0) {
      for (int64_t x = 0; x + 1 < w; ++x) {
        if (c[x] && c[x + 1]) {
          sums[x] += max_step(row + 3 * x, row + 3 * x + 3);
          ++counts[x];
        }
      }
    } else if (y + 1 < h) {
      const uint8_t* below = row + stride;
      const uint8_t* cb = c + w;
      int64_t s = 0, k = 0;
      for (int64_t x = 0; x < w; ++x) {
        if (c[x] && cb[x]) {
          s += max_step(row + 3 * x, below + 3 * x);
          ++k;
        }
      }
      sums[y] = s;
      counts[y] = k;
    }
  }
  prof.assign(sums.size(), 0.0);
  ok.assign(sums.size(), 0);
  for (size_t i = 0; i < sums.size(); ++i) {
    ok[i] = counts[i] >= 3;
    if (ok[i]) prof[i] = static_cast<double>(sums[i]) / static_cast<double>(counts[i]);
  }
}

void centred(const std::vector<double>& prof, const std::vector<uint8_t>& ok,
             std::vector<double>& q) {
  double total = 0.0;
  int64_t n = 0;
  for (size_t i = 0; i < prof.size(); ++i) {
    if (ok[i]) {
      total += prof[i];
      ++n;
    }
  }
  const double mean = total / static_cast<double>(n);
  q.assign(prof.size(), 0.0);
  for (size_t i = 0; i < prof.size(); ++i) q[i] = ok[i] ? prof[i] - mean : 0.0;
}

// sum_t q[t - 1] exp(-2 pi i u t), t = 1..n, by the phasor recurrence (as the reference), for
// kBatch frequencies at once: each frequency's chain of complex products is a long dependency
// chain, and interleaving independent chains keeps the multipliers busy. Every lane performs
// exactly the reference's operations in the reference's order, so the results are the same.
// 32 lanes are 4 independent chains of 8-wide AVX-512 vectors (16 of SSE2 pairs); the clones
// below pick the widest unit the CPU has at load time. No lane ever fuses a multiply-add
// (-ffp-contract=off, and none of the clones' targets enables FMA), so every clone rounds as
// the reference does (CENDETECT_SIMD_CLONES, morphology.h).
constexpr int kBatch = 32;


CENDETECT_SIMD_CLONES void coefficients(const std::vector<double>& q, const double* u, int count, double* ar,
                  double* ai) {
  double rr[kBatch], ri[kBatch], zr[kBatch], zi[kBatch];
  for (int b = 0; b < kBatch; ++b) {
    const double a = kTwoPi * u[b < count ? b : 0];
    rr[b] = std::cos(a);
    ri[b] = -std::sin(a);
    zr[b] = rr[b];
    zi[b] = ri[b];
    ar[b] = 0.0;
    ai[b] = 0.0;
  }
  for (double v : q) {
    for (int b = 0; b < kBatch; ++b) {
      ar[b] += v * zr[b];
      ai[b] += v * zi[b];
      const double nr = zr[b] * rr[b] - zi[b] * ri[b];
      const double ni = zr[b] * ri[b] + zi[b] * rr[b];
      zr[b] = nr;
      zi[b] = ni;
    }
  }
}

struct Spec {
  double value, xr, xi, yr, yi;
};

// The summed Fourier magnitude of both profiles at up to kBatch frequencies.
void spectrum(const std::vector<double>& qx, const std::vector<double>& qy, const double* u,
              int count, Spec* out) {
  double xr[kBatch], xi[kBatch], yr[kBatch], yi[kBatch];
  coefficients(qx, u, count, xr, xi);
  coefficients(qy, u, count, yr, yi);
  for (int b = 0; b < count; ++b) {
    const double mx = std::sqrt(xr[b] * xr[b] + xi[b] * xi[b]);
    const double my = std::sqrt(yr[b] * yr[b] + yi[b] * yi[b]);
    out[b] = Spec{mx + my, xr[b], xi[b], yr[b], yi[b]};
  }
}

double contrast(const std::vector<double>& prof, const std::vector<uint8_t>& ok, double s,
                double phase) {
  double on_sum = 0.0, off_sum = 0.0;
  int64_t n_on = 0, n_off = 0;
  for (size_t x = 0; x < prof.size(); ++x) {
    if (!ok[x]) continue;
    double f = (static_cast<double>(x + 1) - phase) / s;
    f -= std::floor(f);
    const double dist = std::min(f, 1.0 - f) * s;
    if (dist < 1.0) {
      on_sum += prof[x];
      ++n_on;
    } else if (dist >= 1.5) {
      off_sum += prof[x];
      ++n_off;
    }
  }
  if (n_on < 2 || n_off < 2) return 0.0;
  return (on_sum / static_cast<double>(n_on)) / (off_sum / static_cast<double>(n_off) + 1.0);
}

// Cell index of each pixel centre x + 0.5 and its distance (px) to the nearest seam.
void axis_cells(int64_t n, double s, double phase, std::vector<int64_t>& cell,
                std::vector<double>& dist) {
  cell.resize(static_cast<size_t>(n));
  dist.resize(static_cast<size_t>(n));
  for (int64_t x = 0; x < n; ++x) {
    const double v = (static_cast<double>(x) + 0.5 - phase) / s;
    const double c = std::floor(v);
    const double f = v - c;
    cell[x] = static_cast<int64_t>(c);
    dist[x] = std::min(f, 1.0 - f) * s;
  }
}

}  // namespace

bool estimate_mosaic_grid(const uint8_t* image, int64_t stride, int64_t rx0, int64_t ry0,
                          int64_t h, int64_t w, const std::vector<uint8_t>& core,
                          const MosaicRefineParams& params, MosaicGrid& grid, MosaicScratch& sc) {
  step_profile(image, stride, rx0, ry0, h, w, core, 0, sc.prof_x, sc.ok_x, sc);
  step_profile(image, stride, rx0, ry0, h, w, core, 1, sc.prof_y, sc.ok_y, sc);
  int64_t nx = 0, ny = 0;
  for (uint8_t o : sc.ok_x) nx += o;
  for (uint8_t o : sc.ok_y) ny += o;
  if (nx < 8 || ny < 8) return false;
  const double smax = static_cast<double>(std::min(nx, ny)) / 2.0;
  if (smax < params.search_min) return false;
  centred(sc.prof_x, sc.ok_x, sc.q_x);
  centred(sc.prof_y, sc.ok_y, sc.q_y);
  const double du =
      1.0 / (4.0 * static_cast<double>(std::max(sc.prof_x.size(), sc.prof_y.size())));
  const double u0 = 1.0 / smax, u_end = 1.0 / params.search_min;
  std::vector<double>& spec = sc.spec;
  spec.clear();
  int64_t n_freq = 0;
  while (u0 + static_cast<double>(n_freq) * du < u_end) ++n_freq;
  for (int64_t k0 = 0; k0 < n_freq; k0 += kBatch) {
    const int count = static_cast<int>(std::min<int64_t>(kBatch, n_freq - k0));
    double us[kBatch];
    Spec vals[kBatch];
    for (int b = 0; b < count; ++b) us[b] = u0 + static_cast<double>(k0 + b) * du;
    spectrum(sc.q_x, sc.q_y, us, count, vals);
    for (int b = 0; b < count; ++b) spec.push_back(vals[b].value);
  }
  std::vector<int64_t>& peaks = sc.peaks;
  peaks.clear();
  const int64_t n_u = static_cast<int64_t>(spec.size());
  for (int64_t k = 1; k + 1 < n_u; ++k) {
    if (spec[k] >= spec[k - 1] && spec[k] >= spec[k + 1]) peaks.push_back(k);
  }
  std::stable_sort(peaks.begin(), peaks.end(),
                   [&spec](int64_t a, int64_t b) { return spec[a] > spec[b]; });
  bool found = false;
  const int64_t n_try = std::min<int64_t>(params.max_candidates, peaks.size());
  for (int64_t p = 0; p < n_try; ++p) {
    const double uk = u0 + static_cast<double>(peaks[p]) * du;
    double best_u = 0.0;
    Spec best{};
    for (int j0 = 0; j0 < 17; j0 += kBatch) {  // a finer grid over [u_k - du, u_k + du]
      const int count = std::min(kBatch, 17 - j0);
      double us[kBatch];
      Spec vals[kBatch];
      for (int b = 0; b < count; ++b) us[b] = uk + static_cast<double>(j0 + b - 8) * (du / 8.0);
      spectrum(sc.q_x, sc.q_y, us, count, vals);
      for (int b = 0; b < count; ++b) {
        if (j0 + b == 0 || vals[b].value > best.value) {
          best = vals[b];
          best_u = us[b];
        }
      }
    }
    const double s = 1.0 / best_u;
    const double phx = wrap(-std::atan2(best.xi, best.xr) / (kTwoPi * best_u), s);
    const double phy = wrap(-std::atan2(best.yi, best.yr) / (kTwoPi * best_u), s);
    const double c = std::min(contrast(sc.prof_x, sc.ok_x, s, phx),
                              contrast(sc.prof_y, sc.ok_y, s, phy));
    if (!found || c > grid.contrast) {
      grid = MosaicGrid{s, phx, phy, c};
      found = true;
    }
  }
  return found;
}

bool refine_mosaic_one(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                       const int64_t window[4], const uint8_t* crop,
                       const MosaicRefineParams& params, int64_t out_window[4],
                       std::vector<uint8_t>& out, MosaicScratch& sc) {
  morph::Region rg;
  std::vector<uint8_t>& region = sc.region;
  if (!morph::build_region(height, width, window, crop, params.band_frac, params.band_min,
                           params.band_max, params.min_area, rg, region)) {
    return false;
  }
  const int64_t area = rg.area, band = rg.band, w = rg.w, h = rg.h, n = w * h;
  const int64_t rx0 = rg.x0, ry0 = rg.y0, rx1 = rg.x1, ry1 = rg.y1;
  const double root = rg.root;
  std::vector<uint8_t>& core = sc.core;
  const int64_t r_core = std::max<int64_t>(1, morph::round_half_up(params.core_frac * root));
  morph::erode_disk(region, h, w, r_core, core, sc);
  int64_t n_core = 0;
  for (int64_t i = 0; i < n; ++i) n_core += core[i];
  if (n_core < params.min_core) return false;
  MosaicGrid grid;
  if (!estimate_mosaic_grid(image, stride, rx0, ry0, h, w, core, params, grid, sc)) return false;
  if (grid.contrast < params.min_contrast || grid.period < params.min_period) return false;
  const double s = grid.period;
  axis_cells(w, s, grid.phase_x, sc.cell_x, sc.dist_x);
  axis_cells(h, s, grid.phase_y, sc.cell_y, sc.dist_y);
  const std::vector<int64_t>& cx = sc.cell_x;
  const std::vector<int64_t>& cy = sc.cell_y;
  // largest max-channel difference to a 4-neighbour in the same cell (-1: none)
  std::vector<int16_t>& big = sc.big;
  big.assign(static_cast<size_t>(n), -1);
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
    int16_t* b = big.data() + y * w;
    for (int64_t x = 0; x + 1 < w; ++x) {
      if (cx[x] != cx[x + 1]) continue;
      const int16_t d = static_cast<int16_t>(max_step(row + 3 * x, row + 3 * x + 3));
      b[x] = std::max(b[x], d);
      b[x + 1] = std::max(b[x + 1], d);
    }
    if (y + 1 < h && cy[y] == cy[y + 1]) {
      const uint8_t* below = row + stride;
      int16_t* bb = b + w;
      for (int64_t x = 0; x < w; ++x) {
        const int16_t d = static_cast<int16_t>(max_step(row + 3 * x, below + 3 * x));
        b[x] = std::max(b[x], d);
        bb[x] = std::max(bb[x], d);
      }
    }
  }
  // per-cell counts: cells indexed from the region's first cell on each axis
  const int64_t ncx = cx[w - 1] - cx[0] + 1, ncy = cy[h - 1] - cy[0] + 1;
  const size_t n_cells = static_cast<size_t>(ncx * ncy);
  sc.n_inner.assign(n_cells, 0);
  sc.n_flat.assign(n_cells, 0);
  sc.n_cov.assign(n_cells, 0);
  sc.n_all.assign(n_cells, 0);
  // Per column, once: its cell relative to the first and whether it lies on a seam. Columns of
  // one cell are consecutive (the cell index never decreases along x), so each row is a few
  // runs of columns [x0, x1) sharing a cell; the per-cell counts are made per run.
  std::vector<int64_t>& col_cell = sc.col_cell;
  col_cell.resize(static_cast<size_t>(w));
  std::vector<uint8_t>& seam_x = sc.seam;  // per column here, not per pixel
  seam_x.resize(static_cast<size_t>(w));
  for (int64_t x = 0; x < w; ++x) {
    col_cell[x] = cx[x] - cx[0];
    seam_x[x] = sc.dist_x[x] < params.seam;
  }
  struct Run {
    int64_t x0, x1, cell, inner;  // inner: the run's columns off the seams
  };
  std::vector<Run> runs;
  for (int64_t x = 0; x < w;) {
    Run r{x, x, col_cell[x], 0};
    while (r.x1 < w && col_cell[r.x1] == r.cell) r.inner += !seam_x[r.x1++];
    x = r.x1;
    runs.push_back(r);
  }
  std::array<std::array<int32_t, 256>, 4> part{};  // four copies (refine.cpp lower_median)
  int64_t n_judged = 0;
  for (int64_t y = 0; y < h; ++y) {
    const bool seam_y = sc.dist_y[y] < params.seam;
    const int64_t row_cell = (cy[y] - cy[0]) * ncx;
    const int64_t i0 = y * w;
    for (const Run& r : runs) {
      const int64_t c = row_cell + r.cell;
      int64_t cov = 0;
      for (int64_t x = r.x0; x < r.x1; ++x) cov += region[i0 + x];
      sc.n_all[c] += r.x1 - r.x0;
      sc.n_cov[c] += cov;
      if (!seam_y) sc.n_inner[c] += r.inner;
    }
    if (seam_y) continue;
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = i0 + x;
      if (core[i] && !seam_x[x] && big[i] >= 0) {
        ++part[x & 3][big[i]];
        ++n_judged;
      }
    }
  }
  std::array<int64_t, 256> hist{};
  for (int v = 0; v < 256; ++v) {
    hist[v] = int64_t{part[0][v]} + part[1][v] + part[2][v] + part[3][v];
  }
  if (n_judged < params.min_core) return false;
  const int64_t spread = morph::lower_90th(hist.data(), n_judged);
  if (static_cast<double>(spread) > params.max_spread) return false;
  const double tol = morph::spread_tolerance(spread, params.tol_scale, params.tol_offset,
                                             params.tol_min, params.tol_max);
  // big is an integer in [0, 255] (or -1): big <= tol exactly when big <= floor(tol)
  const int64_t tol_int = tol >= 255.0 ? 255 : static_cast<int64_t>(std::floor(tol));
  std::vector<uint8_t>& flat = sc.flat;
  flat.resize(static_cast<size_t>(n));
  for (int64_t y = 0; y < h; ++y) {
    const bool seam_y = sc.dist_y[y] < params.seam;
    const int64_t row_cell = (cy[y] - cy[0]) * ncx;
    const int64_t i0 = y * w;
    for (int64_t x = 0; x < w; ++x) {
      const int16_t b = big[i0 + x];
      flat[i0 + x] = b >= 0 && b <= tol_int;
    }
    if (seam_y) continue;
    for (const Run& r : runs) {
      int64_t nf = 0;
      for (int64_t x = r.x0; x < r.x1; ++x) nf += flat[i0 + x] & !seam_x[x];
      sc.n_flat[row_cell + r.cell] += nf;
    }
  }
  // each cell's verdict, once: kWhole (every pixel in), kDropped (every pixel out), kCut (the
  // flat, in-mask pixels off the seams), kKeep (the model's mask)
  enum : uint8_t { kKeep = 0, kWhole = 1, kDropped = 2, kCut = 3 };
  std::vector<uint8_t>& verdict = sc.verdict;
  verdict.assign(n_cells, kKeep);
  for (size_t c = 0; c < n_cells; ++c) {
    const int64_t ni = sc.n_inner[c];
    if (ni <= 0) continue;
    const double inner = static_cast<double>(ni);
    const double nf = static_cast<double>(sc.n_flat[c]);
    const bool whole =
        nf >= params.whole_frac * inner &&
        static_cast<double>(sc.n_cov[c]) >= params.cover * static_cast<double>(sc.n_all[c]);
    if (whole) {
      verdict[c] = kWhole;
    } else if (nf <= params.cut_frac * inner) {
      verdict[c] = kDropped;
    } else if (nf < params.whole_frac * inner) {
      verdict[c] = kCut;
    }
  }
  std::vector<uint8_t>& in_band = sc.in_band;
  morph::dilate_disk(region, h, w, band, in_band, sc);
  // the candidate grid carries a one-pixel ring of zeros (morph::seeded_components_filled)
  const int64_t pw = w + 2;
  std::vector<uint8_t>& cand = sc.cand;
  cand.assign(static_cast<size_t>(pw * (h + 2)), 0);
  for (int64_t y = 0; y < h; ++y) {
    const bool seam_y = sc.dist_y[y] < params.seam;
    const int64_t row_cell = (cy[y] - cy[0]) * ncx;
    const int64_t i0 = y * w;
    uint8_t* crow = cand.data() + (y + 1) * pw + 1;
    for (const Run& r : runs) {
      const uint8_t verdict_c = verdict[row_cell + r.cell];
      for (int64_t x = r.x0; x < r.x1; ++x) {
        const int64_t i = i0 + x;
        uint8_t v = region[i];
        if (verdict_c == kWhole) {
          v = 1;
        } else if (verdict_c == kDropped) {
          v = 0;
        } else if (verdict_c == kCut && !seam_y && !seam_x[x]) {
          v = flat[i] && region[i];
        }
        crow[x] = (v && in_band[i]) || core[i];
      }
    }
  }
  const int64_t new_area = morph::seeded_components_filled(cand, core, h, w, out, sc);
  if (new_area < 0) return false;
  const double a = static_cast<double>(area), na = static_cast<double>(new_area);
  if (!(params.min_ratio * a <= na && na <= params.max_ratio * a)) return false;
  out_window[0] = rx0;
  out_window[1] = ry0;
  out_window[2] = rx1;
  out_window[3] = ry1;
  return true;
}

}  // namespace cendetect
