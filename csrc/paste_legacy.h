// The legacy Detectron mask paste of maskrcnn-benchmark's Masker (paste_mask_in_image), for
// checkpoints of that family: the M x M map padded by one zero cell on each side, the box
// scaled about its centre by (M + 2) / M in float32 and truncated to int, the padded map
// resized bilinearly (torch's upsample_bilinear2d, align_corners=False) to the box's
// (x1 - x0 + 1) x (y1 - y0 + 1) pixels, kept where > threshold (strictly) and pasted inclusively,
// clipped to the image. Every expression is float32 as torch evaluates it on the CPU (no fused
// multiply-adds), so a pixel can differ from torch only where torch's build fuses one and the
// sample is within an ulp of the threshold. The plain reference is engine/paste_legacy.py.
#pragma once

#include <cstdint>

namespace cendetect {

// windows [n, 4] (x0, y0, x1, y1, half-open, clipped to the image; empty when the box is
// outside) of each instance's pasted bitmap.
void paste_legacy_windows(const float* boxes, int64_t n, int64_t mask_size, int64_t height,
                          int64_t width, int64_t* windows);

// Writes every instance's window bitmap (0/1) into out[offsets[i]:offsets[i + 1]].
// masks: [n, mask_size, mask_size] float32 probabilities; boxes [n, 4] float32 (x1, y1, x2, y2,
// maskrcnn-benchmark's +1 convention: x2 is the last column).
void paste_legacy_masks(const float* masks, int64_t n, int64_t mask_size, const float* boxes,
                        const int64_t* windows, const int64_t* offsets, float threshold,
                        uint8_t* out);

}  // namespace cendetect
