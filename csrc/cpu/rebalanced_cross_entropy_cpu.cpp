#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <cstring>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cpu_common.h"
#include "cpu_vector.h"
#include "output_pool.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// rows[q][t] *= scale[t].
template <typename T>
__attribute__((always_inline)) inline void scale_rows(T* __restrict rows, int64_t rs, const T* __restrict scale, int64_t nq) {
  for (int64_t q = 0; q < nq; ++q) {
    T* __restrict r = rows + q * rs;
    for (int64_t t = 0; t < cpu::kTile; ++t) r[t] *= scale[t];
  }
}

// Per tile of kTile pixels: the logits are read once, channel-major (in
// place for NCHW float32/float64, else gathered).
// Per pixel, the k nearest bins of its ab give the soft target t (never
// stored densely). Across the tile's lanes: log-sum-exp, the loss
// w * (log(s) sum_j t_j + sum_j t_j (m - z_j)) (shift-invariant) and, when asked, the gradient
// scale * w * (softmax(z) - t), formed in acc_t and rounded once on the store.
// kOne: k = 1, the Stanford configuration and any hard-target loss. The
// target is then the nearest bin with weight exactly 1 (a Gaussian weight
// exp(0) over its own sum), so the search is the branch-free nearest-bin
// query inlined, with no Gaussian weights: the same values as the general
// path, bit for bit.
template <typename scalar_t, bool kOne>
void cross_entropy_cpu_kernel(const at::Tensor& logits, const at::Tensor& ab,
                              const cpu::Search& search, const float* class_w,
                              const std::optional<at::Tensor>& pixel_weight, int k,
                              float inv_two_sigma2, double grad_scale,
                              at::Tensor& loss_px, at::Tensor& grad) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t T = cpu::kTile;
  const int64_t nq = logits.size(1);
  const int64_t pixels = loss_px.numel();
  const PixelLayout lz = pixel_layout(logits);
  const PixelLayout lab = pixel_layout(ab);
  const PixelLayout lw = pixel_weight ? plane_layout(*pixel_weight) : PixelLayout{};
  const PixelLayout lg = grad.defined() ? pixel_layout(grad) : PixelLayout{};
  const scalar_t* z_src = logits.const_data_ptr<scalar_t>();
  const float* ab_src = ab.const_data_ptr<float>();
  const float* w_src = pixel_weight ? pixel_weight->const_data_ptr<float>() : nullptr;
  scalar_t* g_dst = grad.defined() ? grad.mutable_data_ptr<scalar_t>() : nullptr;
  acc_t* loss_dst = loss_px.mutable_data_ptr<acc_t>();
  const acc_t scale = static_cast<acc_t>(grad_scale);
  const int64_t tiles = (pixels + T - 1) / T;
  // A large gradient is formed in e and streamed out (cpu::stream_row).
  const bool stream = g_dst && grad.nbytes() >= cpu::kStreamBytes;

  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> z(nq * T);  // gathered logits, where they cannot be read in place
    std::vector<acc_t> e(nq * T);  // the gradient, where it cannot be written in place
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t p0 = tile * T;
      const int64_t cnt = std::min(T, pixels - p0);
      int64_t rs;
      const acc_t* zt = cpu::tile_rows(z_src, lz, p0, cnt, nq, z.data(), rs);

      // Targets, per pixel. A non-finite ab selects nothing and gets weight
      // NaN, which makes its loss and gradient NaN.
      int32_t tgt_idx[kOne ? 1 : T][kMaxK];
      acc_t tgt_w[kOne ? 1 : T][kMaxK];
      int ntgt[T];
      acc_t w[T], tsum[T];
      int64_t oab[T], ow[T];
      cpu::tile_offsets(lab, p0, cnt, oab);
      if (w_src) cpu::tile_offsets(lw, p0, cnt, ow);
      float ta[T], tb[T];
      if (cpu::consecutive(oab, cnt)) {
        std::memcpy(ta, ab_src + oab[0], sizeof(ta));
        std::memcpy(tb, ab_src + oab[0] + lab.s_c, sizeof(tb));
      } else {
        for (int64_t t = 0; t < T; ++t) {
          ta[t] = t < cnt ? ab_src[oab[t]] : 0.f;
          tb[t] = t < cnt ? ab_src[oab[t] + lab.s_c] : 0.f;
        }
      }
      // kOne: tq = the target bin of each lane, -1 where there is none.
      int32_t tq[T];
      if constexpr (kOne) {
        int32_t nearest[T];
        search.nearest_tile(ta, tb, nearest);
        const float* __restrict cw = class_w;  // (a local: not reloaded through the capture)
        for (int64_t t = 0; t < T; ++t) {
          const bool valid = t < cnt && finite2(ta[t], tb[t]);
          const int32_t bin = valid ? nearest[t] : 0;
          const acc_t pw = (w_src && t < cnt) ? static_cast<acc_t>(w_src[ow[t]]) : acc_t(1);
          w[t] = valid ? static_cast<acc_t>(cw[bin]) * pw : acc_t(NAN);
          tq[t] = valid ? bin : -1;
        }
      } else {
        for (int64_t t = 0; t < T; ++t) {
          ntgt[t] = 0;
          w[t] = 0;
          tsum[t] = 0;
          if (t >= cnt) continue;
          const float a = ta[t], b = tb[t];
          if (!finite2(a, b)) {
            w[t] = NAN;
            continue;
          }
          KNearest nn(k);
          search.k_nearest(a, b, nn);
          const float norm = gaussian_normaliser(nn, inv_two_sigma2);
          ntgt[t] = k;
          for (int j = 0; j < k; ++j) {
            const acc_t tj =
                static_cast<acc_t>(gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2) / norm);
            tgt_idx[t][j] = nn.idx[j];
            tgt_w[t][j] = tj;
            tsum[t] += tj;
          }
          w[t] = static_cast<acc_t>(class_w[nn.idx[0]]) *
                 (w_src ? static_cast<acc_t>(w_src[ow[t]]) : acc_t(1));
        }
      }

      // Where the gradient goes: straight into the output where the tile is a
      // run of adjacent pixels of type acc_t (NCHW float32/float64) and the
      // output is not streamed, else into e, scattered at the end.
      acc_t* gt = e.data();
      int64_t gs = T;
      if constexpr (std::is_same_v<acc_t, scalar_t>) {
        if (g_dst && cnt == T && !stream) {
          int64_t off[T];
          cpu::tile_offsets(lg, p0, T, off);
          if (cpu::consecutive(off, T)) {
            gt = g_dst + off[0];
            gs = lg.s_c;
          }
        }
      }
      // m = max z, s = sum_q exp(z - m); the gradient's rows get the terms
      // exp(z - m0) and s0 their sum (cpu::softmax_terms: m0 = m, or the
      // first logit, which saves a sweep).
      acc_t m[T], s[T], s0[T];
      if (cpu::softmax_terms(zt, rs, nq, gt, gs, s0, m, g_dst != nullptr)) {
        // z_0 <= max z: the branch-free exp, which vectorises.
        for (int64_t t = 0; t < T; ++t) s[t] = s0[t] * exp_nonpositive(zt[t] - m[t]);
      } else {
        for (int64_t t = 0; t < T; ++t) s[t] = s0[t];
      }
      // -sum_j t_j log softmax(z)_j = log(s) sum_j t_j + sum_j t_j (m - z_j):
      // every term is >= 0 and none grows with a shift of all the logits, so
      // huge logits (1e38) cannot cancel (lse * tsum - tdot did, past |z| ~ 1e8).
      if constexpr (kOne) {
        // One target of weight 1: w (log(s) + (m - z_target)), across the
        // lanes (the log vectorised; lanes without a target have w = NaN).
        acc_t loss[T];
        for (int64_t t = 0; t < T; ++t) {
          const acc_t zt_t = zt[(tq[t] < 0 ? 0 : tq[t]) * rs + t];
          const acc_t ls = static_cast<acc_t>(cpu::log_of(s[t]));
          loss[t] = w[t] * (ls + (m[t] - zt_t));
        }
        for (int64_t t = 0; t < cnt; ++t) loss_dst[p0 + t] = loss[t];
      } else {
        for (int64_t t = 0; t < cnt; ++t) {
          acc_t shift = 0;
          for (int j = 0; j < ntgt[t]; ++j) shift += tgt_w[t][j] * (m[t] - zt[tgt_idx[t][j] * rs + t]);
          loss_dst[p0 + t] = w[t] * (std::log(s[t]) * tsum[t] + shift);
        }
      }

      if (g_dst) {
        acc_t pscale[T];
        for (int64_t t = 0; t < T; ++t) pscale[t] = scale * w[t] / s0[t];
        if constexpr (kOne) {
          // scale * w * (softmax - onehot): the target's entry gets - scale * w
          // after its scaling, as in the general path.
          acc_t sw[T];
          for (int64_t t = 0; t < T; ++t) sw[t] = scale * w[t];
          for (int64_t q = 0; q < nq; ++q) {
            acc_t* __restrict r = gt + q * gs;
            const int32_t qi = static_cast<int32_t>(q);
            for (int64_t t = 0; t < T; ++t) {
              const acc_t v = r[t] * pscale[t];
              r[t] = tq[t] == qi ? v - sw[t] : v;
            }
          }
        } else {
          scale_rows(gt, gs, pscale, nq);
          for (int64_t t = 0; t < cnt; ++t)
            for (int j = 0; j < ntgt[t]; ++j)
              gt[tgt_idx[t][j] * gs + t] -= scale * w[t] * tgt_w[t][j];
        }
        if (gt == e.data()) cpu::scatter_tile(e.data(), lg, p0, cnt, nq, g_dst, stream);
      }
    }
    if (stream) cpu::stream_fence();
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rebalanced_cross_entropy_cpu(
    const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& centres,
    const at::Tensor& class_weights, const std::optional<at::Tensor>& pixel_weight,
    int64_t k, double sigma, c10::string_view reduction, bool compute_grad) {
  const char* op = "rebalanced_cross_entropy";
  check_cross_entropy_args(op, logits, ab, centres, class_weights, pixel_weight, k, sigma);
  const Reduction red = parse_reduction(op, reduction);

  at::Tensor loss_px, grad;
  std::tie(loss_px, grad) = empty_cross_entropy(logits, false);
  // The gradient is as large as the logits: recycled (cpu/output_pool.h).
  if (compute_grad) grad = cpu::pooled_empty_like(logits, logits.scalar_type());
  if (loss_px.numel() > 0 && logits.size(1) > 0) {
    const cpu::Search search(centres, static_cast<int>(k));
    const at::Tensor cw = class_weights.contiguous();
    const float inv_two_sigma2 = static_cast<float>(0.5 / (sigma * sigma));
    at::Tensor g = compute_grad ? grad : at::Tensor();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "rebalanced_cross_entropy_cpu", [&] {
          auto run = [&](auto one) {
            cross_entropy_cpu_kernel<scalar_t, decltype(one)::value>(
                logits, ab, search, cw.const_data_ptr<float>(), pixel_weight,
                static_cast<int>(k), inv_two_sigma2,
                reduction_grad_scale(red, loss_px.numel()), loss_px, g);
          };
          if (k == 1) {
            run(std::true_type());
          } else {
            run(std::false_type());
          }
        });
  }
  return {reduce_loss(loss_px, red), grad};
}

}  // namespace fastcolor
