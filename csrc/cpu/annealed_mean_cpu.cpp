#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <tuple>
#include <vector>

#include "cpu_common.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// ab = sum_q softmax((z - max z) / T)_q c_q per pixel; T = 0 gives the
// centre of the first largest logit. stats = (max z, softmax normaliser).
// Tiles of kTile pixels, gathered channel-major, reduced across lanes.
template <typename scalar_t>
void annealed_mean_cpu_kernel(const at::Tensor& logits, const cpu::Bins& bins,
                              double temperature, at::Tensor& out, at::Tensor& stats) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t T = cpu::kTile;
  const int64_t nq = logits.size(1);
  const int64_t pixels = logits.size(0) * logits.size(2) * logits.size(3);
  const PixelLayout lz = pixel_layout(logits);
  const PixelLayout lo = pixel_layout(out);  // contiguous: the same for stats
  const scalar_t* z_src = logits.const_data_ptr<scalar_t>();
  acc_t* o = out.mutable_data_ptr<acc_t>();
  acc_t* st = stats.mutable_data_ptr<acc_t>();
  const acc_t inv_t = inverse_temperature<acc_t>(temperature);
  const int64_t tiles = (pixels + T - 1) / T;

  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> z(nq * T);
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t p0 = tile * T;
      const int64_t cnt = std::min(T, pixels - p0);
      int64_t rs;
      const acc_t* zt = cpu::tile_rows(z_src, lz, p0, cnt, nq, z.data(), rs);
      acc_t m[T], s[T], sa[T], sb[T];
      cpu::tile_max(zt, rs, nq, m);
      if (temperature == 0) {
        // The first bin equal to the max, and whether any bin is NaN: int32
        // lanes, so that the loop vectorises.
        int32_t arg[T], nan[T];
        const int32_t none = static_cast<int32_t>(nq);
        for (int64_t t = 0; t < T; ++t) {
          arg[t] = none;
          nan[t] = 0;
        }
        for (int64_t q = 0; q < nq; ++q)
          for (int64_t t = 0; t < T; ++t) {
            const acc_t v = zt[q * rs + t];
            nan[t] |= v != v;
            arg[t] = (arg[t] == none && v == m[t]) ? static_cast<int32_t>(q) : arg[t];
          }
        for (int64_t t = 0; t < T; ++t) {
          const bool bad = nan[t] || arg[t] == none;  // NaN, or no finite max
          sa[t] = bad ? NAN : static_cast<acc_t>(bins.a[bad ? 0 : arg[t]]);
          sb[t] = bad ? NAN : static_cast<acc_t>(bins.b[bad ? 0 : arg[t]]);
          s[t] = 1;
        }
      } else {
        for (int64_t t = 0; t < T; ++t) s[t] = sa[t] = sb[t] = 0;
        for (int64_t q = 0; q < nq; ++q) {
          const acc_t ca = bins.a[q], cb = bins.b[q];
          for (int64_t t = 0; t < T; ++t) {
            const acc_t e = exp_nonpositive((zt[q * rs + t] - m[t]) * inv_t);
            s[t] += e;
            sa[t] = fmadd(e, ca, sa[t]);
            sb[t] = fmadd(e, cb, sb[t]);
          }
        }
        for (int64_t t = 0; t < T; ++t) {
          sa[t] /= s[t];
          sb[t] /= s[t];
        }
      }
      for (int64_t t = 0; t < cnt; ++t) {
        const int64_t oo = lo.offset(p0 + t);
        o[oo] = sa[t];
        o[oo + lo.s_c] = sb[t];
        st[oo] = m[t];
        st[oo + lo.s_c] = s[t];
      }
    }
  });
}

