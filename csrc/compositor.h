// Mask compositor: pastes each instance's M x M mask into its box at full resolution and
// composites it into an image, walking each box once (work is proportional to the pixels inside
// the boxes, never N x H x W).
//
// Pixel model (mmdetection's `_do_paste_mask`, detectron2's `paste_masks_in_image`): pixel
// (x, y) has its centre at (x + 0.5, y + 0.5). For a box (x1, y1, x2, y2) in float32 pixels,
//   u = ((x + 0.5) - x1) / (x2 - x1) * 2 - 1            (float32, each operation rounded)
//   u = 0 where u is +-inf                              (zero-width box)
//   X = fma(u + 1, Mw / 2, -0.5)                        (torch's CPU grid_sample unnormalise)
// and likewise v, Y from the rows. The mask is sampled bilinearly at (X, Y) with zeros outside it
// (grid_sample, align_corners=False, padding zeros), with the multiply-adds fused as torch's
// AVX2/AVX-512 kernel fuses them; the pixel belongs to the instance when the sample is
// >= threshold (float32). Only the window [floor(x1) - 1, ceil(x2) + 1) x [floor(y1) - 1,
// ceil(y2) + 1), clamped to the image, is evaluated (mmdetection's skip_empty window). A box
// with a non-finite coordinate or with x2 < x1 or y2 < y1 has an empty window.
//
// Layouts: masks float32 [n, mask_h, mask_w] C-contiguous; boxes float32 [n, 4]; windows int64
// [n, 4] (x0, y0, x1, y1), half-open, inside the image; offsets int64 [n + 1] into a flat uint8
// buffer of per-instance bitmaps ("compact masks": row-major, window-sized, 0 or 1); colors uint8
// [n, channels]. Images are uint8 height x width x channels with pixel stride `channels`, channel
// stride 1 and any row stride in bytes. Errors in the arguments throw std::invalid_argument.
//
// Threads: work is split across instances and rows into chunks run on a persistent pool
// (work_pool.h; thread count from parallel.h). Every output byte is computed by exactly one
// chunk from the same inputs in the same order, so the output does not depend on the thread
// count. Where instances overlap, later instances are drawn over earlier ones (image writers
// split by rows, each row drawn instance by instance). The pixel model above is computed
// exactly; mask_sampler.h explains how most pixels are decided without sampling.
#pragma once

#include <cstdint>

namespace cendetect {

// An image the compositor writes into (see the layout above).
struct ImageView {
  uint8_t* data;
  int64_t height;
  int64_t width;
  int64_t channels;
  int64_t row_stride;  // bytes between rows; may be negative (flipped view)
};

// Writes each box's evaluation window, clamped to a height x width image, into windows [n, 4].
void paste_windows(const float* boxes, int64_t n, int64_t height, int64_t width,
                   int64_t* windows);

// Compact paste: writes instance i's window bitmap at out + offsets[i].
void paste_masks(const float* masks, int64_t n, int64_t mask_h, int64_t mask_w,
                 const float* boxes, const int64_t* windows, const int64_t* offsets,
                 int64_t height, int64_t width, float threshold, uint8_t* out);

// One pass: samples every mask and sets the selected pixels of the image to colors[i].
void paste_fill(const float* masks, int64_t n, int64_t mask_h, int64_t mask_w,
                const float* boxes, const int64_t* windows, float threshold,
                const uint8_t* colors, ImageView image);

// From compact bitmaps: selected pixels become colors[i] (alpha == 256) or are blended with it,
// pixel = (pixel * (256 - alpha) + color * alpha + 128) >> 8, for 0 <= alpha < 256.
void fill_bitmaps(const uint8_t* bits, const int64_t* windows, const int64_t* offsets, int64_t n,
                  const uint8_t* colors, int alpha, ImageView image);

// From compact bitmaps: selected pixels are copied from `src`, an image of the same channel count
// whose pixel (0, 0) lies at image pixel (src_x0, src_y0) and which covers every window.
void copy_bitmaps(const uint8_t* bits, const int64_t* windows, const int64_t* offsets, int64_t n,
                  const uint8_t* src, int64_t src_height, int64_t src_width,
                  int64_t src_row_stride, int64_t src_x0, int64_t src_y0, ImageView image);

}  // namespace cendetect
