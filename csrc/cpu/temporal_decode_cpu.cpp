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
#include "cpu_vector.h"
#include "output_pool.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// The annealed mean's sums over a tile's rows of the new state v (nq rows
// of kTile lanes, row q at v[q * vs]): s = sum_q e_q, sa = sum_q c_a e_q,
// sb = sum_q c_b e_q with e_q = exp(min(log v_q - lmax, 0) / T), 0 where
// v_q <= 0 (log 0 = -inf weighs 0; NaN and negative lanes are flagged by
// the caller). T = 1 (inv_t = 1) needs no log or exp: e_q = v_q / max v,
// and the common factor 1 / max v cancels in the ratios.
void annealed_sums(const float* __restrict v, int64_t vs, int64_t nq, const cpu::Bins& bins,
                   const float* lmax, float inv_t, float* s, float* sa, float* sb) {
  constexpr int64_t L = cpu::kTile;
  const bool unit = inv_t == 1.f;
  for (int64_t t = 0; t < L; ++t) s[t] = sa[t] = sb[t] = 0.f;
  for (int64_t q = 0; q < nq; ++q) {
    const float* __restrict r = v + q * vs;
    const float ca = bins.a[q], cb = bins.b[q];
    if (unit) {
      for (int64_t t = 0; t < L; ++t) {
        s[t] += r[t];
        sa[t] = fmadd(r[t], ca, sa[t]);
        sb[t] = fmadd(r[t], cb, sb[t]);
      }
      continue;
    }
    for (int64_t t = 0; t < L; ++t) {
      const float x = r[t];
      float d = cpu::log_of(x) - lmax[t];  // branch-free: the loop vectorises
      d = d > 0.f ? 0.f : d;  // the polynomial log may break a tie by an ulp
      // log(0) = -inf weighs 0; computed for every lane, then selected,
      // so that the loop stays vectorised.
      const float y = exp_nonpositive(d * inv_t);
      const float e = x > 0.f ? y : 0.f;
      s[t] += e;
      sa[t] = fmadd(e, ca, sa[t]);
      sb[t] = fmadd(e, cb, sb[t]);
    }
  }
}

#if defined(__AVX512F__)
// Steps 3 and 4 below in one sweep, sixteen lanes at a time (float32,
// AVX-512, T > 0): the new state v is blended from the tile's softmax terms
// e (stride kTile) and state rows (stride ss), written to nt (stride ns),
// and summed as annealed_sums does but without the shift by log max v,
// which would need a sweep of its own: e_q = v_q^(1 / T). That is exact up
// to rounding wherever a lane's sum stays in [1e-20, 1e30]: the terms that
// exp flushes to 0 (below e^-87.3 = 1.2e-38), which the shifted form might
// keep, then weigh less than Q * 1.2e-18 of the sum. Returns false (the
// caller redoes the tile by the exact sweeps) when a lane leaves that range
// or any v is negative, NaN or infinite. Against the two sweeps, v is not
// stored and read back, and the vector log and exp take about half the
// instructions of the auto-vectorised scalar ones.
bool blend_and_sum16(const float* __restrict e, const float* inv, const float* w,
                     const float* __restrict st, int64_t ss, float* __restrict nt, int64_t ns,
                     int64_t nq, const cpu::Bins& bins, float inv_t, float* s, float* sa,
                     float* sb, const float* zt, int64_t zs, bool ahead) {
  constexpr int64_t L = cpu::kTile, V = 16, C = L / V;
  using cpu::vf16;
  const bool unit = inv_t == 1.f;
  const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.f);
  // v = w state + a e with a = (1 - w) / sum: p = e / sum where w = 0, and
  // the state is not read there (it may be anything when it is not used).
  __m512 wv[C], av[C];
  __mmask16 used[C];
  vf16 acc[C], acc_a[C], acc_b[C];
  for (int64_t c = 0; c < C; ++c) {
    wv[c] = _mm512_loadu_ps(w + c * V);
    av[c] = _mm512_mul_ps(_mm512_sub_ps(one, wv[c]), _mm512_loadu_ps(inv + c * V));
    used[c] = _mm512_cmp_ps_mask(wv[c], zero, _CMP_NEQ_UQ);
    acc[c] = acc_a[c] = acc_b[c] = vf16{};
  }
  __mmask16 bad = 0;
  for (int64_t q = 0; q < nq; ++q) {
    const float* __restrict er = e + q * L;
    const float* __restrict sr = st + q * ss;
    float* __restrict nr = nt + q * ns;
    if (ahead) {  // the next tile's rows of the logits and the state
      cpu::prefetch_next_run(zt + q * zs);
      cpu::prefetch_next_run(sr);
    }
    const vf16 ca = vf16{} + bins.a[q], cb = vf16{} + bins.b[q];
    for (int64_t c = 0; c < C; ++c) {
      const __m512 ae = _mm512_mul_ps(_mm512_loadu_ps(er + c * V), av[c]);
      const __m512 v = _mm512_mask3_fmadd_ps(wv[c], _mm512_loadu_ps(sr + c * V), ae, used[c]);
      _mm512_storeu_ps(nr + c * V, v);
      // QNaN, +inf, -inf, negative finite, SNaN.
      bad |= _mm512_fpclass_ps_mask(v, 0x01 | 0x08 | 0x10 | 0x40 | 0x80);
      vf16 x = reinterpret_cast<vf16>(v);
      if (!unit)  // v^(1 / T); v = 0 gives exp(-inf) = 0
        x = cpu::exp16_nonpositive(cpu::log16_nonnegative(x) * inv_t);
      acc[c] += x;
      acc_a[c] += x * ca;
      acc_b[c] += x * cb;
    }
  }
  bool ok = bad == 0;
  for (int64_t c = 0; c < C; ++c) {
    ok &= cpu::all_within(acc[c], 1e-20f, 1e30f);
    std::memcpy(s + c * V, &acc[c], sizeof(vf16));
    std::memcpy(sa + c * V, &acc_a[c], sizeof(vf16));
    std::memcpy(sb + c * V, &acc_b[c], sizeof(vf16));
  }
  return ok;
}
#endif  // __AVX512F__

