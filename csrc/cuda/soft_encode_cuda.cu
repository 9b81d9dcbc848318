#include <ATen/ops/empty.h>

#include "cuda_common.cuh"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

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

}  // namespace

at::Tensor soft_encode_cuda(const at::Tensor& ab, const at::Tensor& centres, int64_t k,
                            double sigma) {
  check_ab("soft_encode", ab);
  check_centres("soft_encode", centres, ab);
  check_k_sigma("soft_encode", k, sigma, centres.size(0));
  const c10::cuda::CUDAGuard guard(ab.device());
  const int64_t n = ab.size(0), h = ab.size(2), w = ab.size(3), nq = centres.size(0);
  at::Tensor out = at::empty({n, nq, h, w}, ab.options());
  const int64_t pixels = n * h * w;
  if (pixels == 0) return out;
  const at::Tensor c = centres.contiguous();
  const size_t smem = 2 * nq * sizeof(float);
  const float inv_two_sigma2 = static_cast<float>(0.5 / (sigma * sigma));
  const auto lut = lookup_table(c, k);
  cuda::with_capacity(k, [&](auto cap) {
    soft_encode_kernel<decltype(cap)::value>
        <<<cuda::blocks_for(pixels), cuda::kThreads, smem, c10::cuda::getCurrentCUDAStream()>>>(
            ab.const_data_ptr<float>(), pixel_layout(ab), c.const_data_ptr<float>(),
            static_cast<int>(nq), lut->view(), static_cast<int>(k), inv_two_sigma2, pixels,
            out.mutable_data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace fastcolor
