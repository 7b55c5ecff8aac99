// Greedy non-maximum suppression on axis-aligned boxes (CPU).
//
// Semantics follow mmcv.ops.nms with offset 0 (what mmdetection 2.28 runs):
//   area = (x2 - x1) * (y2 - y1); inter = max(0, w) * max(0, h) of the intersection;
//   iou = inter / (area_i + area_j - inter); box j is suppressed when iou > iou_threshold.
// Boxes are visited in decreasing score; equal scores keep the lower index first (stable), and
// NaN scores sort before every number, as torch.sort(descending=True) puts them.
#pragma once

#include <cstdint>

namespace cendetect {

// boxes: [n, 4] row-major (x1, y1, x2, y2); scores: [n]; keep: room for n indices.
// Writes the kept indices in decreasing score order to keep[0, k) and returns k.
int64_t nms(const float* boxes, const float* scores, int64_t n, double iou_threshold,
            int64_t* keep);
int64_t nms(const double* boxes, const double* scores, int64_t n, double iou_threshold,
            int64_t* keep);

// As nms, but boxes whose idxs differ never suppress each other. The kept indices of all
// groups are returned together, in decreasing score order (ties: lower index first).
int64_t batched_nms(const float* boxes, const float* scores, const int64_t* idxs, int64_t n,
                    double iou_threshold, int64_t* keep);
int64_t batched_nms(const double* boxes, const double* scores, const int64_t* idxs, int64_t n,
                    double iou_threshold, int64_t* keep);

}  // namespace cendetect
