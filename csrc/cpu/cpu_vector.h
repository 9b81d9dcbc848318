// Vector math of the CPU kernels: the AVX-512 exp and log of sixteen lanes
// (where the compiler's auto-vectorised scalar functions cost more
// instructions) and the softmax's exp sweep over a tile's rows.
#pragma once

#include "cpu_common.h"

namespace fastcolor {
namespace cpu {

#if defined(__AVX512F__)
// Sixteen float lanes (GCC/Clang vector type, one AVX-512 register).
typedef float vf16 __attribute__((vector_size(64)));

// exp_nonpositive (fastcolor/colormath.h) of sixteen lanes, AVX-512 only:
// the same range reduction and polynomial in 10 instructions instead of 16,
// the rounding to an integer multiple of ln 2 in one (vrndscaleps) and the
// scaling by 2^n in one (vscalefps) instead of an integer conversion, add,
// shift and multiply. Values below -87.3 give 0, NaN stays NaN, as the
// scalar function. (Without AVX-512 the compiler vectorises the scalar one.)
inline vf16 exp16_nonpositive(vf16 x) {
  const __m512 xv = reinterpret_cast<__m512>(x);
  const __m512 lo = _mm512_set1_ps(-87.3f);
  // Lanes below -87.3 (-inf included) compute garbage that the final
  // masked scaling zeroes, so x needs no clamp.
  const __mmask16 under = _mm512_cmp_ps_mask(xv, lo, _CMP_LT_OQ);
  const __m512 n = _mm512_maskz_roundscale_ps(  // (maskz: GCC 12 warns on the unmasked form)
      static_cast<__mmask16>(0xffff), _mm512_mul_ps(xv, _mm512_set1_ps(1.44269504088896341f)),
      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xv));
  __m512 p = _mm512_set1_ps(0x1.0F9F9Cp-7f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.573A1Ap-5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.555A80p-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.FFFDC6p-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0x1.FFFFF6p-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.f));
  return reinterpret_cast<vf16>(_mm512_maskz_scalef_ps(static_cast<__mmask16>(~under), p, n));
}

