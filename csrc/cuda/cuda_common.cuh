// Helpers shared by the CUDA kernels: launch geometry, bins in shared
// memory, and exp in the accumulation type.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>

#include "fastcolor/colormath.h"
#include "fastcolor/layout.h"
#include "fastcolor/lookup.h"
#include "fastcolor/lookup_cache.h"

namespace fastcolor {
namespace cuda {

constexpr int kThreads = 256;
// Kernels loop over pixels with a grid stride; this many blocks keep any
// current GPU full while bounding per-block set-up (loading the bins).
constexpr int64_t kMaxBlocks = 4096;

inline unsigned blocks_for(int64_t items) {
  return static_cast<unsigned>(std::max<int64_t>(
      1, std::min<int64_t>((items + kThreads - 1) / kThreads, kMaxBlocks)));
}

// Dynamic shared memory above the default 48 KiB must be opted into.
template <typename Kernel>
void allow_shared_memory(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
}

// Bin centres (Q, 2) into shared memory as two arrays; all threads of the
// block must call it.
__device__ __forceinline__ void load_bins(const float* __restrict__ centres, int nq,
                                          float* ca, float* cb) {
  for (int i = threadIdx.x; i < nq; i += blockDim.x) {
    ca[i] = centres[2 * i];
    cb[i] = centres[2 * i + 1];
  }
  __syncthreads();
}

__device__ __forceinline__ int64_t first_pixel() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t pixel_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}

// exp for softmax terms: the hardware approximation in float32 (a few ulps,
// relative), the accurate one in float64.
__device__ __forceinline__ float exp_acc(float x) { return __expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// Calls f(std::integral_constant<int, Cap>) with the smallest supported
// register capacity Cap >= k of the k-nearest list.
template <typename F>
void with_capacity(int64_t k, F&& f) {
  if (k <= 1) {
    f(std::integral_constant<int, 1>());
  } else if (k <= 8) {
    f(std::integral_constant<int, 8>());
  } else {
    f(std::integral_constant<int, kMaxK>());
  }
}


// ------------------------------------------------------------ warp reductions

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = u > v ? u : v;  // a NaN never wins; NaNs are caught through the sums
  }
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Lowest finite float: the start of a running max, so that logits of -inf
// contribute exp(-inf) = 0 instead of exp(-inf - -inf) = NaN.
constexpr float kLowest = -FLT_MAX;

// Dispatch over the logit dtypes of the tiled kernels (float64 takes the
// generic ones), so that they are never instantiated for double.
#define FASTCOLOR_DISPATCH_TILED_TYPES(st, name, ...)        \
  AT_DISPATCH_SWITCH(st, name,                               \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__) \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)  \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

// Calls f(std::integral_constant<int, R>) with the bins per lane of the
// warp-per-pixel kernels (channels_last): 32 R >= Q.
template <typename F>
void with_warp_rows(int rows, F&& f) {
  switch (rows) {
    case 1: f(std::integral_constant<int, 1>()); break;
    case 4: f(std::integral_constant<int, 4>()); break;
    case 10: f(std::integral_constant<int, 10>()); break;
    default: f(std::integral_constant<int, 20>()); break;
  }
}

}  // namespace cuda
}  // namespace fastcolor