// d ab / d z_q = softmax_q / T * (c_q - ab), contracted with grad_ab.
template <typename scalar_t>
void annealed_mean_backward_cpu_kernel(const at::Tensor& grad_ab, const at::Tensor& logits,
                                       const cpu::Bins& bins, const at::Tensor& ab,
                                       const at::Tensor& stats, double temperature,
                                       at::Tensor& grad) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t T = cpu::kTile;
  const int64_t nq = logits.size(1);
  const int64_t pixels = logits.size(0) * logits.size(2) * logits.size(3);
  const PixelLayout lz = pixel_layout(logits), lg = pixel_layout(grad);
  const PixelLayout lgab = pixel_layout(grad_ab), lab = pixel_layout(ab),
                    lst = pixel_layout(stats);
  const scalar_t* z_src = logits.const_data_ptr<scalar_t>();
  const acc_t* gab = grad_ab.const_data_ptr<acc_t>();
  const acc_t* abp = ab.const_data_ptr<acc_t>();
  const acc_t* stp = stats.const_data_ptr<acc_t>();
  scalar_t* g_dst = grad.mutable_data_ptr<scalar_t>();
  const acc_t inv_t = inverse_temperature<acc_t>(temperature);
  const int64_t tiles = (pixels + T - 1) / T;

  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> z(nq * T), g(nq * T);
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t p0 = tile * T;
      const int64_t cnt = std::min(T, pixels - p0);
      int64_t rs;
      const acc_t* zt = cpu::tile_rows(z_src, lz, p0, cnt, nq, z.data(), rs);
      // g_q = exp((z_q - m) / T) / s / T * (ga * ca_q + gb * cb_q - (ga * a + gb * b))
      acc_t ga[T], gb[T], m[T], coef[T], offset[T];
      for (int64_t t = 0; t < T; ++t) {
        ga[t] = gb[t] = m[t] = coef[t] = offset[t] = 0;
        if (t >= cnt) continue;
        const int64_t og = lgab.offset(p0 + t), oa = lab.offset(p0 + t),
                      os = lst.offset(p0 + t);
        ga[t] = gab[og];
        gb[t] = gab[og + lgab.s_c];
        m[t] = stp[os];
        coef[t] = inv_t / stp[os + lst.s_c];
        offset[t] = ga[t] * abp[oa] + gb[t] * abp[oa + lab.s_c];
      }
      for (int64_t q = 0; q < nq; ++q) {
        const acc_t ca = bins.a[q], cb = bins.b[q];
        for (int64_t t = 0; t < T; ++t) {
          const acc_t e = exp_nonpositive((zt[q * rs + t] - m[t]) * inv_t);
          g[q * T + t] = e * coef[t] * (ga[t] * ca + gb[t] * cb - offset[t]);
        }
      }
      cpu::scatter_tile(g.data(), lg, p0, cnt, nq, g_dst);
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> annealed_mean_cpu(const at::Tensor& logits,
                                                     const at::Tensor& centres,
                                                     double temperature) {
  check_annealed_mean_args("annealed_mean", logits, centres, temperature);
  at::Tensor out, stats;
  std::tie(out, stats) = empty_decoded(logits);
  if (out.numel() == 0) return {out, stats};
  const cpu::Bins bins(centres);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "annealed_mean_cpu", [&] {
                                    annealed_mean_cpu_kernel<scalar_t>(
                                        logits, bins, temperature, out, stats);
                                  });
  return {out, stats};
}

at::Tensor annealed_mean_backward_cpu(const at::Tensor& grad_ab, const at::Tensor& logits,
                                      const at::Tensor& centres, const at::Tensor& ab,
                                      const at::Tensor& stats, double temperature) {
  const char* op = "annealed_mean_backward";
  check_annealed_mean_args(op, logits, centres, temperature);
  check_decoded(op, grad_ab, ab, stats, logits);
  if (temperature == 0) return at::zeros_like(logits);  // piecewise constant in z
  at::Tensor grad = at::empty_like(logits);
  if (grad.numel() == 0) return grad;
  const cpu::Bins bins(centres);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "annealed_mean_backward_cpu", [&] {
                                    annealed_mean_backward_cpu_kernel<scalar_t>(
                                        grad_ab, logits, bins, ab, stats, temperature, grad);
                                  });
  return grad;
}

}  // namespace fastcolor
