// Device helpers shared by the CUDA kernels (csrc/include/fastcolor/device/
// <op>.cuh): bins in shared memory, the grid-stride pixel loop, exp in the
// accumulation type, warp reductions, and conversions between the logit
// dtypes and their accumulation type. Torch-free: nvcc compiles it into the
// extension and NVRTC compiles it at run time (the JIT path), so it may use
// only CUDA builtins, cuda_fp16.h / cuda_bf16.h and the torch-free fastcolor
// headers.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "fastcolor/colormath.h"
#include "fastcolor/launch_plan.h"
#include "fastcolor/layout.h"
#include "fastcolor/lookup.h"

namespace fastcolor {
namespace cuda {

// Bin centres (Q, 2) into shared memory as two arrays; all threads of the
// block must call it (it ends with a barrier). The threads of a 2-D block
// (the tiled kernels: 32 x W) share the work.
__device__ __forceinline__ void load_bins(const float* __restrict__ centres, int nq,
                                          float* ca, float* cb) {
  const int threads = blockDim.x * blockDim.y;
  for (int i = threadIdx.x + blockDim.x * threadIdx.y; i < nq; i += threads) {
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
__device__ __forceinline__ float log_acc(float x) { return logf(x); }
__device__ __forceinline__ double log_acc(double x) { return log(x); }

// The accumulation type of a logit dtype: float64 for float64, else float32.
template <typename T>
struct Opmath {
  using type = float;
};
template <>
struct Opmath<double> {
  using type = double;
};
template <typename T>
using opmath_t = typename Opmath<T>::type;

// The largest finite value of an accumulation type.
template <typename T>
__device__ __forceinline__ T largest();
template <>
__device__ __forceinline__ float largest<float>() { return FLT_MAX; }
template <>
__device__ __forceinline__ double largest<double>() { return DBL_MAX; }

// A logit read into its accumulation type (exact), and a value of the
// accumulation type stored as a logit dtype (rounded to nearest even).
__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T>
__device__ __forceinline__ T from_acc(opmath_t<T> x);
template <>
__device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <>
__device__ __forceinline__ double from_acc<double>(double x) { return x; }
template <>
__device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
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

}  // namespace cuda
}  // namespace fastcolor
