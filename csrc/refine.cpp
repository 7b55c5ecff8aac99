#include "refine.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "morphology.h"
#include "parallel.h"

namespace cendetect {
namespace {

struct Scratch : morph::Scratch {
  std::vector<uint8_t> region, core, in_band, strong, cand, outside, hor, inner;
  std::vector<int16_t> d;
};

// Lower median (sorted[(n - 1) / 2]) of each channel over the selected pixels.
std::array<int, 3> lower_median(const uint8_t* image, int64_t stride, int64_t rx0, int64_t ry0,
                                int64_t h, int64_t w, const std::vector<uint8_t>& sel,
                                int64_t n) {
  // four copies of each histogram, one per pixel column mod 4, summed after: on a flat colour
  // every pixel hits the same bin, and one copy would make each increment wait for the last
  std::array<std::array<std::array<int32_t, 256>, 3>, 4> part{};
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
    const uint8_t* srow = sel.data() + y * w;
    for (int64_t x = 0; x < w; ++x) {
      if (!srow[x]) continue;
      auto& hp = part[x & 3];
      ++hp[0][row[3 * x]];
      ++hp[1][row[3 * x + 1]];
      ++hp[2][row[3 * x + 2]];
    }
  }
  std::array<std::array<int64_t, 256>, 3> hist{};
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      hist[c][v] = int64_t{part[0][c][v]} + part[1][c][v] + part[2][c][v] + part[3][c][v];
    }
  }
  std::array<int, 3> out{};
  const int64_t want = (n - 1) / 2 + 1;
  for (int c = 0; c < 3; ++c) {
    int64_t cum = 0;
    for (int v = 0; v < 256; ++v) {
      cum += hist[c][v];
      if (cum >= want) {
        out[c] = v;
        break;
      }
    }
  }
  return out;
}

// The largest per-channel distance of each pixel of a BGR row to `colour` (integer work: every
// clone gives the same values).
CENDETECT_SIMD_CLONES void colour_distance_row(const uint8_t* row, int64_t w, int c0, int c1,
                                               int c2, int16_t* out) {
  for (int64_t x = 0; x < w; ++x) {
    const int a = std::abs(row[3 * x] - c0);
    const int b = std::abs(row[3 * x + 1] - c1);
    const int c = std::abs(row[3 * x + 2] - c2);
    out[x] = static_cast<int16_t>(std::max(a, std::max(b, c)));
  }
}

// One row of the band's outer contour (band pixels with a 4-neighbour outside the band; `up`
// and `dn` are the rows above and below, all ones beyond the grid, as are the columns beyond
// it): adds its pixel count to `rim` and those of them in `o` to `hit`. Grids hold 0/1.
// Integer sums: every clone gives the same counts.
CENDETECT_SIMD_CLONES void contour_row(const uint8_t* b, const uint8_t* up, const uint8_t* dn,
                                       const uint8_t* o, int64_t w, int32_t& rim, int32_t& hit) {
  if (w == 1) {
    rim += b[0] & static_cast<uint8_t>(~(up[0] & dn[0]));
    hit += b[0] & static_cast<uint8_t>(~(up[0] & dn[0])) & o[0];
    return;
  }
  const uint8_t e0 = b[0] & static_cast<uint8_t>(~(b[1] & up[0] & dn[0]));
  const uint8_t e1 = b[w - 1] & static_cast<uint8_t>(~(b[w - 2] & up[w - 1] & dn[w - 1]));
  int32_t r = e0 + e1, t = (e0 & o[0]) + (e1 & o[w - 1]);
  for (int64_t x = 1; x + 1 < w; ++x) {
    const uint8_t e = b[x] & static_cast<uint8_t>(~(b[x - 1] & b[x + 1] & up[x] & dn[x]));
    r += e;
    t += e & o[x];
  }
  rim += r;
  hit += t;
}

}  // namespace

