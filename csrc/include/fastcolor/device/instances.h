// Every kernel instantiation the host code (csrc/cuda/<op>_cuda.cpp) can
// launch, per op: FASTCOLOR_KERNELS_<op>(X) applies X to each name expression.
// The one list of them: csrc/cuda/<op>.cu compiles exactly these with nvcc,
// the JIT (fastcolor/ops/jit.py) compiles any of them with NVRTC on first
// use, and tests/test_jit_compile.py compiles all of them for every supported
// architecture. The device code of <op> is fastcolor/device/<op>.cuh. Names
// are spelt as csrc/include/fastcolor/launch.h's kernel_name() spells them
// ("fastcolor::device::k<float, 8>": one space after each comma); logit
// dtypes are float, __half, __nv_bfloat16 and double; the k-nearest
// capacities 1, 8 and fastcolor::kMaxK (launch_plan.h, capacity_for).
#pragma once


#define FASTCOLOR_KERNELS_nearest_bin(X) \
  X(fastcolor::device::nearest_bin_kernel)

#define FASTCOLOR_KERNELS_soft_encode(X) \
  X(fastcolor::device::soft_encode_kernel<1>) \
  X(fastcolor::device::soft_encode_kernel<8>) \
  X(fastcolor::device::soft_encode_kernel<fastcolor::kMaxK>)

#define FASTCOLOR_KERNELS_bin_histogram(X) \
  X(fastcolor::device::bin_histogram_kernel<false>) \
  X(fastcolor::device::bin_histogram_kernel<true>)

#define FASTCOLOR_KERNELS_annealed_mean(X) \
  X(fastcolor::device::annealed_mean_generic_kernel<float>) \
  X(fastcolor::device::annealed_mean_generic_kernel<__half>) \
  X(fastcolor::device::annealed_mean_generic_kernel<__nv_bfloat16>) \
  X(fastcolor::device::annealed_mean_generic_kernel<double>) \
  X(fastcolor::device::annealed_mean_tile_kernel<float, 8>) \
  X(fastcolor::device::annealed_mean_tile_kernel<float, 40>) \
  X(fastcolor::device::annealed_mean_tile_kernel<__half, 8>) \
  X(fastcolor::device::annealed_mean_tile_kernel<__half, 40>) \
  X(fastcolor::device::annealed_mean_tile_kernel<__nv_bfloat16, 8>) \
  X(fastcolor::device::annealed_mean_tile_kernel<__nv_bfloat16, 40>) \
  X(fastcolor::device::annealed_mean_warp_kernel<float, 1>) \
  X(fastcolor::device::annealed_mean_warp_kernel<float, 4>) \
  X(fastcolor::device::annealed_mean_warp_kernel<float, 10>) \
  X(fastcolor::device::annealed_mean_warp_kernel<float, 20>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__half, 1>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__half, 4>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__half, 10>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__half, 20>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__nv_bfloat16, 1>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__nv_bfloat16, 4>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__nv_bfloat16, 10>) \
  X(fastcolor::device::annealed_mean_warp_kernel<__nv_bfloat16, 20>) \
  X(fastcolor::device::annealed_mean_backward_generic_kernel<double>) \
  X(fastcolor::device::annealed_mean_backward_tile_kernel<float, false>) \
  X(fastcolor::device::annealed_mean_backward_tile_kernel<float, true>) \
  X(fastcolor::device::annealed_mean_backward_tile_kernel<__half, false>) \
  X(fastcolor::device::annealed_mean_backward_tile_kernel<__half, true>) \
  X(fastcolor::device::annealed_mean_backward_tile_kernel<__nv_bfloat16, false>) \
  X(fastcolor::device::annealed_mean_backward_tile_kernel<__nv_bfloat16, true>)

#define FASTCOLOR_KERNELS_rebalanced_cross_entropy(X) \
  X(fastcolor::device::cross_entropy_generic_kernel<float, 1>) \
  X(fastcolor::device::cross_entropy_generic_kernel<float, 8>) \
  X(fastcolor::device::cross_entropy_generic_kernel<float, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_generic_kernel<__half, 1>) \
  X(fastcolor::device::cross_entropy_generic_kernel<__half, 8>) \
  X(fastcolor::device::cross_entropy_generic_kernel<__half, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_generic_kernel<__nv_bfloat16, 1>) \
  X(fastcolor::device::cross_entropy_generic_kernel<__nv_bfloat16, 8>) \
  X(fastcolor::device::cross_entropy_generic_kernel<__nv_bfloat16, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_generic_kernel<double, 1>) \
  X(fastcolor::device::cross_entropy_generic_kernel<double, 8>) \
  X(fastcolor::device::cross_entropy_generic_kernel<double, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_tile_kernel<float, 8, 1>) \
  X(fastcolor::device::cross_entropy_tile_kernel<float, 8, 8>) \
  X(fastcolor::device::cross_entropy_tile_kernel<float, 8, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_tile_kernel<float, 40, 1>) \
  X(fastcolor::device::cross_entropy_tile_kernel<float, 40, 8>) \
  X(fastcolor::device::cross_entropy_tile_kernel<float, 40, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__half, 8, 1>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__half, 8, 8>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__half, 8, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__half, 40, 1>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__half, 40, 8>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__half, 40, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__nv_bfloat16, 8, 1>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__nv_bfloat16, 8, 8>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__nv_bfloat16, 8, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__nv_bfloat16, 40, 1>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__nv_bfloat16, 40, 8>) \
  X(fastcolor::device::cross_entropy_tile_kernel<__nv_bfloat16, 40, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 1, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 1, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 1, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 4, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 4, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 4, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 10, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 10, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 10, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 20, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 20, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<float, 20, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 1, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 1, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 1, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 4, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 4, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 4, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 10, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 10, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 10, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 20, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 20, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__half, 20, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 1, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 1, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 1, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 4, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 4, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 4, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 10, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 10, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 10, fastcolor::kMaxK>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 20, 1>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 20, 8>) \
  X(fastcolor::device::cross_entropy_warp_kernel<__nv_bfloat16, 20, fastcolor::kMaxK>)

#define FASTCOLOR_KERNELS_temporal_decode(X) \
  X(fastcolor::device::temporal_decode_generic_kernel<float>) \
  X(fastcolor::device::temporal_decode_generic_kernel<__half>) \
  X(fastcolor::device::temporal_decode_generic_kernel<__nv_bfloat16>) \
  X(fastcolor::device::temporal_decode_generic_kernel<double>) \
  X(fastcolor::device::temporal_decode_tile_kernel<float, 8>) \
  X(fastcolor::device::temporal_decode_tile_kernel<float, 40>) \
  X(fastcolor::device::temporal_decode_tile_kernel<__half, 8>) \
  X(fastcolor::device::temporal_decode_tile_kernel<__half, 40>) \
  X(fastcolor::device::temporal_decode_tile_kernel<__nv_bfloat16, 8>) \
  X(fastcolor::device::temporal_decode_tile_kernel<__nv_bfloat16, 40>) \
  X(fastcolor::device::temporal_decode_warp_kernel<float, 1>) \
  X(fastcolor::device::temporal_decode_warp_kernel<float, 4>) \
  X(fastcolor::device::temporal_decode_warp_kernel<float, 10>) \
  X(fastcolor::device::temporal_decode_warp_kernel<float, 20>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__half, 1>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__half, 4>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__half, 10>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__half, 20>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__nv_bfloat16, 1>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__nv_bfloat16, 4>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__nv_bfloat16, 10>) \
  X(fastcolor::device::temporal_decode_warp_kernel<__nv_bfloat16, 20>)
