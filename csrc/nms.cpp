#include "nms.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "parallel.h"

namespace cendetect {
namespace {

// Below this many boxes the groups of batched_nms are run on the calling thread: spawning
// threads costs more than the suppression itself.
constexpr int64_t kParallelMinBoxes = 4096;

// Decreasing score order with NaN first, as torch.sort(descending=True) orders them.
template <typename T>
std::vector<int64_t> order_by_score(const T* scores, int64_t n) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::stable_sort(order.begin(), order.end(), [scores](int64_t a, int64_t b) {
    const T sa = scores[a];
    const T sb = scores[b];
    if (std::isnan(sa)) return !std::isnan(sb);
    return sa > sb;
  });
  return order;
}

// Greedy suppression over the boxes idx[0], idx[1], ... visited in that order.
// Sets kept[r] to 1 or 0 for every position r.
template <typename T>
void greedy_nms(const T* boxes, const int64_t* idx, int64_t m, T thr, uint8_t* kept) {
  // Struct-of-arrays copy so that the inner loop is contiguous and vectorizes.
  std::vector<T> x1(m), y1(m), x2(m), y2(m), area(m);
  for (int64_t r = 0; r < m; ++r) {
    const T* b = boxes + 4 * idx[r];
    x1[r] = b[0];
    y1[r] = b[1];
    x2[r] = b[2];
    y2[r] = b[3];
    area[r] = (b[2] - b[0]) * (b[3] - b[1]);
  }
  std::vector<uint8_t> suppressed(static_cast<size_t>(m), 0);
  uint8_t* sup = suppressed.data();
  for (int64_t i = 0; i < m; ++i) {
    if (sup[i]) {
      kept[i] = 0;
      continue;
    }
    kept[i] = 1;
    const T ix1 = x1[i], iy1 = y1[i], ix2 = x2[i], iy2 = y2[i], iarea = area[i];
    // Branch-free: a box already suppressed stays suppressed, so or-ing is exact.
    for (int64_t j = i + 1; j < m; ++j) {
      const T w = std::max(T(0), std::min(ix2, x2[j]) - std::max(ix1, x1[j]));
      const T h = std::max(T(0), std::min(iy2, y2[j]) - std::max(iy1, y1[j]));
      const T inter = w * h;
      const T iou = inter / (iarea + area[j] - inter);
      sup[j] |= static_cast<uint8_t>(iou > thr);
    }
  }
}

template <typename T>
int64_t nms_impl(const T* boxes, const T* scores, int64_t n, double iou_threshold,
                 int64_t* keep) {
  if (n <= 0) return 0;
  const std::vector<int64_t> order = order_by_score(scores, n);
  std::vector<uint8_t> kept(static_cast<size_t>(n));
  // The threshold is compared in the boxes' precision, as mmcv does for float32 boxes.
  greedy_nms(boxes, order.data(), n, static_cast<T>(iou_threshold), kept.data());
  int64_t k = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (kept[r]) keep[k++] = order[r];
  }
  return k;
}

template <typename T>
int64_t batched_nms_impl(const T* boxes, const T* scores, const int64_t* idxs, int64_t n,
                         double iou_threshold, int64_t* keep) {
  if (n <= 0) return 0;
  const std::vector<int64_t> order = order_by_score(scores, n);
  // Score ranks grouped by idxs; inside a group the ranks stay increasing (stable sort).
  std::vector<int64_t> ranks(static_cast<size_t>(n));
  std::iota(ranks.begin(), ranks.end(), int64_t{0});
  std::stable_sort(ranks.begin(), ranks.end(),
                   [&](int64_t a, int64_t b) { return idxs[order[a]] < idxs[order[b]]; });
  std::vector<int64_t> grouped(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) grouped[t] = order[ranks[t]];
  std::vector<int64_t> starts;
  for (int64_t t = 0; t < n; ++t) {
    if (t == 0 || idxs[grouped[t]] != idxs[grouped[t - 1]]) starts.push_back(t);
  }
  starts.push_back(n);
  const int64_t n_groups = static_cast<int64_t>(starts.size()) - 1;

  std::vector<uint8_t> kept_grouped(static_cast<size_t>(n));
  const T thr = static_cast<T>(iou_threshold);
  auto run_groups = [&](int64_t g0, int64_t g1) {
    for (int64_t g = g0; g < g1; ++g) {
      const int64_t s = starts[g];
      greedy_nms(boxes, grouped.data() + s, starts[g + 1] - s, thr, kept_grouped.data() + s);
    }
  };
  if (n < kParallelMinBoxes) {
    run_groups(0, n_groups);
  } else {
    parallel_for(n_groups, 1, run_groups);
  }

  std::vector<uint8_t> kept_rank(static_cast<size_t>(n));
  for (int64_t t = 0; t < n; ++t) kept_rank[ranks[t]] = kept_grouped[t];
  int64_t k = 0;
  for (int64_t r = 0; r < n; ++r) {
    if (kept_rank[r]) keep[k++] = order[r];
  }
  return k;
}

}  // namespace

int64_t nms(const float* boxes, const float* scores, int64_t n, double iou_threshold,
            int64_t* keep) {
  return nms_impl(boxes, scores, n, iou_threshold, keep);
}

int64_t nms(const double* boxes, const double* scores, int64_t n, double iou_threshold,
            int64_t* keep) {
  return nms_impl(boxes, scores, n, iou_threshold, keep);
}

int64_t batched_nms(const float* boxes, const float* scores, const int64_t* idxs, int64_t n,
                    double iou_threshold, int64_t* keep) {
  return batched_nms_impl(boxes, scores, idxs, n, iou_threshold, keep);
}

int64_t batched_nms(const double* boxes, const double* scores, const int64_t* idxs, int64_t n,
                    double iou_threshold, int64_t* keep) {
  return batched_nms_impl(boxes, scores, idxs, n, iou_threshold, keep);
}

}  // namespace cendetect
