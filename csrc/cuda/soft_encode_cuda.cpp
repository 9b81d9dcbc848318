// Host side of soft_encode on CUDA tensors (the kernel:
// fastcolor/device/soft_encode.cuh).
#include <ATen/ops/empty.h>

#include "cuda_host.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/lookup_cache.h"

namespace fastcolor {

at::Tensor soft_encode_cuda(const at::Tensor& ab, const at::Tensor& centres, int64_t k,
                            double sigma) {
  check_ab("soft_encode", ab);
  check_centres("soft_encode", centres, ab);
  check_k_sigma("soft_encode", k, sigma, centres.size(0));
  const c10::DeviceGuard guard(ab.device());
  const int64_t n = ab.size(0), h = ab.size(2), w = ab.size(3), nq = centres.size(0);
  at::Tensor out = at::empty({n, nq, h, w}, ab.options());
  const int64_t pixels = n * h * w;
  if (pixels == 0) return out;
  const at::Tensor c = centres.contiguous();
  const float inv_two_sigma2 = static_cast<float>(0.5 / (sigma * sigma));
  const auto lut = lookup_table(c, k);
  KernelLaunch l("soft_encode", kernel_name("soft_encode_kernel", {cuda::capacity_for(k)}));
  l.set_grid(cuda::blocks_for(pixels));
  l.set_block(cuda::kThreads);
  l.smem = 2 * nq * sizeof(float);
  l.arg(ab.const_data_ptr<float>()).arg(pixel_layout(ab)).arg(c.const_data_ptr<float>());
  l.arg(static_cast<int>(nq)).arg(lut->view()).arg(static_cast<int>(k)).arg(inv_two_sigma2);
  l.arg(pixels).arg(out.mutable_data_ptr<float>());
  launch_kernel(l, ab.device());
  return out;
}

}  // namespace fastcolor
