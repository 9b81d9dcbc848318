#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros.h>

#include <optional>
#include <vector>

#include "cpu_common.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {

at::Tensor bin_histogram_cpu(const at::Tensor& ab, const at::Tensor& centres,
                             const std::optional<at::Tensor>& weight) {
  check_ab("bin_histogram", ab);
  check_centres("bin_histogram", centres, ab);
  if (weight) check_histogram_weight("bin_histogram", *weight, ab);
  const int64_t nq = centres.size(0);
  const int64_t pixels = ab.size(0) * ab.size(2) * ab.size(3);
  at::Tensor hist = at::zeros({nq}, ab.options().dtype(at::kDouble));
  if (pixels == 0) return hist;

  const cpu::Search search(centres, 1);
  const PixelLayout l = pixel_layout(ab);
  const PixelLayout lw = weight ? plane_layout(*weight) : PixelLayout{};
  const float* src = ab.const_data_ptr<float>();
  const float* wsrc = weight ? weight->const_data_ptr<float>() : nullptr;

  // One private histogram per thread, summed at the end: no sharing, and the
  // sum is exact for counts (integers below 2^53).
  std::vector<std::vector<double>> partial(at::get_num_threads(),
                                           std::vector<double>(nq, 0.0));
  at::parallel_for(0, pixels, 4096, [&](int64_t p0, int64_t p1) {
    std::vector<double>& mine = partial[at::get_thread_num()];
    if (wsrc) {
      cpu::walk_pixels(l, p0, p1, [&](int64_t p, int64_t off) {
        const int32_t q = search.nearest(src[off], src[off + l.s_c]);
        if (q >= 0) mine[q] += static_cast<double>(wsrc[lw.offset(p)]);  // non-finite ab: nowhere
      });
    } else {
      // Counts in a private integer histogram: exact, and no float add chain.
      std::vector<int64_t> counts(nq + 1, 0);  // slot nq: non-finite ab, counted nowhere
      cpu::walk_pixels(l, p0, p1, [&](int64_t, int64_t off) {
        const int32_t q = search.nearest(src[off], src[off + l.s_c]);
        ++counts[q < 0 ? nq : q];
      });
      for (int64_t q = 0; q < nq; ++q) mine[q] += static_cast<double>(counts[q]);
    }
  });
  double* out = hist.mutable_data_ptr<double>();
  for (const auto& part : partial)
    for (int64_t q = 0; q < nq; ++q) out[q] += part[q];
  return hist;
}

}  // namespace fastcolor