namespace {

bool refine_bar_impl(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                     const int64_t window[4], const uint8_t* crop, const BarRefineParams& params,
                     int64_t out_window[4], std::vector<uint8_t>& out, Scratch& sc) {
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
  if (n_core == 0) {
    core = region;
    n_core = area;
  }
  const std::array<int, 3> colour =
      lower_median(image, stride, rx0, ry0, h, w, core, n_core);
  // d: max-channel distance to the colour; its lower 90th percentile over the core
  std::vector<int16_t>& d = sc.d;
  d.resize(static_cast<size_t>(n));
  std::array<std::array<int32_t, 256>, 4> dpart{};  // four copies, as in lower_median
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
    int16_t* drow = d.data() + y * w;
    colour_distance_row(row, w, colour[0], colour[1], colour[2], drow);
    const uint8_t* crow = core.data() + y * w;
    for (int64_t x = 0; x < w; ++x) {
      if (crow[x]) ++dpart[x & 3][drow[x]];
    }
  }
  std::array<int64_t, 256> dh{};
  for (int v = 0; v < 256; ++v) {
    dh[v] = int64_t{dpart[0][v]} + dpart[1][v] + dpart[2][v] + dpart[3][v];
  }
  const int64_t spread = morph::lower_90th(dh.data(), n_core);
  if (static_cast<double>(spread) > params.max_spread) return false;
  const double tol = morph::spread_tolerance(spread, params.tol_scale, params.tol_offset,
                                             params.tol_min, params.tol_max);
  std::vector<uint8_t>& in_band = sc.in_band;
  morph::dilate_disk(region, h, w, band, in_band, sc);
  // From here on the grids carry a one-pixel pad (never a candidate, never reached by the
  // hole fill's seeds' neighbours), so neighbour reads need no bounds checks.
  const int64_t pw = w + 2, ph = h + 2, pn = pw * ph;
  auto pad = [pw](int64_t y, int64_t x) { return (y + 1) * pw + x + 1; };
  std::vector<uint8_t>& strong = sc.strong;
  std::vector<uint8_t>& cand = sc.cand;
  std::vector<uint8_t>& outside = sc.outside;
  strong.assign(static_cast<size_t>(pn), 0);
  cand.assign(static_cast<size_t>(pn), 0);
  outside.assign(static_cast<size_t>(n), 0);
  int64_t n_outside = 0;
  // d is an integer in [0, 255]: d <= tol exactly when d <= floor(tol)
  const int16_t tol_int =
      tol >= 255.0 ? int16_t{255} : static_cast<int16_t>(std::max(-1.0, std::floor(tol)));
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      const uint8_t st = in_band[i] && d[i] <= tol_int;
      strong[pad(y, x)] = st;
      cand[pad(y, x)] = st;
      outside[i] = in_band[i] && !st && !region[i];
      n_outside += outside[i];
    }
  }
  if (params.edge_rule && n_outside > 0) {
    const std::array<int, 3> bg = lower_median(image, stride, rx0, ry0, h, w, outside, n_outside);
    // near: a strong pixel in the 3 x 3 neighbourhood (a separable 3 x 3 dilation)
    std::vector<uint8_t>& hor = sc.hor;
    hor.assign(static_cast<size_t>(pn), 0);
    for (int64_t i = 1; i + 1 < pn; ++i) hor[i] = strong[i - 1] | strong[i] | strong[i + 1];
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
      for (int64_t x = 0; x < w; ++x) {
        const int64_t i = y * w + x, j = pad(y, x);
        if (!in_band[i] || cand[j]) continue;
        if (!(hor[j - pw] | hor[j] | hor[j + pw])) continue;
        int to_c = 0, to_bg = 0;
        for (int c = 0; c < 3; ++c) {
          to_c += std::abs(row[3 * x + c] - colour[c]);
          to_bg += std::abs(row[3 * x + c] - bg[c]);
        }
        cand[j] = to_c < to_bg;
      }
    }
  }
  const int64_t new_area = morph::seeded_components_filled(cand, core, h, w, out, sc);
  if (new_area < 0) return false;
  const double a = static_cast<double>(area), na = static_cast<double>(new_area);
  if (!(params.min_ratio * a <= na && na <= params.max_ratio * a)) return false;
  // the band's limit (step 7): the result reaching the band's outer contour (band pixels with a
  // 4-neighbour outside the band; outside the grid counts as band) means the colour did not
  // stop at an edge; then it may grow only `clip` px past the model's mask
  if (params.rim_max < 1.0) {  // hits <= contour pixels: a share >= 1 never fires
    std::vector<uint8_t>& ones = sc.hor;  // a row of band pixels outside the grid
    ones.assign(static_cast<size_t>(w), 1);
    int64_t n_rim = 0, n_hit = 0;
    for (int64_t y = 0; y < h; ++y) {
      const uint8_t* b = in_band.data() + y * w;
      const uint8_t* up = y > 0 ? b - w : ones.data();
      const uint8_t* dn = y + 1 < h ? b + w : ones.data();
      int32_t rim = 0, hit = 0;  // per row: w < 2^31
      contour_row(b, up, dn, out.data() + y * w, w, rim, hit);
      n_rim += rim;
      n_hit += hit;
    }
    if (static_cast<double>(n_hit) > params.rim_max * static_cast<double>(n_rim)) {
      std::vector<uint8_t>& inner = sc.inner;
      morph::dilate_disk(region, h, w, params.clip, inner, sc);
      cand.assign(static_cast<size_t>(pn), 0);
      for (int64_t y = 0; y < h; ++y) {
        for (int64_t x = 0; x < w; ++x) {
          const int64_t i = y * w + x;
          cand[pad(y, x)] = out[i] && inner[i];
        }
      }
      if (morph::seeded_components_filled(cand, core, h, w, out, sc) < 0) return false;
    }
  }
  out_window[0] = rx0;
  out_window[1] = ry0;
  out_window[2] = rx1;
  out_window[3] = ry1;
  return true;
}

}  // namespace

