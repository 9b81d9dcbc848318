// Host side of bin_histogram on CUDA tensors (the kernel:
// fastcolor/device/bin_histogram.cuh).
#include <ATen/ops/zeros.h>

#include <optional>

#include "cuda_host.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/lookup_cache.h"

namespace fastcolor {

at::Tensor bin_histogram_cuda(const at::Tensor& ab, const at::Tensor& centres,
                              const std::optional<at::Tensor>& weight) {
  check_ab("bin_histogram", ab);
  check_centres("bin_histogram", centres, ab);
  if (weight) check_histogram_weight("bin_histogram", *weight, ab);
  const c10::DeviceGuard guard(ab.device());
  const int64_t nq = centres.size(0);
  const int64_t pixels = ab.size(0) * ab.size(2) * ab.size(3);
  at::Tensor hist = at::zeros({nq}, ab.options().dtype(at::kDouble));
  if (pixels == 0) return hist;
  const at::Tensor c = centres.contiguous();
  const auto lut = lookup_table(c, 1);
  KernelLaunch l("bin_histogram", kernel_name("bin_histogram_kernel", {weight ? "true" : "false"}));
  l.set_grid(cuda::blocks_for(pixels));
  l.set_block(cuda::kThreads);
  l.smem = 3 * nq * sizeof(float);
  l.arg(ab.const_data_ptr<float>()).arg(pixel_layout(ab)).arg(c.const_data_ptr<float>());
  l.arg(static_cast<int>(nq)).arg(lut->view());
  l.arg(weight ? weight->const_data_ptr<float>() : nullptr);
  l.arg(weight ? plane_layout(*weight) : PixelLayout{}).arg(pixels).arg(hist.mutable_data_ptr<double>());
  launch_kernel(l, ab.device());
  return hist;
}

}  // namespace fastcolor