// Per tile of kTile pixels (channel-major rows, read in place for NCHW):
//  1. m = max z, sum = sum_q exp(z - m): the softmax p = exp(z - m) / sum;
//  2. w = weight (1 - max p)^sharpness;
//  3. new state s = w state + (1 - w) p (p where w = 0), rounded to float32,
//     and its per-pixel max;
//  4. ab = annealed mean of log s: sum_q c_q exp((log s_q - log max s) / T),
//     normalised; T = 0: the first largest s, NaN if any s is NaN or < 0.
// With AVX-512 (float32 logits), step 1 shifts by the first logit instead of
// the max (cpu::softmax_terms) and steps 3 and 4 are one sweep without the
// max (blend_and_sum16), each falling back to the steps above for a tile
// where its range check fails. The tile's rows stay in cache between the
// sweeps, so memory sees one read of the logits and the state and one write
// of the new state (streamed, when large).
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
  const bool stream = new_state.nbytes() >= cpu::kStreamBytes;

  at::parallel_for(0, tiles, 1, [&](int64_t t0, int64_t t1) {
    std::vector<acc_t> zbuf(nq * L);
    std::vector<float> sbuf(nq * L), nbuf(nq * L), ebuf(nq * L);
    for (int64_t tile = t0; tile < t1; ++tile) {
      const int64_t p0 = tile * L;
      const int64_t cnt = std::min(L, pixels - p0);
      int64_t zs, ss;
      // Read in place (float NCHW), the next tile's rows are prefetched in
      // the blend pass below, a few per bin, between the arithmetic: in one
      // burst here they stalled the pipeline.
      const acc_t* zt = cpu::tile_rows(z_src, lz, p0, cnt, nq, zbuf.data(), zs, false);
      const float* st = cpu::tile_rows(s_src, ls, p0, cnt, nq, sbuf.data(), ss, false);
      const bool ahead = tile + 1 < t1 && zt != zbuf.data() && st != sbuf.data();
      // A large new state is formed in nbuf and streamed out at the end
      // (cpu::stream_row); a small one is written in place where the tile
      // is a run of adjacent pixels.
      int64_t off[L];
      for (int64_t t = 0; t < cnt; ++t) off[t] = ln.offset(p0 + t);
      const bool run = !stream && cpu::consecutive(off, cnt);
      float* nt = run ? n_dst + off[0] : nbuf.data();
      const int64_t ns = run ? ln.s_c : L;

      acc_t m[L], sum[L], inv[L], w[L];
      // float32: exp(z - m0) is kept in a cache-resident buffer for the blend
      // (one exp per logit); float64 computes it twice rather than round it
      // through float32, with m0 = m (cpu::softmax_terms shifts by the first
      // logit for float32 only).
      constexpr bool keep_exp = std::is_same_v<acc_t, float>;
      acc_t* e_out = nullptr;
      if constexpr (keep_exp) e_out = ebuf.data();
      const bool shifted = cpu::softmax_terms(zt, zs, nq, e_out, L, sum, m, keep_exp);
      for (int64_t t = 0; t < L; ++t) {
        inv[t] = acc_t(1) / sum[t];
        const acc_t wt = t < cnt ? static_cast<acc_t>(w_src[lw.offset(p0 + t)]) : acc_t(0);
        if (!gated) {
          w[t] = wt;
          continue;
        }
        // max p = exp(max z - m0) / sum
        const acc_t maxp = shifted ? inv[t] / exp_nonpositive(zt[t] - m[t]) : inv[t];
        w[t] = wt * std::pow(acc_t(1) - maxp, sharp);
      }

      float sa[L], sb[L];
      bool done = false;
#if defined(__AVX512F__)
      if constexpr (keep_exp) {
        if (temperature > 0) {
          float s[L];
          done = blend_and_sum16(ebuf.data(), inv, w, st, ss, nt, ns, nq, bins, inv_t, s, sa, sb,
                                 zt, zs, ahead);
          if (done)
            for (int64_t t = 0; t < L; ++t) {
              sa[t] /= s[t];
              sb[t] /= s[t];
            }
        }
      }
#endif
      if (!done) {  // the exact sweeps: 3, then 4
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
          if (ahead) {
            cpu::prefetch_next_run(zr);
            cpu::prefetch_next_run(sr);
          }
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
          for (int64_t t = 0; t < L; ++t) lmax[t] = cpu::log_of(smax[t]);
          annealed_sums(nt, ns, nq, bins, lmax, inv_t, s, sa, sb);
          for (int64_t t = 0; t < L; ++t) {
            // log(s) has NaN or +inf (inf - inf), or is -inf throughout
            // (all-zero state, 0 / 0): NaN, as the annealed mean of log(s).
            const bool nan = neg[t] || inf[t] || smax[t] == 0.f;
            sa[t] = nan ? NAN : sa[t] / s[t];
            sb[t] = nan ? NAN : sb[t] / s[t];
          }
        }
      }
      if (!run) cpu::scatter_tile(nbuf.data(), ln, p0, cnt, nq, n_dst, stream);
      for (int64_t t = 0; t < cnt; ++t) {
        const int64_t oo = lo.offset(p0 + t);
        o[oo] = sa[t];
        o[oo + lo.s_c] = sb[t];
      }
    }
    if (stream) cpu::stream_fence();
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
