// Host side of temporal_decode on CUDA: checks, launch planning and dispatch
// from the logits' at::ScalarType to the CUDA element types of the kernels
// in fastcolor/device/temporal_decode.cuh, on the current stream.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>

#include <algorithm>
#include <tuple>

#include "cuda_common.cuh"
#include "fastcolor/device/temporal_decode.cuh"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/launch_plan.h"

namespace fastcolor {
namespace {

template <typename T>
struct CudaType {
  using type = T;
};
template <>
struct CudaType<at::Half> {
  using type = __half;
};
template <>
struct CudaType<at::BFloat16> {
  using type = __nv_bfloat16;
};

template <typename scalar_t>
device::temporal::Args<typename CudaType<scalar_t>::type> kernel_args(
    const at::Tensor& logits, const at::Tensor& state, const at::Tensor& weight,
    const at::Tensor& centres, double temperature, double sharpness, at::Tensor& ab,
    at::Tensor& new_state) {
  using dev_t = typename CudaType<scalar_t>::type;
  device::temporal::Args<dev_t> g;
  g.logits = reinterpret_cast<const dev_t*>(logits.const_data_ptr<scalar_t>());
  g.lz = pixel_layout(logits);
  g.state = state.const_data_ptr<float>();
  g.ls = pixel_layout(state);
  g.weight = weight.const_data_ptr<float>();
  g.lw = pixel_layout(weight);
  g.centres = centres.const_data_ptr<float>();
  g.nq = static_cast<int>(centres.size(0));
  g.inv_t = inverse_temperature<float>(temperature);
  g.sharpness = sharpness;
  g.pixels = logits.size(0) * logits.size(2) * logits.size(3);
  g.ab = ab.mutable_data_ptr<float>();
  g.lo = pixel_layout(ab);
  g.new_state = new_state.mutable_data_ptr<float>();
  g.ln = pixel_layout(new_state);
  return g;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> temporal_decode_cuda(const at::Tensor& logits,
                                                        const at::Tensor& state,
                                                        const at::Tensor& weight,
                                                        const at::Tensor& centres,
                                                        double temperature, double sharpness) {
  check_temporal_decode_args("temporal_decode", logits, state, weight, centres, temperature,
                             sharpness);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor ab, new_state;
  std::tie(ab, new_state) = empty_temporal_decode(logits);
  const int64_t pixels = ab.numel() / 2;
  if (pixels == 0) return {ab, new_state};
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const LaunchPlan plan =
      plan_launch(logits.scalar_type() == at::kDouble, nq, pixel_layout(logits).s_c);
  if (plan.kind == LaunchPlan::kGeneric) {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "temporal_decode_cuda", [&] {
          auto g = kernel_args<scalar_t>(logits, state, weight, c, temperature, sharpness, ab,
                                         new_state);
          const size_t smem = 2 * nq * sizeof(float);
          auto kernel = device::temporal::generic_kernel<typename CudaType<scalar_t>::type>;
          cuda::allow_shared_memory(kernel, smem);
          kernel<<<cuda::blocks_for(pixels), cuda::kThreads, smem, stream>>>(g);
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
    return {ab, new_state};
  }
  FASTCOLOR_DISPATCH_TILED_TYPES(logits.scalar_type(), "temporal_decode_cuda", [&] {
    using dev_t = typename CudaType<scalar_t>::type;
    auto g = kernel_args<scalar_t>(logits, state, weight, c, temperature, sharpness, ab,
                                   new_state);
    auto launch = [&](auto kernel, dim3 grid, dim3 block, size_t smem) {
      cuda::allow_shared_memory(kernel, smem);
      kernel<<<grid, block, smem, stream>>>(g);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (plan.kind == LaunchPlan::kWarp) {
      const size_t smem = 2 * nq * sizeof(float);
      const int64_t per_block = cuda::kThreads / 32;
      const dim3 grid(static_cast<unsigned>(
          std::min<int64_t>((pixels + per_block - 1) / per_block, 65536)));
      cuda::with_warp_rows(plan.rows, [&](auto rows) {
        launch(device::temporal::warp_kernel<dev_t, decltype(rows)::value>, grid,
               dim3(cuda::kThreads), smem);
      });
    } else {
      const size_t smem = (2 * nq + 5 * 32 * plan.warps) * sizeof(float);
      const dim3 grid(static_cast<unsigned>((pixels + 31) / 32)), block(32, plan.warps);
      if (plan.rows == 8)
        launch(device::temporal::tile_kernel<dev_t, 8>, grid, block, smem);
      else
        launch(device::temporal::tile_kernel<dev_t, 40>, grid, block, smem);
    }
  });
  return {ab, new_state};
}

}  // namespace fastcolor
