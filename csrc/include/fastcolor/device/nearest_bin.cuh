// The CUDA kernels of nearest_bin (nearest bin): device code only, torch-free. nvcc
// compiles them into fastcolor._C (csrc/cuda/nearest_bin.cu) and NVRTC at run time
// (fastcolor/ops/jit.py); csrc/cuda/nearest_bin_cuda.cpp checks the arguments, plans
// and packs each launch for both. Every instantiation the host code can launch
// is listed in fastcolor/device/instances.h.
#pragma once

#include "fastcolor/device/common.cuh"

namespace fastcolor {
namespace device {
// One thread per pixel: its cell's few candidates from the codebook's lookup
// table (fastcolor/lookup.h; indices through the read-only cache, centres in
// shared memory), exact distances, the usual ranking.
__global__ void __launch_bounds__(cuda::kThreads)
    nearest_bin_kernel(const float* __restrict__ ab, PixelLayout l,
                       const float* __restrict__ centres, int nq, LookupView lut, int64_t pixels,
                       int64_t* __restrict__ out) {
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  for (int64_t p = cuda::first_pixel(); p < pixels; p += cuda::pixel_stride()) {
    const int64_t off = l.offset(p);
    const float a = ab[off], b = ab[off + l.s_c];
    out[p] = finite2(a, b) ? lookup_nearest(lut, a, b, ca, cb) : -1;
  }
}

}  // namespace device
}  // namespace fastcolor
