#include "morphology.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace cendetect {
namespace morph {
namespace {

// Pixels within Euclidean distance r of a feature pixel of an h x w grid (out[i] = 1 where
// min over features of dx^2 + dy^2 <= r^2); with `border_is_feature`, every pixel outside the
// grid counts as a feature too. Exact and integer-only, in two separable passes: (1) per
// column, the vertical distance g to the nearest feature in that column (capped at r + 1:
// farther never reaches), by a downward and an upward sweep over whole rows; (2) per row, each
// pixel x' with g <= r covers |x - x'| <= floor(sqrt(r^2 - g^2)) (the nearest feature of column
// x' is the best that column offers any pixel of the row), marked in a difference array and
// summed. O(h w) whatever r is, no division, no float.
void disk_cover(const std::vector<uint8_t>& feature, int64_t h, int64_t w, int64_t r,
                bool border_is_feature, std::vector<uint8_t>& out, Scratch& sc) {
  out.resize(static_cast<size_t>(h * w));
  if (h <= 0 || w <= 0) return;
  if (r < 0) {  // a negative radius reaches nothing
    std::fill(out.begin(), out.end(), uint8_t{0});
    return;
  }
  const int32_t cap = static_cast<int32_t>(r + 1);  // "no feature within r" in this column
  std::vector<int32_t>& g = sc.g;
  g.resize(static_cast<size_t>(h * w));
  const int32_t top = border_is_feature ? 1 : cap;  // row -1 is a feature: distance 1
  for (int64_t x = 0; x < w; ++x) g[x] = feature[x] ? 0 : std::min(top, cap);
  for (int64_t y = 1; y < h; ++y) {
    const uint8_t* f = feature.data() + y * w;
    const int32_t* up = g.data() + (y - 1) * w;
    int32_t* row = g.data() + y * w;
    for (int64_t x = 0; x < w; ++x) row[x] = f[x] ? 0 : std::min(up[x] + 1, cap);
  }
  if (border_is_feature) {
    int32_t* last = g.data() + (h - 1) * w;
    for (int64_t x = 0; x < w; ++x) last[x] = std::min(last[x], int32_t{1});  // row h
  }
  for (int64_t y = h - 2; y >= 0; --y) {
    const int32_t* down = g.data() + (y + 1) * w;
    int32_t* row = g.data() + y * w;
    for (int64_t x = 0; x < w; ++x) row[x] = std::min(row[x], down[x] + 1);
  }
  // half[k] = floor(sqrt(r^2 - k^2)) for k = 0..r, exactly; half[r + 1] reaches nothing
  constexpr int32_t kNever = int32_t{1} << 29;
  std::vector<int32_t>& half = sc.half;
  half.resize(static_cast<size_t>(cap) + 1);
  for (int64_t k = 0; k <= cap; ++k) {
    const int64_t rest = r * r - k * k;
    if (k > r || rest < 0) {
      half[static_cast<size_t>(k)] = -kNever;
      continue;
    }
    int64_t s = static_cast<int64_t>(std::sqrt(static_cast<double>(rest)));
    while (s * s > rest) --s;
    while ((s + 1) * (s + 1) <= rest) ++s;
    half[static_cast<size_t>(k)] = static_cast<int32_t>(s);
  }
  // each column x' with g <= r covers [x' - half, x' + half]: +1 / -1 in a difference array,
  // then a running sum (independent increments: no serial dependence between columns)
  std::vector<int32_t>& diff = sc.diff;
  diff.resize(static_cast<size_t>(w) + 1);
  for (int64_t y = 0; y < h; ++y) {
    const int32_t* row = g.data() + y * w;
    std::fill(diff.begin(), diff.end(), 0);
    if (border_is_feature && r > 0) {  // columns -1 and w (g = 0) reach r pixels in
      ++diff[0];
      --diff[static_cast<size_t>(std::min<int64_t>(w, r))];
      ++diff[static_cast<size_t>(std::max<int64_t>(0, w - r))];
      --diff[static_cast<size_t>(w)];
    }
    for (int64_t x = 0; x < w; ++x) {
      if (row[x] > r) continue;
      const int64_t hw = half[static_cast<size_t>(row[x])];
      ++diff[static_cast<size_t>(std::max<int64_t>(0, x - hw))];
      --diff[static_cast<size_t>(std::min<int64_t>(w, x + hw + 1))];
    }
    uint8_t* o = out.data() + y * w;
    int32_t run = 0;
    for (int64_t x = 0; x < w; ++x) {
      run += diff[static_cast<size_t>(x)];
      o[x] = run > 0;
    }
  }
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
  disk_cover(mask, h, w, r, false, out, sc);
}

void erode_disk(const std::vector<uint8_t>& mask, int64_t h, int64_t w, int64_t r,
                std::vector<uint8_t>& out, Scratch& sc) {
  // not within r of the background, everything outside the grid counting as background
  std::vector<uint8_t>& bg = sc.bg;
  bg.resize(mask.size());
  for (size_t i = 0; i < mask.size(); ++i) bg[i] = !mask[i];
  disk_cover(bg, h, w, r, true, out, sc);
  for (size_t i = 0; i < out.size(); ++i) out[i] = !out[i];
}

namespace {

int32_t find(std::vector<int32_t>& parent, int32_t i) {
  while (parent[i] != i) {
    parent[i] = parent[parent[i]];
    i = parent[i];
  }
  return i;
}

void unite(std::vector<int32_t>& parent, int32_t a, int32_t b) {
  a = find(parent, a);
  b = find(parent, b);
  if (a != b) parent[std::max(a, b)] = std::min(a, b);
}

// The runs of `value` in each row of an h x w grid read through `at(y, x)`, with first[y] the
// index of row y's first run (first[h] = the total).
template <typename At>
void row_runs(int64_t h, int64_t w, uint8_t value, At at, std::vector<Run>& runs,
              std::vector<int32_t>& first) {
  runs.clear();
  first.assign(static_cast<size_t>(h) + 1, 0);
  for (int64_t y = 0; y < h; ++y) {
    first[y] = static_cast<int32_t>(runs.size());
    int64_t x = 0;
    while (x < w) {
      while (x < w && at(y, x) != value) ++x;
      if (x == w) break;
      const int64_t x0 = x;
      while (x < w && at(y, x) == value) ++x;
      runs.push_back(Run{static_cast<int32_t>(y), static_cast<int32_t>(x0),
                         static_cast<int32_t>(x)});
    }
  }
  first[h] = static_cast<int32_t>(runs.size());
}

// Union-find over runs: runs of adjacent rows join when their column spans overlap (4-connected)
// or touch diagonally as well (8-connected: spans widened by one).
void join_rows(const std::vector<Run>& runs, const std::vector<int32_t>& first, int64_t h,
               bool eight, std::vector<int32_t>& parent) {
  parent.resize(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) parent[i] = static_cast<int32_t>(i);
  const int32_t grow = eight ? 1 : 0;
  for (int64_t y = 1; y < h; ++y) {
    int32_t a = first[y - 1], b = first[y];
    const int32_t a_end = first[y], b_end = first[y + 1];
    while (a < a_end && b < b_end) {
      const Run& ra = runs[a];
      const Run& rb = runs[b];
      if (ra.x0 < rb.x1 + grow && rb.x0 < ra.x1 + grow) unite(parent, a, b);
      // advance the run that ends first
      if (ra.x1 < rb.x1) {
        ++a;
      } else {
        ++b;
      }
    }
  }
}

}  // namespace

int64_t seeded_components_filled(const std::vector<uint8_t>& cand,
                                 const std::vector<uint8_t>& seeds, int64_t h, int64_t w,
                                 std::vector<uint8_t>& out, Scratch& sc) {
  // Run-length connected components (two passes over row runs with union-find) instead of a
  // per-pixel flood fill: each pixel is read once to find the runs, and joining works on runs.
  const int64_t pw = w + 2;
  std::vector<Run>& runs = sc.runs;
  std::vector<int32_t>& first = sc.first;
  std::vector<int32_t>& parent = sc.parent;
  // 1. the 8-connected components of cand holding a seed pixel
  row_runs(h, w, 1, [&](int64_t y, int64_t x) { return cand[(y + 1) * pw + x + 1] ? 1 : 0; },
           runs, first);
  join_rows(runs, first, h, true, parent);
  std::vector<uint8_t>& seeded = sc.keep;
  seeded.assign(runs.size(), 0);
  bool any = false;
  for (size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    const uint8_t* srow = seeds.data() + static_cast<int64_t>(r.y) * w;
    for (int32_t x = r.x0; x < r.x1; ++x) {
      if (srow[x]) {
        seeded[find(parent, static_cast<int32_t>(i))] = 1;
        any = true;
        break;
      }
    }
  }
  if (!any) return -1;
  out.assign(static_cast<size_t>(h * w), 0);
  for (size_t i = 0; i < runs.size(); ++i) {
    if (!seeded[find(parent, static_cast<int32_t>(i))]) continue;
    const Run& r = runs[i];
    std::fill(out.begin() + r.y * w + r.x0, out.begin() + r.y * w + r.x1, uint8_t{1});
  }
  // 2. holes: background runs (4-connected) that reach no border of the grid become mask
  row_runs(h, w, 0, [&](int64_t y, int64_t x) { return out[y * w + x]; }, runs, first);
  join_rows(runs, first, h, false, parent);
  std::vector<uint8_t>& open = sc.reached;
  open.assign(runs.size(), 0);
  for (size_t i = 0; i < runs.size(); ++i) {
    const Run& r = runs[i];
    if (r.y == 0 || r.y == h - 1 || r.x0 == 0 || r.x1 == w) {
      open[find(parent, static_cast<int32_t>(i))] = 1;
    }
  }
  int64_t new_area = 0;
  for (int64_t i = 0; i < h * w; ++i) new_area += out[i];
  for (size_t i = 0; i < runs.size(); ++i) {
    if (open[find(parent, static_cast<int32_t>(i))]) continue;
    const Run& r = runs[i];
    std::fill(out.begin() + r.y * w + r.x0, out.begin() + r.y * w + r.x1, uint8_t{1});
    new_area += r.x1 - r.x0;
  }
  return new_area;
}

}  // namespace morph
}  // namespace cendetect