// log(x) of sixteen lanes, AVX-512 only, for x >= 0 (subnormals included:
// vgetexpps/vgetmantps normalise them): x = 2^e m with m in [sqrt(1/2),
// sqrt(2)) from the exponent and mantissa instructions, then log_of's
// polynomial in m - 1, and e ln 2 added with ln 2 rounded to float once
// (an error of e * 2e-9, below the rounding of the result for any x the
// callers weigh). 0 gives -inf; negative x gives log |x| and infinities or
// NaN are unspecified (callers screen those out).
inline vf16 log16_nonnegative(vf16 x) {
  const __m512 xv = reinterpret_cast<__m512>(x);
  const __m512 one = _mm512_set1_ps(1.f);
  const __mmask16 all = 0xffff;  // (maskz forms: GCC 12 warns on the unmasked ones)
  const __m512 m = _mm512_maskz_getmant_ps(all, xv, _MM_MANT_NORM_p5_1, _MM_MANT_SIGN_src);  // [1/2, 1)
  __m512 e = _mm512_add_ps(_mm512_maskz_getexp_ps(all, xv), one);
  const __mmask16 low = _mm512_cmp_ps_mask(m, _mm512_set1_ps(0.70710678118654752f), _CMP_LT_OQ);
  __m512 f = _mm512_sub_ps(m, one);
  f = _mm512_mask_add_ps(f, low, f, m);  // 2m - 1
  e = _mm512_mask_sub_ps(e, low, e, one);
  const __m512 z = _mm512_mul_ps(f, f);
  __m512 y = _mm512_set1_ps(7.0376836292e-2f);
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(-1.1514610310e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.1676998740e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(-1.2420140846e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(1.4249322787e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(-1.6668057665e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(2.0000714765e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(-2.4999993993e-1f));
  y = _mm512_fmadd_ps(y, f, _mm512_set1_ps(3.3333331174e-1f));
  y = _mm512_mul_ps(_mm512_mul_ps(y, f), z);
  y = _mm512_fmadd_ps(z, _mm512_set1_ps(-0.5f), y);
  return reinterpret_cast<vf16>(
      _mm512_fmadd_ps(e, _mm512_set1_ps(0.693147180559945309f), _mm512_add_ps(f, y)));
}

// Whether every lane of x lies in [lo, hi] (NaN does not).
inline bool all_within(vf16 x, float lo, float hi) {
  const __m512 v = reinterpret_cast<__m512>(x);
  return (_mm512_cmp_ps_mask(v, _mm512_set1_ps(lo), _CMP_GE_OQ) &
          _mm512_cmp_ps_mask(v, _mm512_set1_ps(hi), _CMP_LE_OQ)) == static_cast<__mmask16>(0xffff);
}
#endif  // __AVX512F__

// exp(z - m) of a tile's rows into out (when store) and their per-lane sums
// s. (Inlined: out of line, with store a run-time flag, it cost the 313-bin
// loss 15% more time.)
template <typename T>
__attribute__((always_inline)) inline void exp_rows(const T* __restrict z, int64_t zs,
                                                    const T* __restrict m, T* __restrict out,
                                                    int64_t os, int64_t nq, T* __restrict s,
                                                    bool store) {
  constexpr int64_t L = kTile;
  for (int64_t t = 0; t < L; ++t) s[t] = 0;
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    // Sixteen lanes at a time through the vector exp; the sums stay in
    // registers. (Measured on the 32-bin loss, 4x32x128x128, AVX-512: 5-8%
    // less time for the forward+backward than the auto-vectorised loop below.)
    constexpr int64_t V = 16;
    vf16 acc[L / V], mv[L / V];
    for (int64_t c = 0; c < L / V; ++c) {
      acc[c] = vf16{};
      std::memcpy(&mv[c], m + c * V, sizeof(vf16));
    }
    for (int64_t q = 0; q < nq; ++q) {
      const T* __restrict zr = z + q * zs;
      T* __restrict o = out + q * os;
      for (int64_t c = 0; c < L / V; ++c) {
        vf16 v;
        std::memcpy(&v, zr + c * V, sizeof(v));
        v = exp16_nonpositive(v - mv[c]);
        if (store) std::memcpy(o + c * V, &v, sizeof(v));
        acc[c] += v;
      }
    }
    for (int64_t c = 0; c < L / V; ++c) std::memcpy(s + c * V, &acc[c], sizeof(vf16));
    return;
  }
#endif
  for (int64_t q = 0; q < nq; ++q) {
    const T* __restrict zr = z + q * zs;
    T* __restrict o = out + q * os;
    if (store) {
      for (int64_t t = 0; t < L; ++t) {
        const T v = exp_nonpositive(zr[t] - m[t]);
        o[t] = v;
        s[t] += v;
      }
    } else {
      for (int64_t t = 0; t < L; ++t) s[t] += exp_nonpositive(zr[t] - m[t]);
    }
  }
}

// The softmax's terms of a tile's rows: e = exp(z - m0) into out (when
// store), their per-lane sums s0 and each lane's max logit m. The shift m0
// only keeps exp in range (a softmax is the same for any shift): with
// AVX-512 and float32 it is the lane's first logit, so that one sweep finds
// the max and the terms together, kept where every lane's sum lies in
// [1, 1e37] (no logit 85 or more above the first, none not finite); else,
// and for other types or targets, m0 = m (tile_max, then exp_rows). Returns
// whether m0 is the first logit.
template <typename T>
inline bool softmax_terms(const T* __restrict z, int64_t zs, int64_t nq, T* __restrict out,
                          int64_t os, T* __restrict s0, T* __restrict m, bool store) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    constexpr int64_t V = 16, C = kTile / V;
    vf16 acc[C], mx[C], m0[C];
    for (int64_t c = 0; c < C; ++c) {
      std::memcpy(&m0[c], z + c * V, sizeof(vf16));
      acc[c] = vf16{};
      mx[c] = m0[c];
    }
    for (int64_t q = 0; q < nq; ++q) {
      const float* __restrict zr = z + q * zs;
      float* __restrict o = out + q * os;
      for (int64_t c = 0; c < C; ++c) {
        vf16 v;
        std::memcpy(&v, zr + c * V, sizeof(v));
        mx[c] = v > mx[c] ? v : mx[c];
        v = exp16_nonpositive(v - m0[c]);  // (valid for x > 0 too, up to overflow)
        if (store) std::memcpy(o + c * V, &v, sizeof(v));
        acc[c] += v;
      }
    }
    bool ok = true;
    for (int64_t c = 0; c < C; ++c) {
      ok &= all_within(acc[c], 1.f, 1e37f);
      std::memcpy(s0 + c * V, &acc[c], sizeof(vf16));
      std::memcpy(m + c * V, &mx[c], sizeof(vf16));
    }
    if (ok) return true;
  }
#endif
  tile_max(z, zs, nq, m);
  exp_rows(z, zs, m, out, os, nq, s0, store);
  return false;
}

}  // namespace cpu
}  // namespace fastcolor
