#include "refine.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <stdexcept>
#include <string>

#include "parallel.h"

namespace cendetect {
namespace {

// Buffers reused across the instances one thread refines (no allocation, no page faults per
// instance). Plain members rather than thread_local: in a shared library every thread_local
// access goes through __tls_get_addr, which costs more than the loops it would save.
struct Scratch {
  std::vector<int64_t> v;
  std::vector<int32_t> tmp, d2;
  std::vector<double> z;
  std::vector<uint8_t> bg, region, core, in_band, strong, cand, outside, hor, keep, reached;
  std::vector<int16_t> d;
  std::vector<int32_t> stack;
};

constexpr int32_t kInf = int32_t{1} << 30;  // squared distances stay below (2 * 4096)^2 = 2^26

// Lower envelope of parabolas (Felzenszwalb & Huttenlocher), one line: d[p] = min_q (p - q)^2
// + f[q] over the q with a finite f. Exact: the minimum is taken over integers; the envelope's
// breakpoints only decide which parabola is evaluated, and a tie gives the same value.
void edt_line(int32_t* f, int64_t n, std::vector<int64_t>& v, std::vector<double>& z,
              std::vector<int32_t>& tmp) {
  v.resize(static_cast<size_t>(n));
  z.resize(static_cast<size_t>(n) + 1);
  tmp.resize(static_cast<size_t>(n));
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    const int64_t fq = f[q];
    if (fq >= kInf) continue;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -std::numeric_limits<double>::infinity();
      z[1] = std::numeric_limits<double>::infinity();
      continue;
    }
    double s;
    while (true) {
      const int64_t p = v[k];
      s = static_cast<double>((fq + q * q) - (f[p] + p * p)) / (2.0 * static_cast<double>(q - p));
      if (s <= z[k] && k > 0) {
        --k;
        continue;
      }
      break;
    }
    if (s <= z[k]) {  // k == 0 and the new parabola is lower everywhere left of the old one
      v[0] = q;
      z[1] = std::numeric_limits<double>::infinity();
      continue;
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = std::numeric_limits<double>::infinity();
  }
  if (k < 0) {
    for (int64_t p = 0; p < n; ++p) tmp[p] = kInf;
  } else {
    int64_t j = 0;
    for (int64_t p = 0; p < n; ++p) {
      while (z[j + 1] < static_cast<double>(p)) ++j;
      const int64_t q = v[j];
      tmp[p] = static_cast<int32_t>((p - q) * (p - q) + f[q]);
    }
  }
  std::copy(tmp.begin(), tmp.begin() + n, f);
}

// Squared Euclidean distance from every pixel of an h x w grid to the nearest feature pixel
// (kInf when there is none). First phase (Meijster et al.): per column, the distance to the
// nearest feature in that column, by a downward and an upward sweep over whole rows (contiguous
// memory); second phase: the lower envelope of parabolas along each row.
void squared_edt(const std::vector<uint8_t>& feature, int64_t h, int64_t w,
                 std::vector<int32_t>& d2, Scratch& sc) {
  d2.resize(static_cast<size_t>(h * w));
  const int32_t far = static_cast<int32_t>(h + w + 1);  // no feature in the column
  int32_t* g = d2.data();  // column distances first, squared in place
  for (int64_t x = 0; x < w; ++x) g[x] = feature[x] ? 0 : far;
  for (int64_t y = 1; y < h; ++y) {
    const uint8_t* f = feature.data() + y * w;
    const int32_t* up = g + (y - 1) * w;
    int32_t* row = g + y * w;
    for (int64_t x = 0; x < w; ++x) row[x] = f[x] ? 0 : std::min(up[x] + 1, far);
  }
  for (int64_t y = h - 2; y >= 0; --y) {
    const int32_t* down = g + (y + 1) * w;
    int32_t* row = g + y * w;
    for (int64_t x = 0; x < w; ++x) row[x] = std::min(row[x], down[x] + 1);
  }
  for (int64_t i = 0; i < h * w; ++i) g[i] = g[i] >= far ? kInf : g[i] * g[i];
  std::vector<int64_t>& v = sc.v;
  std::vector<int32_t>& tmp = sc.tmp;
  std::vector<double>& z = sc.z;
  for (int64_t y = 0; y < h; ++y) edt_line(g + y * w, w, v, z, tmp);
}

// Pixels within Euclidean distance r of `mask` (the disk dilation; outside adds nothing).
void dilate_disk(const std::vector<uint8_t>& mask, int64_t h, int64_t w, int64_t r,
                 std::vector<uint8_t>& out, Scratch& sc) {
  std::vector<int32_t>& d2 = sc.d2;
  squared_edt(mask, h, w, d2, sc);
  out.resize(mask.size());
  const int64_t r2 = r * r;
  for (size_t i = 0; i < mask.size(); ++i) out[i] = d2[i] <= r2;
}

// Pixels whose whole disk of radius r lies in `mask`, outside the grid counting as background.
void erode_disk(const std::vector<uint8_t>& mask, int64_t h, int64_t w, int64_t r,
                std::vector<uint8_t>& out, Scratch& sc) {
  const int64_t ph = h + 2, pw = w + 2;  // a ring of background around the grid
  std::vector<uint8_t>& bg = sc.bg;
  bg.assign(static_cast<size_t>(ph * pw), 1);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) bg[(y + 1) * pw + x + 1] = !mask[y * w + x];
  }
  std::vector<int32_t>& d2 = sc.d2;
  squared_edt(bg, ph, pw, d2, sc);
  out.resize(mask.size());
  const int64_t r2 = r * r;
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) out[y * w + x] = d2[(y + 1) * pw + x + 1] > r2;
  }
}

