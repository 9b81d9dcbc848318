// Which CUDA kernel variant runs an op over (N, Q, H, W) logits, shared by the
// loss and the decode (torch-free, no CUDA runtime calls, so it can be tested
// on its own; the device code reads only the block size from here):
//  * kTile: logits whose pixels are adjacent in memory (NCHW and other layouts
//    with C not innermost): a block owns 32 pixels and all their Q logits,
//    warp w holding bins w, w + W, ... (R per thread, in registers);
//  * kWarp: channels_last logits (C innermost, stride 1): a warp walks 32
//    pixels, its lanes spanning the bins (R per lane, 32 R >= Q);
//  * kGeneric: float64 logits, or more bins than the registers hold (one
//    thread per pixel, logits streamed).
#pragma once

#include "fastcolor/portable.h"

namespace fastcolor {
namespace cuda {
// Threads per block of the one-dimensional kernels.
constexpr int kThreads = 256;
}  // namespace cuda

#if !defined(__CUDACC_RTC__)  // host code from here on
namespace cuda {
// Kernels loop over pixels with a grid stride; this many blocks keep any
// current GPU full while bounding per-block set-up (loading the bins).
constexpr int64_t kMaxBlocks = 4096;

inline unsigned blocks_for(int64_t items) {
  const int64_t b = (items + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 1 ? 1 : b > kMaxBlocks ? kMaxBlocks : b);
}

// The register capacity of the k-nearest list a kernel is instantiated for:
// the smallest of 1, 8 and kMaxK that holds k (its template argument, as
// spelt in fastcolor/device/instances.h).
inline const char* capacity_for(int64_t k) {
  return k <= 1 ? "1" : k <= 8 ? "8" : "fastcolor::kMaxK";
}
}  // namespace cuda

struct LaunchPlan {
  enum Kind { kTile, kWarp, kGeneric };
  Kind kind = kGeneric;
  int rows = 0;   // R: bins per thread (kTile: 8 or 40; kWarp: 1, 4, 10 or 20)
  int warps = 0;  // kTile: warps per block (the bins split across them)
};

// The register budget: R = 8 (a single block of up to 8 warps) for Q <= 64,
// R = 40 for Q <= 640 (up to 16 warps); channels_last R = ceil(Q / 32) rounded
// up to 1, 4, 10 or 20 (Q <= 640). Single-bin channels_last logits (stride 1
// is then ambiguous) take the tiled kernel.
inline LaunchPlan plan_launch(bool float64, int64_t nq, int64_t channel_stride) {
  LaunchPlan p;
  if (float64) return p;
  if (channel_stride == 1 && nq > 1) {
    for (int r : {1, 4, 10, 20}) {
      if (nq <= 32 * r) {
        p.kind = LaunchPlan::kWarp;
        p.rows = r;
        return p;
      }
    }
    return p;
  }
  if (nq <= 64) {
    p.kind = LaunchPlan::kTile;
    p.rows = 8;
    p.warps = static_cast<int>((nq + 7) / 8);
  } else if (nq <= 40 * 16) {
    p.kind = LaunchPlan::kTile;
    p.rows = 40;
    p.warps = static_cast<int>((nq + 39) / 40);
  }
  return p;
}

#endif  // !__CUDACC_RTC__

}  // namespace fastcolor
