// Host side of temporal_decode on CUDA tensors (the kernels:
// fastcolor/device/temporal_decode.cuh): checks, outputs, the launch plan and
// the packed arguments, for the compiled kernels and the JIT alike.
#include <tuple>

#include "cuda_host.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {

std::tuple<at::Tensor, at::Tensor> temporal_decode_cuda(const at::Tensor& logits,
                                                        const at::Tensor& state,
                                                        const at::Tensor& weight,
                                                        const at::Tensor& centres,
                                                        double temperature, double sharpness) {
  check_temporal_decode_args("temporal_decode", logits, state, weight, centres, temperature,
                             sharpness);
  const c10::DeviceGuard guard(logits.device());
  at::Tensor ab, new_state;
  std::tie(ab, new_state) = empty_temporal_decode(logits);
  const int64_t pixels = ab.numel() / 2;
  if (pixels == 0) return {ab, new_state};
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const PixelLayout lz = pixel_layout(logits);
  const auto st = logits.scalar_type();
  const std::string type = cuda::type_name(st);
  const LaunchPlan plan = plan_launch(st == at::kDouble, nq, lz.s_c);
  KernelLaunch l = cuda::decode_launch("temporal_decode", plan, type, pixels);
  // The centres, and in the tiled kernel 5 partial results per pixel and warp.
  l.smem = (2 * nq + (plan.kind == LaunchPlan::kTile ? 5 * 32 * plan.warps : 0)) * sizeof(float);
  // The kernels' parameters, in order (the same for the three of them).
  l.arg(logits.const_data_ptr()).arg(lz);
  l.arg(state.const_data_ptr<float>()).arg(pixel_layout(state));
  l.arg(weight.const_data_ptr<float>()).arg(pixel_layout(weight));
  l.arg(c.const_data_ptr<float>()).arg(nq);
  l.arg(inverse_temperature<float>(temperature)).arg(sharpness).arg(pixels);
  l.arg(ab.mutable_data_ptr<float>()).arg(pixel_layout(ab));
  l.arg(new_state.mutable_data_ptr<float>()).arg(pixel_layout(new_state));
  launch_kernel(l, logits.device());
  return {ab, new_state};
}

}  // namespace fastcolor
