#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include "cpu_common.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {

at::Tensor soft_encode_cpu(const at::Tensor& ab, const at::Tensor& centres, int64_t k,
                           double sigma) {
  check_ab("soft_encode", ab);
  check_centres("soft_encode", centres, ab);
  check_k_sigma("soft_encode", k, sigma, centres.size(0));
  const int64_t n = ab.size(0), h = ab.size(2), w = ab.size(3), nq = centres.size(0);
  at::Tensor out = at::zeros({n, nq, h, w}, ab.options());
  const int64_t pixels = n * h * w;
  if (pixels == 0) return out;

  const cpu::Search search(centres, static_cast<int>(k));
  const PixelLayout l = pixel_layout(ab);
  const float* src = ab.const_data_ptr<float>();
  float* dst = out.mutable_data_ptr<float>();
  const int64_t hw = h * w;
  const float inv_two_sigma2 = static_cast<float>(0.5 / (sigma * sigma));
  at::parallel_for(0, pixels, 256, [&](int64_t p0, int64_t p1) {
    cpu::walk_pixels(l, p0, p1, [&](int64_t p, int64_t off) {
      const float a = src[off], b = src[off + l.s_c];
      float* px = dst + (p / hw) * nq * hw + (p % hw);  // bin q at px[q * hw]
      if (!finite2(a, b)) {
        for (int64_t q = 0; q < nq; ++q) px[q * hw] = NAN;
        return;
      }
      KNearest nn(static_cast<int>(k));
      search.k_nearest(a, b, nn);
      const float z = gaussian_normaliser(nn, inv_two_sigma2);
      for (int j = 0; j < k; ++j)
        px[nn.idx[j] * hw] = gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2) / z;
    });
  });
  return out;
}

}  // namespace fastcolor
