// The CUDA kernels of soft_encode (soft encode): device code only, torch-free. nvcc
// compiles them into fastcolor._C (csrc/cuda/soft_encode.cu) and NVRTC at run time
// (fastcolor/ops/jit.py); csrc/cuda/soft_encode_cuda.cpp checks the arguments, plans
// and packs each launch for both. Every instantiation the host code can launch
// is listed in fastcolor/device/instances.h.
#pragma once

#include "fastcolor/device/common.cuh"

namespace fastcolor {
namespace device {
// One thread per pixel: the k nearest bins among its cell's candidates (the
// codebook's lookup table; centres in shared memory), then zeros written in a coalesced pass over q and the k
// weights over them (the same thread, so in order).
template <int Cap>
__global__ void __launch_bounds__(cuda::kThreads)
    soft_encode_kernel(const float* __restrict__ ab, PixelLayout l,
                       const float* __restrict__ centres, int nq, LookupView lut, int k,
                       float inv_two_sigma2, int64_t pixels, float* __restrict__ out) {
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  for (int64_t p = cuda::first_pixel(); p < pixels; p += cuda::pixel_stride()) {
    const int64_t off = l.offset(p);
    const float a = ab[off], b = ab[off + l.s_c];
    float* px = out + (p / l.hw) * nq * l.hw + (p % l.hw);  // bin q at px[q * hw]
    if (!finite2(a, b)) {
      for (int q = 0; q < nq; ++q) px[q * l.hw] = NAN;
      continue;
    }
    KNearestT<Cap> nn(k);
    lookup_push(nn, lut, a, b, ca, cb);
    const float norm = gaussian_normaliser(nn, inv_two_sigma2);
    for (int q = 0; q < nq; ++q) px[q * l.hw] = 0.f;
    FC_UNROLL
    for (int j = 0; j < Cap; ++j)
      if (j < k) px[nn.idx[j] * l.hw] = gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2) / norm;
  }
}

}  // namespace device
}  // namespace fastcolor
