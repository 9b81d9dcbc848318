// The CUDA kernels of bin_histogram (histogram): device code only, torch-free. nvcc
// compiles them into fastcolor._C (csrc/cuda/bin_histogram.cu) and NVRTC at run time
// (fastcolor/ops/jit.py); csrc/cuda/bin_histogram_cuda.cpp checks the arguments, plans
// and packs each launch for both. Every instantiation the host code can launch
// is listed in fastcolor/device/instances.h.
#pragma once

#include "fastcolor/device/common.cuh"

namespace fastcolor {
namespace device {
// Each block counts its pixels into a private histogram in shared memory,
// then adds it to the global one (float64): global atomics are one per bin
// per block, so their contention does not grow with the number of pixels.
// Without weights the private counts are uint32 (exact; a block sees at most
// a few million pixels) and the lanes of a warp that hit the same bin add
// their count once (__match_any_sync), so a dominant bin (the neutral one, in
// real photos) does not serialise the warp. With weights the private sums are
// float32, rounded once more when added to the float64 total.
template <bool kWeighted>
__global__ void __launch_bounds__(cuda::kThreads)
    bin_histogram_kernel(const float* __restrict__ ab, PixelLayout l,
                         const float* __restrict__ centres, int nq, LookupView lut,
                         const float* __restrict__ weight, PixelLayout lw, int64_t pixels,
                         double* __restrict__ hist) {
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  uint32_t* counts = reinterpret_cast<uint32_t*>(smem + 2 * nq);
  float* sums = smem + 2 * nq;
  for (int i = threadIdx.x; i < nq; i += blockDim.x) {
    if (kWeighted) sums[i] = 0.f; else counts[i] = 0u;
  }
  cuda::load_bins(centres, nq, ca, cb);  // ends with __syncthreads()
  const int lane = threadIdx.x & 31;
  // Every lane of a warp runs the same number of iterations, so that the warp
  // can vote together; lanes past the end count nothing.
  const int64_t stride = cuda::pixel_stride();
  const int64_t first = cuda::first_pixel() - lane;
  for (int64_t base = first; base < pixels; base += stride) {
    const int64_t p = base + lane;
    int32_t q = -1;
    float wt = 0.f;
    if (p < pixels) {
      const int64_t off = l.offset(p);
      const float a = ab[off], b = ab[off + l.s_c];
      if (finite2(a, b)) {  // non-finite ab: counted nowhere
        q = lookup_nearest(lut, a, b, ca, cb);
        if (kWeighted) wt = weight[lw.offset(p)];
      }
    }
    if (kWeighted) {
      if (q >= 0 && wt != 0.f) atomicAdd(&sums[q], wt);
    } else {
      const unsigned peers = __match_any_sync(0xffffffffu, q);
      if (q >= 0 && lane == __ffs(peers) - 1) atomicAdd(&counts[q], __popc(peers));
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nq; i += blockDim.x) {
    const double v = kWeighted ? static_cast<double>(sums[i]) : static_cast<double>(counts[i]);
    if (v != 0.0) atomicAdd(&hist[i], v);
  }
}

}  // namespace device
}  // namespace fastcolor
