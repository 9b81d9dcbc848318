// Host side of annealed_mean and its backward on CUDA tensors (the kernels:
// fastcolor/device/annealed_mean.cuh).
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <tuple>

#include "cuda_host.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {

std::tuple<at::Tensor, at::Tensor> annealed_mean_cuda(const at::Tensor& logits,
                                                      const at::Tensor& centres,
                                                      double temperature) {
  check_annealed_mean_args("annealed_mean", logits, centres, temperature);
  const c10::DeviceGuard guard(logits.device());
  at::Tensor out, stats;
  std::tie(out, stats) = empty_decoded(logits);
  const int64_t pixels = out.numel() / 2;
  if (pixels == 0) return {out, stats};
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const PixelLayout lz = pixel_layout(logits), lo = pixel_layout(out);
  const auto st = logits.scalar_type();
  const std::string type = cuda::type_name(st);
  const LaunchPlan plan = plan_launch(st == at::kDouble, nq, lz.s_c);
  KernelLaunch l = cuda::decode_launch("annealed_mean", plan, type, pixels);
  // The centres, and in the tiled kernel 4 partial sums per pixel and warp.
  l.smem = (2 * nq + (plan.kind == LaunchPlan::kTile ? 4 * 32 * plan.warps : 0)) * sizeof(float);
  l.arg(logits.const_data_ptr()).arg(lz).arg(c.const_data_ptr<float>()).arg(nq);
  // 1 / T in the accumulation type (float64 logits take the generic kernel).
  if (st == at::kDouble)
    l.arg(inverse_temperature<double>(temperature));
  else
    l.arg(inverse_temperature<float>(temperature));
  l.arg(pixels).arg(out.mutable_data_ptr()).arg(stats.mutable_data_ptr()).arg(lo);
  launch_kernel(l, logits.device());
  return {out, stats};
}

at::Tensor annealed_mean_backward_cuda(const at::Tensor& grad_ab, const at::Tensor& logits,
                                       const at::Tensor& centres, const at::Tensor& ab,
                                       const at::Tensor& stats, double temperature) {
  const char* op = "annealed_mean_backward";
  check_annealed_mean_args(op, logits, centres, temperature);
  check_decoded(op, grad_ab, ab, stats, logits);
  const c10::DeviceGuard guard(logits.device());
  if (temperature == 0) return at::zeros_like(logits);  // piecewise constant in z
  at::Tensor grad = at::empty_like(logits);
  const int64_t pixels = logits.size(0) * logits.size(2) * logits.size(3);
  if (grad.numel() == 0) return grad;
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const PixelLayout lz = pixel_layout(logits);
  const auto st = logits.scalar_type();
  const std::string type = cuda::type_name(st);
  // float64 takes the generic kernel; the tiled kernels serve the other dtypes:
  // pixel-adjacent layouts with lanes over 32 pixels, channels_last with a warp
  // per pixel.
  const bool bins_on_lanes = lz.s_c == 1 && nq > 1;
  const std::string name =
      st == at::kDouble ? kernel_name("annealed_mean_backward_generic_kernel", {type})
                        : kernel_name("annealed_mean_backward_tile_kernel",
                                      {type, bins_on_lanes ? "true" : "false"});
  KernelLaunch l("annealed_mean", name);
  l.set_block(cuda::kThreads);
  l.smem = 2 * nq * sizeof(float);
  if (st == at::kDouble)
    l.set_grid(cuda::blocks_for(pixels));
  else if (bins_on_lanes)
    l.set_grid(static_cast<unsigned>((pixels + cuda::kThreads / 32 - 1) / (cuda::kThreads / 32)));
  else
    l.set_grid(static_cast<unsigned>((pixels + 31) / 32));
  l.arg(grad_ab.const_data_ptr()).arg(pixel_layout(grad_ab)).arg(logits.const_data_ptr()).arg(lz);
  l.arg(c.const_data_ptr<float>()).arg(nq).arg(ab.const_data_ptr()).arg(pixel_layout(ab));
  l.arg(stats.const_data_ptr()).arg(pixel_layout(stats));
  if (st == at::kDouble)
    l.arg(inverse_temperature<double>(temperature));
  else
    l.arg(inverse_temperature<float>(temperature));
  l.arg(pixels).arg(grad.mutable_data_ptr()).arg(pixel_layout(grad));
  launch_kernel(l, logits.device());
  return grad;
}

}  // namespace fastcolor