// Lower median (sorted[(n - 1) / 2]) of each channel over the selected pixels.
std::array<int, 3> lower_median(const uint8_t* image, int64_t stride, int64_t rx0, int64_t ry0,
                                int64_t h, int64_t w, const std::vector<uint8_t>& sel,
                                int64_t n) {
  std::array<std::array<int64_t, 256>, 3> hist{};
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
    for (int64_t x = 0; x < w; ++x) {
      if (!sel[y * w + x]) continue;
      for (int c = 0; c < 3; ++c) ++hist[c][row[3 * x + c]];
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

int64_t round_half_up(double x) { return static_cast<int64_t>(std::floor(x + 0.5)); }

}  // namespace

namespace {

bool refine_bar_impl(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                     const int64_t window[4], const uint8_t* crop, const BarRefineParams& params,
                     int64_t out_window[4], std::vector<uint8_t>& out, Scratch& sc) {
  const int64_t x0 = window[0], y0 = window[1], x1 = window[2], y1 = window[3];
  const int64_t cw = x1 - x0, ch = y1 - y0;
  if (cw <= 0 || ch <= 0) return false;
  int64_t area = 0;
  for (int64_t i = 0; i < cw * ch; ++i) area += crop[i] != 0;
  if (area < params.min_area) return false;
  const double root = std::sqrt(static_cast<double>(area));
  const int64_t band = std::min(std::max(round_half_up(params.band_frac * root), params.band_min),
                                params.band_max);
  const int64_t rx0 = std::max<int64_t>(0, x0 - band - 1), ry0 = std::max<int64_t>(0, y0 - band - 1);
  const int64_t rx1 = std::min(width, x1 + band + 1), ry1 = std::min(height, y1 + band + 1);
  const int64_t w = rx1 - rx0, h = ry1 - ry0, n = w * h;
  std::vector<uint8_t>& region = sc.region;
  region.assign(static_cast<size_t>(n), 0);
  for (int64_t y = 0; y < ch; ++y) {
    for (int64_t x = 0; x < cw; ++x) {
      region[(y + y0 - ry0) * w + x + x0 - rx0] = crop[y * cw + x] != 0;
    }
  }
  std::vector<uint8_t>& core = sc.core;
  erode_disk(region, h, w, std::max<int64_t>(1, round_half_up(params.core_frac * root)), core,
             sc);
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
  std::array<int64_t, 256> dh{};
  for (int64_t y = 0; y < h; ++y) {
    const uint8_t* row = image + (ry0 + y) * stride + rx0 * 3;
    for (int64_t x = 0; x < w; ++x) {
      int m = 0;
      for (int c = 0; c < 3; ++c) m = std::max(m, std::abs(row[3 * x + c] - colour[c]));
      d[y * w + x] = static_cast<int16_t>(m);
      if (core[y * w + x]) ++dh[m];
    }
  }
  int64_t spread = 0;
  {
    const int64_t want = (9 * (n_core - 1)) / 10 + 1;
    int64_t cum = 0;
    for (int v = 0; v < 256; ++v) {
      cum += dh[v];
      if (cum >= want) {
        spread = v;
        break;
      }
    }
  }
  if (static_cast<double>(spread) > params.max_spread) return false;
  const double tol = std::min(
      std::max(params.tol_scale * static_cast<double>(spread) + params.tol_offset, params.tol_min),
      params.tol_max);
  std::vector<uint8_t>& in_band = sc.in_band;
  dilate_disk(region, h, w, band, in_band, sc);
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
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t i = y * w + x;
      const uint8_t st = in_band[i] && static_cast<double>(d[i]) <= tol;
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
  // components of cand (8-connected) holding a core pixel
  std::vector<uint8_t>& keep = sc.keep;
  keep.assign(static_cast<size_t>(pn), 0);
  std::vector<int32_t>& stack = sc.stack;
  stack.clear();
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t j = pad(y, x);
      if (core[y * w + x] && cand[j]) {
        keep[j] = 1;
        stack.push_back(static_cast<int32_t>(j));
      }
    }
  }
  if (stack.empty()) return false;
  const int64_t nb8[8] = {-pw - 1, -pw, -pw + 1, -1, 1, pw - 1, pw, pw + 1};
  while (!stack.empty()) {
    const int64_t j = stack.back();
    stack.pop_back();
    for (int64_t o : nb8) {
      const int64_t k = j + o;
      if (cand[k] && !keep[k]) {
        keep[k] = 1;
        stack.push_back(static_cast<int32_t>(k));
      }
    }
  }
  // holes: background reachable (4-connected) from the region's border stays background; the
  // pad counts as reached so the fill never leaves the grid
  std::vector<uint8_t>& reached = sc.reached;
  reached.assign(static_cast<size_t>(pn), 0);
  for (int64_t x = 0; x < pw; ++x) reached[x] = reached[(ph - 1) * pw + x] = 1;
  for (int64_t y = 0; y < ph; ++y) reached[y * pw] = reached[y * pw + pw - 1] = 1;
  auto seed = [&](int64_t j) {
    if (!keep[j] && !reached[j]) {
      reached[j] = 1;
      stack.push_back(static_cast<int32_t>(j));
    }
  };
  for (int64_t x = 0; x < w; ++x) {
    seed(pad(0, x));
    seed(pad(h - 1, x));
  }
  for (int64_t y = 0; y < h; ++y) {
    seed(pad(y, 0));
    seed(pad(y, w - 1));
  }
  while (!stack.empty()) {
    const int64_t j = stack.back();
    stack.pop_back();
    seed(j - pw);
    seed(j + pw);
    seed(j - 1);
    seed(j + 1);
  }
  int64_t new_area = 0;
  out.assign(static_cast<size_t>(n), 0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const uint8_t v = !reached[pad(y, x)];
      out[y * w + x] = v;
      new_area += v;
    }
  }
  const double a = static_cast<double>(area), na = static_cast<double>(new_area);
  if (!(params.min_ratio * a <= na && na <= params.max_ratio * a)) return false;
  out_window[0] = rx0;
  out_window[1] = ry0;
  out_window[2] = rx1;
  out_window[3] = ry1;
  return true;
}

}  // namespace

