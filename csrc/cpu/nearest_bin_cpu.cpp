#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include "cpu_common.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {

at::Tensor nearest_bin_cpu(const at::Tensor& ab, const at::Tensor& centres) {
  check_ab("nearest_bin", ab);
  check_centres("nearest_bin", centres, ab);
  const int64_t n = ab.size(0), h = ab.size(2), w = ab.size(3);
  at::Tensor out = at::empty({n, h, w}, ab.options().dtype(at::kLong));
  const int64_t pixels = out.numel();
  if (pixels == 0) return out;

  const cpu::Search search(centres, 1);
  const PixelLayout l = pixel_layout(ab);
  const float* src = ab.const_data_ptr<float>();
  int64_t* dst = out.mutable_data_ptr<int64_t>();
  at::parallel_for(0, pixels, 4096, [&](int64_t p0, int64_t p1) {
    cpu::walk_pixels(l, p0, p1, [&](int64_t p, int64_t off) {
      dst[p] = search.nearest(src[off], src[off + l.s_c]);
    });
  });
  return out;
}

}  // namespace fastcolor
