// Addressing of (N, C, H, W) tensors by pixel, shared by the CPU and CUDA
// kernels. Kernels take any strides, so contiguous (NCHW), channels_last
// (NHWC) and sliced views all work without a copy; only the speed depends on
// the layout.
#pragma once

#include "fastcolor/colormath.h"

namespace fastcolor {

struct PixelLayout {
  int64_t hw = 1;   // H * W (>= 1 whenever a kernel runs)
  int64_t w = 1;    // W
  int64_t s_n = 0;  // element strides of the N, C, H and W dimensions
  int64_t s_c = 0;
  int64_t s_h = 0;
  int64_t s_w = 0;

  // Element offset of pixel p = (n * H + h) * W + w, channel 0. 64-bit
  // throughout: a batch of logits easily exceeds 2^31 elements.
  FC_HD int64_t offset(int64_t p) const {
    // 32-bit division is several times cheaper on a GPU; it serves every
    // tensor with fewer than 2^32 pixels.
    if (p <= UINT32_MAX && hw <= UINT32_MAX) {
      const uint32_t pp = static_cast<uint32_t>(p), phw = static_cast<uint32_t>(hw);
      const uint32_t n = pp / phw;
      const uint32_t r = pp - n * phw;
      const uint32_t y = r / static_cast<uint32_t>(w);
      const uint32_t x = r - y * static_cast<uint32_t>(w);
      return n * s_n + static_cast<int64_t>(y) * s_h + static_cast<int64_t>(x) * s_w;
    }
    const int64_t n = p / hw;
    const int64_t r = p - n * hw;
    const int64_t y = r / w;
    const int64_t x = r - y * w;
    return n * s_n + y * s_h + x * s_w;
  }
};

}  // namespace fastcolor
