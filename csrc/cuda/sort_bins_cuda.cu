#include <ATen/ops/empty.h>

#include "cuda_common.cuh"

namespace fastcolor {
namespace cuda {
namespace {

// One block ranks every bin by (a, index), a total order also when a is NaN
// (NaN ranks last), and scatters it to its rank: O(Q^2 / threads), a few
// microseconds for Q = 313.
__global__ void __launch_bounds__(1024)
    sort_bins_kernel(const float* __restrict__ centres, int nq, float* __restrict__ out) {
  for (int i = threadIdx.x; i < nq; i += blockDim.x) {
    const float ai = centres[2 * i];
    int rank = 0;
    for (int j = 0; j < nq; ++j) {
      const float aj = centres[2 * j];
      const bool before = (aj < ai) || (ai != ai && aj == aj) ||
                          ((aj == ai || (ai != ai && aj != aj)) && j < i);
      rank += before;
    }
    out[rank] = ai;
    out[nq + rank] = centres[2 * i + 1];
    out[2 * nq + rank] = __int_as_float(i);
  }
}

}  // namespace

at::Tensor sort_bins(const at::Tensor& centres) {
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  at::Tensor out = at::empty({3, nq}, c.options());
  const int threads = std::min(1024, ((nq + 31) / 32) * 32);
  sort_bins_kernel<<<1, threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      c.const_data_ptr<float>(), nq, out.mutable_data_ptr<float>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace cuda
}  // namespace fastcolor
