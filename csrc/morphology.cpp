#include "morphology.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cendetect {
namespace morph {
namespace {

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

}  // namespace

int64_t round_half_up(double x) { return static_cast<int64_t>(std::floor(x + 0.5)); }

int64_t lower_90th(const int64_t* hist, int64_t n) {
  const int64_t want = (9 * (n - 1)) / 10 + 1;
  int64_t cum = 0;
  for (int v = 0; v < 256; ++v) {
    cum += hist[v];
    if (cum >= want) return v;
  }
  return 0;
}

double spread_tolerance(int64_t spread, double scale, double offset, double lo, double hi) {
  return std::min(std::max(scale * static_cast<double>(spread) + offset, lo), hi);
}

bool build_region(int64_t height, int64_t width, const int64_t window[4], const uint8_t* crop,
                  double band_frac, int64_t band_min, int64_t band_max, int64_t min_area,
                  Region& r, std::vector<uint8_t>& region) {
  const int64_t x0 = window[0], y0 = window[1], x1 = window[2], y1 = window[3];
  const int64_t cw = x1 - x0, ch = y1 - y0;
  if (cw <= 0 || ch <= 0) return false;
  r.area = 0;
  for (int64_t i = 0; i < cw * ch; ++i) r.area += crop[i] != 0;
  if (r.area < min_area) return false;
  r.root = std::sqrt(static_cast<double>(r.area));
  r.band = std::min(std::max(round_half_up(band_frac * r.root), band_min), band_max);
  r.x0 = std::max<int64_t>(0, x0 - r.band - 1);
  r.y0 = std::max<int64_t>(0, y0 - r.band - 1);
  r.x1 = std::min(width, x1 + r.band + 1);
  r.y1 = std::min(height, y1 + r.band + 1);
  r.w = r.x1 - r.x0;
  r.h = r.y1 - r.y0;
  region.assign(static_cast<size_t>(r.w * r.h), 0);
  for (int64_t y = 0; y < ch; ++y) {
    for (int64_t x = 0; x < cw; ++x) {
      region[(y + y0 - r.y0) * r.w + x + x0 - r.x0] = crop[y * cw + x] != 0;
    }
  }
  return true;
}

void dilate_disk(const std::vector<uint8_t>& mask, int64_t h, int64_t w, int64_t r,
                 std::vector<uint8_t>& out, Scratch& sc) {
  std::vector<int32_t>& d2 = sc.d2;
  squared_edt(mask, h, w, d2, sc);
  out.resize(mask.size());
  const int64_t r2 = r * r;
  for (size_t i = 0; i < mask.size(); ++i) out[i] = d2[i] <= r2;
}

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

int64_t seeded_components_filled(const std::vector<uint8_t>& cand,
                                 const std::vector<uint8_t>& seeds, int64_t h, int64_t w,
                                 std::vector<uint8_t>& out, Scratch& sc) {
  const int64_t pw = w + 2, ph = h + 2, pn = pw * ph;
  auto pad = [pw](int64_t y, int64_t x) { return (y + 1) * pw + x + 1; };
  // components of cand (8-connected) holding a seed pixel
  std::vector<uint8_t>& keep = sc.keep;
  keep.assign(static_cast<size_t>(pn), 0);
  std::vector<int32_t>& stack = sc.stack;
  stack.clear();
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const int64_t j = pad(y, x);
      if (seeds[y * w + x] && cand[j]) {
        keep[j] = 1;
        stack.push_back(static_cast<int32_t>(j));
      }
    }
  }
  if (stack.empty()) return -1;
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
  out.assign(static_cast<size_t>(h * w), 0);
  for (int64_t y = 0; y < h; ++y) {
    for (int64_t x = 0; x < w; ++x) {
      const uint8_t v = !reached[pad(y, x)];
      out[y * w + x] = v;
      new_area += v;
    }
  }
  return new_area;
}

}  // namespace morph
}  // namespace cendetect
