// Host side of nearest_bin on CUDA tensors (the kernel:
// fastcolor/device/nearest_bin.cuh).
#include <ATen/ops/empty.h>

#include "cuda_host.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/lookup_cache.h"

namespace fastcolor {

at::Tensor nearest_bin_cuda(const at::Tensor& ab, const at::Tensor& centres) {
  check_ab("nearest_bin", ab);
  check_centres("nearest_bin", centres, ab);
  const c10::DeviceGuard guard(ab.device());
  const int64_t n = ab.size(0), h = ab.size(2), w = ab.size(3);
  at::Tensor out = at::empty({n, h, w}, ab.options().dtype(at::kLong));
  const int64_t pixels = out.numel();
  if (pixels == 0) return out;
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const auto lut = lookup_table(c, 1);
  KernelLaunch l("nearest_bin", kernel_name("nearest_bin_kernel"));
  l.set_grid(cuda::blocks_for(pixels));
  l.set_block(cuda::kThreads);
  l.smem = 2 * nq * sizeof(float);
  l.arg(ab.const_data_ptr<float>()).arg(pixel_layout(ab)).arg(c.const_data_ptr<float>()).arg(nq);
  l.arg(lut->view()).arg(pixels).arg(out.mutable_data_ptr<int64_t>());
  launch_kernel(l, ab.device());
  return out;
}

}  // namespace fastcolor