void refine_instances(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                      const int64_t* windows, const int64_t* offsets, const uint8_t* bits,
                      int64_t bits_size, int64_t n, const uint8_t* kinds,
                      const BarRefineParams& bar_params,
                      const MosaicRefineParams& mosaic_params,
                      std::vector<int64_t>& new_windows, std::vector<int64_t>& new_offsets,
                      std::vector<uint8_t>& new_bits, uint8_t* changed) {
  if (height < 0 || width < 0 || stride < 3 * width) {
    throw std::invalid_argument("refine_instances: bad image geometry");
  }
  if (n > 0 && offsets[0] != 0) throw std::invalid_argument("refine_instances: offsets[0] != 0");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* win = windows + 4 * i;
    if (win[0] < 0 || win[1] < 0 || win[0] > win[2] || win[1] > win[3] || win[2] > width ||
        win[3] > height) {
      throw std::invalid_argument("refine_instances: window " + std::to_string(i) +
                                  " is not inside the image");
    }
    if (offsets[i + 1] - offsets[i] != (win[2] - win[0]) * (win[3] - win[1]) ||
        offsets[i + 1] > bits_size) {
      throw std::invalid_argument("refine_instances: offsets do not match window " +
                                  std::to_string(i) + " and the bits");
    }
  }
  std::vector<std::vector<uint8_t>> results(static_cast<size_t>(n));
  new_windows.assign(windows, windows + 4 * n);
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    Scratch sc;
    MosaicScratch msc;
    for (int64_t i = begin; i < end; ++i) {
      changed[i] = 0;
      int64_t win[4];
      bool done = false;
      if (kinds[i] == kRefineBar) {
        done = refine_bar_impl(image, height, width, stride, windows + 4 * i, bits + offsets[i],
                               bar_params, win, results[i], sc);
      } else if (kinds[i] == kRefineMosaic) {
        done = refine_mosaic_one(image, height, width, stride, windows + 4 * i,
                                 bits + offsets[i], mosaic_params, win, results[i], msc);
      }
      if (done) {
        std::copy(win, win + 4, new_windows.begin() + 4 * i);
        changed[i] = 1;
      }
    }
  });
  new_offsets.assign(static_cast<size_t>(n) + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    const int64_t size = changed[i] ? static_cast<int64_t>(results[i].size())
                                    : offsets[i + 1] - offsets[i];
    new_offsets[i + 1] = new_offsets[i] + size;
  }
  new_bits.resize(static_cast<size_t>(new_offsets[n]));
  for (int64_t i = 0; i < n; ++i) {
    if (changed[i]) {
      std::copy(results[i].begin(), results[i].end(), new_bits.begin() + new_offsets[i]);
    } else {
      std::copy(bits + offsets[i], bits + offsets[i + 1], new_bits.begin() + new_offsets[i]);
    }
  }
}

}  // namespace cendetect
