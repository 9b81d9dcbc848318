// Host side of rebalanced_cross_entropy on CUDA tensors (the kernels:
// fastcolor/device/rebalanced_cross_entropy.cuh).
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <optional>
#include <tuple>

#include "cuda_host.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/lookup_cache.h"

namespace fastcolor {

std::tuple<at::Tensor, at::Tensor> rebalanced_cross_entropy_cuda(
    const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& centres,
    const at::Tensor& class_weights, const std::optional<at::Tensor>& pixel_weight, int64_t k,
    double sigma, c10::string_view reduction, bool compute_grad) {
  const char* op = "rebalanced_cross_entropy";
  check_cross_entropy_args(op, logits, ab, centres, class_weights, pixel_weight, k, sigma);
  const Reduction red = parse_reduction(op, reduction);
  const c10::DeviceGuard guard(logits.device());
  const int64_t nq = logits.size(1);
  at::Tensor loss_px, grad;
  std::tie(loss_px, grad) = empty_cross_entropy(logits, compute_grad);
  const int64_t pixels = loss_px.numel();
  if (pixels > 0) {
    const at::Tensor c = centres.contiguous();
    const at::Tensor cw = class_weights.contiguous();
    const float inv_two_sigma2 = static_cast<float>(0.5 / (sigma * sigma));
    const auto lut = lookup_table(c, k);
    const double scale = reduction_grad_scale(red, pixels);
    const PixelLayout lz = pixel_layout(logits), lab = pixel_layout(ab);
    const PixelLayout lw = pixel_weight ? plane_layout(*pixel_weight) : PixelLayout{};
    const PixelLayout lg = compute_grad ? pixel_layout(grad) : PixelLayout{};
    const float* pw = pixel_weight ? pixel_weight->const_data_ptr<float>() : nullptr;
    const auto st = logits.scalar_type();
    const std::string type = cuda::type_name(st), cap = cuda::capacity_for(k);
    const LaunchPlan plan = plan_launch(st == at::kDouble, nq, lz.s_c);
    std::string name;
    if (plan.kind == LaunchPlan::kGeneric)
      name = kernel_name("cross_entropy_generic_kernel", {type, cap});
    else if (plan.kind == LaunchPlan::kTile)
      name = kernel_name("cross_entropy_tile_kernel", {type, std::to_string(plan.rows), cap});
    else
      name = kernel_name("cross_entropy_warp_kernel", {type, std::to_string(plan.rows), cap});
    KernelLaunch l(op, name);
    if (plan.kind == LaunchPlan::kGeneric) {
      l.set_grid(cuda::blocks_for(pixels));
      l.set_block(cuda::kThreads);
      l.smem = 3 * nq * sizeof(float);
    } else if (plan.kind == LaunchPlan::kTile) {
      l.set_grid(static_cast<unsigned>((pixels + 31) / 32));
      l.set_block(32, plan.warps);
      l.smem = (2 * nq + 2 * 32 * plan.warps + 2 * 32 * plan.warps * k) * sizeof(float);
    } else {
      const int64_t per_block = 32 * (cuda::kThreads / 32);
      l.set_grid(static_cast<unsigned>((pixels + per_block - 1) / per_block));
      l.set_block(cuda::kThreads);
      l.smem = 2 * nq * sizeof(float);
    }
    l.arg(logits.const_data_ptr()).arg(lz).arg(ab.const_data_ptr<float>()).arg(lab);
    l.arg(c.const_data_ptr<float>()).arg(cw.const_data_ptr<float>()).arg(static_cast<int>(nq));
    l.arg(lut->view()).arg(pw).arg(lw).arg(static_cast<int>(k)).arg(inv_two_sigma2);
    // The gradient scale in the accumulation type (float64 only for the
    // generic kernel's float64 logits).
    if (st == at::kDouble)
      l.arg(scale);
    else
      l.arg(static_cast<float>(scale));
    l.arg(pixels).arg(loss_px.mutable_data_ptr());
    l.arg(compute_grad ? grad.mutable_data_ptr() : nullptr).arg(lg);
    launch_kernel(l, logits.device());
  }
  return {reduce_loss(loss_px, red), grad};
}

}  // namespace fastcolor