void refine_bars(const uint8_t* image, int64_t height, int64_t width, int64_t stride,
                 const int64_t* windows, const int64_t* offsets, const uint8_t* bits,
                 int64_t bits_size, int64_t n, const uint8_t* refine,
                 const BarRefineParams& params, std::vector<int64_t>& new_windows,
                 std::vector<int64_t>& new_offsets, std::vector<uint8_t>& new_bits,
                 uint8_t* changed) {
  if (height < 0 || width < 0 || stride < 3 * width) {
    throw std::invalid_argument("refine_bars: bad image geometry");
  }
  if (n > 0 && offsets[0] != 0) throw std::invalid_argument("refine_bars: offsets[0] != 0");
  for (int64_t i = 0; i < n; ++i) {
    const int64_t* win = windows + 4 * i;
    if (win[0] < 0 || win[1] < 0 || win[0] > win[2] || win[1] > win[3] || win[2] > width ||
        win[3] > height) {
      throw std::invalid_argument("refine_bars: window " + std::to_string(i) +
                                  " is not inside the image");
    }
    if (offsets[i + 1] - offsets[i] != (win[2] - win[0]) * (win[3] - win[1]) ||
        offsets[i + 1] > bits_size) {
      throw std::invalid_argument("refine_bars: offsets do not match window " +
                                  std::to_string(i) + " and the bits");
    }
  }
  std::vector<std::vector<uint8_t>> results(static_cast<size_t>(n));
  new_windows.assign(windows, windows + 4 * n);
  parallel_for(n, 1, [&](int64_t begin, int64_t end) {
    Scratch sc;
    for (int64_t i = begin; i < end; ++i) {
      changed[i] = 0;
      if (!refine[i]) continue;
      int64_t win[4];
      if (refine_bar_impl(image, height, width, stride, windows + 4 * i, bits + offsets[i],
                          params, win, results[i], sc)) {
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
