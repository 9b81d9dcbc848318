#include <ATen/ops/empty.h>

#include "cuda_common.cuh"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

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

}  // namespace

at::Tensor nearest_bin_cuda(const at::Tensor& ab, const at::Tensor& centres) {
  check_ab("nearest_bin", ab);
  check_centres("nearest_bin", centres, ab);
  const c10::cuda::CUDAGuard guard(ab.device());
  const int64_t n = ab.size(0), h = ab.size(2), w = ab.size(3);
  at::Tensor out = at::empty({n, h, w}, ab.options().dtype(at::kLong));
  const int64_t pixels = out.numel();
  if (pixels == 0) return out;
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const size_t smem = 2 * nq * sizeof(float);
  const auto lut = lookup_table(c, 1);
  nearest_bin_kernel<<<cuda::blocks_for(pixels), cuda::kThreads, smem,
                       c10::cuda::getCurrentCUDAStream()>>>(
      ab.const_data_ptr<float>(), pixel_layout(ab), c.const_data_ptr<float>(), nq, lut->view(), pixels,
      out.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace fastcolor
