#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cpu_common.h"
#include "output_pool.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// Per tile of kTile pixels (channel-major rows, read in place for NCHW):
//  1. m = max z, sum = sum_q exp(z - m): the softmax p = exp(z - m) / sum;
//  2. w = weight (1 - 1 / sum)^sharpness (max p = 1 / sum);
//  3. new state s = w state + (1 - w) p (p where w = 0), rounded to float32
//     (in place in the output where the tile is a run of adjacent pixels),
//     and its per-pixel max;
//  4. ab = annealed mean of log s: sum_q c_q exp((log s_q - log max s) / T),
//     normalised; T = 0: the first largest s, NaN if any s is NaN or < 0.
// The tile's rows stay in cache between the sweeps, so memory sees one read
// of the logits and the state and one write of the new state.
template <typename scalar_t>
void temporal_decode_cpu_kernel(const at::Tensor& logits, const at::Tensor& state,
                                const at::Tensor& weight, const cpu::Bins& bins,
                                double temperature, double sharpness, at::Tensor& ab,
                                at::Tensor& new_state) {
  using acc_t = at::opmath_type<scalar_t>;
  constexpr int64_t L = cpu::kTile;
  const int64_t nq = logits.size(1);
  const int64_t pixels = logits.size(0) * logits.size(2) * logits.size(3);
  const PixelLayout lz = pixel_layout(logits), ls = pixel_layout(state),
                    lw = pixel_layout(weight), ln = pixel_layout(new_state),
                    lo = pixel_layout(ab);
  const scalar_t* z_src = logits.const_data_ptr<scalar_t>();
  const float* s_src = state.const_data_ptr<float>();
  const float* w_src = weight.const_data_ptr<float>();
  float* n_dst = new_state.mutable_data_ptr<float>();
  float* o = ab.mutable_data_ptr<float>();
  const float inv_t = inverse_temperature<float>(temperature);
  const bool gated = sharpness != 0;
  const acc_t sharp = static_cast<acc_t>(sharpness);
  const int64_t tiles = (pixels + L - 1) / L;

  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> zbuf(nq * L);
    std::vector<float> sbuf(nq * L), nbuf(nq * L), ebuf(nq * L);
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t p0 = tile * L;
      const int64_t cnt = std::min(L, pixels - p0);
      int64_t zs, ss;
      const acc_t* zt = cpu::tile_rows(z_src, lz, p0, cnt, nq, zbuf.data(), zs);
      const float* st = cpu::tile_rows(s_src, ls, p0, cnt, nq, sbuf.data(), ss);
      int64_t off[L];
      for (int64_t t = 0; t < cnt; ++t) off[t] = ln.offset(p0 + t);
      const bool run = cpu::consecutive(off, cnt);
      float* nt = run ? n_dst + off[0] : nbuf.data();
      const int64_t ns = run ? ln.s_c : L;

      acc_t m[L], sum[L], inv[L], w[L];
      cpu::tile_max(zt, zs, nq, m);
      // float32: exp(z - m) is kept in a cache-resident buffer for the blend
      // (one exp per logit); float64 computes it twice rather than round it
      // through float32.
      constexpr bool keep_exp = std::is_same_v<acc_t, float>;
      for (int64_t t = 0; t < L; ++t) sum[t] = 0;
      for (int64_t q = 0; q < nq; ++q) {
        const acc_t* __restrict zr = zt + q * zs;
        float* __restrict er = ebuf.data() + q * L;
        for (int64_t t = 0; t < L; ++t) {
          const acc_t e = exp_nonpositive(zr[t] - m[t]);
          if constexpr (keep_exp) er[t] = e;
          sum[t] += e;
        }
      }
      for (int64_t t = 0; t < L; ++t) {
        inv[t] = acc_t(1) / sum[t];
        const acc_t wt = t < cnt ? static_cast<acc_t>(w_src[lw.offset(p0 + t)]) : acc_t(0);
        w[t] = gated ? wt * std::pow(acc_t(1) - inv[t], sharp) : wt;
      }

      float smax[L];
      // Entries whose log is NaN (NaN or negative), or +inf.
      int32_t neg[L], inf[L];
      for (int64_t t = 0; t < L; ++t) {
        smax[t] = -INFINITY;
        neg[t] = inf[t] = 0;
      }
      for (int64_t q = 0; q < nq; ++q) {
        const acc_t* __restrict zr = zt + q * zs;
        const float* __restrict sr = st + q * ss;
        const float* __restrict er = ebuf.data() + q * L;
        float* __restrict nr = nt + q * ns;
        for (int64_t t = 0; t < L; ++t) {
          const acc_t e = keep_exp ? static_cast<acc_t>(er[t]) : exp_nonpositive(zr[t] - m[t]);
          const acc_t p = e * inv[t];
          const acc_t blend = w[t] * static_cast<acc_t>(sr[t]) + (acc_t(1) - w[t]) * p;
          const float v = static_cast<float>(w[t] == 0 ? p : blend);
          nr[t] = v;
          smax[t] = v > smax[t] ? v : smax[t];
          neg[t] |= !(v >= 0.f);
          inf[t] |= v == INFINITY;
        }
      }

      float sa[L], sb[L];
      if (temperature == 0) {
        int32_t arg[L];
        const int32_t none = static_cast<int32_t>(nq);
        for (int64_t t = 0; t < L; ++t) arg[t] = none;
        for (int64_t q = 0; q < nq; ++q) {
          const float* __restrict nr = nt + q * ns;
          for (int64_t t = 0; t < L; ++t)
            arg[t] = (arg[t] == none && nr[t] == smax[t]) ? static_cast<int32_t>(q) : arg[t];
        }
        for (int64_t t = 0; t < L; ++t) {
          const bool nan = neg[t] || arg[t] == none;  // +inf is simply the mode
          sa[t] = nan ? NAN : bins.a[nan ? 0 : arg[t]];
          sb[t] = nan ? NAN : bins.b[nan ? 0 : arg[t]];
        }
      } else {
        float lmax[L], s[L];
        for (int64_t t = 0; t < L; ++t) {
          lmax[t] = cpu::log_of(smax[t]);
          s[t] = sa[t] = sb[t] = 0.f;
        }
        for (int64_t q = 0; q < nq; ++q) {
          const float* __restrict nr = nt + q * ns;
          const float ca = bins.a[q], cb = bins.b[q];
          for (int64_t t = 0; t < L; ++t) {
            const float v = nr[t];
            float d = cpu::log_of(v) - lmax[t];  // branch-free: the loop vectorises
            d = d > 0.f ? 0.f : d;  // the polynomial log may break a tie by an ulp
            // log(0) = -inf weighs 0; computed for every lane, then selected,
            // so that the loop stays vectorised.
            const float x = exp_nonpositive(d * inv_t);
            const float e = v > 0.f ? x : 0.f;
            s[t] += e;
            sa[t] = fmadd(e, ca, sa[t]);
            sb[t] = fmadd(e, cb, sb[t]);
          }
        }
        for (int64_t t = 0; t < L; ++t) {
          // log(s) has NaN or +inf (inf - inf), or is -inf throughout
          // (all-zero state, 0 / 0): NaN, as the annealed mean of log(s).
          const bool nan = neg[t] || inf[t] || smax[t] == 0.f;
          sa[t] = nan ? NAN : sa[t] / s[t];
          sb[t] = nan ? NAN : sb[t] / s[t];
        }
      }
      if (!run) cpu::scatter_tile(nbuf.data(), ln, p0, cnt, nq, n_dst);
      for (int64_t t = 0; t < cnt; ++t) {
        const int64_t oo = lo.offset(p0 + t);
        o[oo] = sa[t];
        o[oo + lo.s_c] = sb[t];
      }
    }
  });
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> temporal_decode_cpu(const at::Tensor& logits,
                                                       const at::Tensor& state,
                                                       const at::Tensor& weight,
                                                       const at::Tensor& centres,
                                                       double temperature, double sharpness) {
  check_temporal_decode_args("temporal_decode", logits, state, weight, centres, temperature,
                             sharpness);
  at::Tensor ab, new_state;
  std::tie(ab, new_state) = empty_temporal_decode(logits, /*with_state=*/false);
  // The new state is as large as the logits: recycled (cpu/output_pool.h),
  // or every call would page-fault through it.
  new_state = cpu::pooled_empty_like(logits, at::kFloat);
  if (ab.numel() == 0) return {ab, new_state};
  const cpu::Bins bins(centres);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, logits.scalar_type(),
                                  "temporal_decode_cpu", [&] {
                                    temporal_decode_cpu_kernel<scalar_t>(
                                        logits, state, weight, bins, temperature, sharpness,
                                        ab, new_state);
                                  });
  return {ab, new_state};
}

}  // namespace fastcolor
