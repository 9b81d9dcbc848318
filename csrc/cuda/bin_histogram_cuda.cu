#include <ATen/ops/zeros.h>

#include <optional>

#include "cuda_common.cuh"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// Each block counts its pixels into a private histogram in shared memory,
// then adds it to the global one: global atomics are one per bin per block,
// so contention does not grow with the number of pixels. Counts are doubles,
// exact for integers below 2^53.
__global__ void __launch_bounds__(cuda::kThreads)
    bin_histogram_kernel(const float* __restrict__ ab, PixelLayout l,
                         const float* __restrict__ sorted, int nq,
                         const float* __restrict__ weight, PixelLayout lw, int64_t pixels,
                         double* __restrict__ hist) {
  extern __shared__ double dsmem[];
  double* local = dsmem;
  for (int i = threadIdx.x; i < nq; i += blockDim.x) local[i] = 0.0;
  const cuda::SortedBins bins = cuda::load_sorted_bins(
      sorted, nq, reinterpret_cast<float*>(dsmem + nq), threadIdx.x, blockDim.x);
  for (int64_t p = cuda::first_pixel(); p < pixels; p += cuda::pixel_stride()) {
    const int64_t off = l.offset(p);
    const float a = ab[off], b = ab[off + l.s_c];
    if (!finite2(a, b)) continue;  // non-finite ab: counted nowhere
    const int32_t q = cuda::sweep_k_nearest<1>(a, b, bins, 1).idx[0];
    atomicAdd(&local[q], weight ? static_cast<double>(weight[lw.offset(p)]) : 1.0);
  }
  __syncthreads();
  for (int i = threadIdx.x; i < nq; i += blockDim.x)
    if (local[i] != 0.0) atomicAdd(&hist[i], local[i]);
}

}  // namespace

at::Tensor bin_histogram_cuda(const at::Tensor& ab, const at::Tensor& centres,
                              const std::optional<at::Tensor>& weight) {
  check_ab("bin_histogram", ab);
  check_centres("bin_histogram", centres, ab);
  if (weight) check_histogram_weight("bin_histogram", *weight, ab);
  const c10::cuda::CUDAGuard guard(ab.device());
  const int64_t nq = centres.size(0);
  const int64_t pixels = ab.size(0) * ab.size(2) * ab.size(3);
  at::Tensor hist = at::zeros({nq}, ab.options().dtype(at::kDouble));
  if (pixels == 0) return hist;
  const at::Tensor sorted = cuda::sort_bins(centres);
  const size_t smem = nq * (sizeof(double) + 3 * sizeof(float));
  cuda::allow_shared_memory(bin_histogram_kernel, smem);
  bin_histogram_kernel<<<cuda::blocks_for(pixels), cuda::kThreads, smem,
                         c10::cuda::getCurrentCUDAStream()>>>(
      ab.const_data_ptr<float>(), pixel_layout(ab), sorted.const_data_ptr<float>(),
      static_cast<int>(nq), weight ? weight->const_data_ptr<float>() : nullptr,
      weight ? plane_layout(*weight) : PixelLayout{}, pixels, hist.mutable_data_ptr<double>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return hist;
}

}  // namespace fastcolor
