// PNG row filtering for cendetect's PNG writer (cendetect/io/png.py).
//
// Turns an OpenCV-layout 8-bit image (gray, BGR or BGRA; pixel stride `channels`, channel
// stride 1, any row stride) into PNG's filtered scanlines: height rows of 1 + width * channels
// bytes, each a filter-type byte followed by the row's samples in PNG order (RGB / RGBA: the
// B and R samples swap) filtered as the PNG specification (ISO/IEC 15948, section 9) defines:
//   0 none   Filt(x) = Orig(x)
//   1 sub    Filt(x) = Orig(x) - Orig(a)          a: same sample, pixel to the left
//   2 up     Filt(x) = Orig(x) - Orig(b)          b: same sample, row above
//   3 average Filt(x) = Orig(x) - floor((Orig(a) + Orig(b)) / 2)
//   4 paeth  Filt(x) = Orig(x) - PaethPredictor(a, b, c)   c: above-left
// all modulo 256, with samples left of the first pixel and above the first row taken as 0.
// One filter type is used for every row.
#pragma once

#include <cstdint>

namespace cendetect {

// Writes height * (1 + width * channels) bytes to out. channels is 1, 3 or 4; filter 0-4.
// Throws std::invalid_argument on other values.
void png_filter_rows(const uint8_t* src, int64_t height, int64_t width, int64_t channels,
                     int64_t row_stride, int filter, uint8_t* out);

}  // namespace cendetect
