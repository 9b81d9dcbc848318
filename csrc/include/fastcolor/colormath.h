// Per-pixel scalar maths shared by the CPU and the CUDA kernels.
//
// Everything here is a pure function of a few scalars so that both back ends
// (and, through the same formulas, fastcolor/reference.py) compute bit-for-bit
// the same bin selection. Floating-point results that go through exp() may
// differ by a few ulps between back ends; selections never do.
#pragma once

#include "fastcolor/portable.h"

#if defined(__CUDACC__)
#define FC_HD __host__ __device__ __forceinline__
#define FC_UNROLL _Pragma("unroll")
#else
#define FC_HD inline
#define FC_UNROLL _Pragma("GCC unroll 16")
#endif

namespace fastcolor {

// Largest k accepted by soft_encode and rebalanced_cross_entropy. The k nearest
// bins live in registers (CUDA) or on the stack (CPU), indexed only by
// compile-time constants. The value is defined once, in fastcolor/ops/limits.py;
// setup.py passes it as -DFASTCOLOR_MAX_K.
#ifndef FASTCOLOR_MAX_K
#error "FASTCOLOR_MAX_K is not defined: setup.py passes it from fastcolor/ops/limits.py"
#endif
constexpr int kMaxK = FASTCOLOR_MAX_K;

FC_HD bool finite2(float a, float b) {
  return std::isfinite(a) && std::isfinite(b);
}

// Squared ab distance, rounded exactly as the reference computes it:
// (a - ca)^2 + (b - cb)^2 with two roundings for the products and one for the
// sum, never contracted into an FMA (the CPU files build with
// -ffp-contract=off). Overflow (|ab| > ~1e19) saturates at FLT_MAX so that a
// finite but absurd ab still selects bins deterministically.
FC_HD float sqdist(float a, float b, float ca, float cb) {
  const float da = a - ca;
  const float db = b - cb;
#if defined(__CUDA_ARCH__)
  const float d = __fadd_rn(__fmul_rn(da, da), __fmul_rn(db, db));
#else
  const float d = da * da + db * db;
#endif
  return d < FLT_MAX ? d : FLT_MAX;
}

// The ranking of bins: by distance, and on equal distance the lower index.
FC_HD bool ranks_before(float d1, int32_t i1, float d2, int32_t i2) {
  return d1 < d2 || (d1 == d2 && i1 < i2);
}

// The k <= Cap first bins in ranking order among those pushed so far, in any
// order of pushing (push on the GPU, insert on the CPU). Slots [0, k) hold
// the list, sorted, with empty slots (+inf) ranking after every bin; slots
// [k, Cap) hold a sentinel that ranks before every bin and never moves.
// GPU note: every array index must be a compile-time constant after
// unrolling, or the arrays leave registers for local memory. So the worst
// entry is found as the maximum over all slots (the sentinels never win),
// not read as d[k - 1].
template <int Cap>
struct KNearestT {
  float d[Cap];
  int32_t idx[Cap];
  float worst;  // the k-th entry, kept in scalars so the common test is cheap
  int32_t worst_idx;
  int k;

  FC_HD explicit KNearestT(int k_) : worst(INFINITY), worst_idx(INT32_MAX), k(k_) {
    FC_UNROLL
    for (int j = 0; j < Cap; ++j) {
      d[j] = j < k ? INFINITY : -INFINITY;
      idx[j] = j < k ? INT32_MAX : -1;
    }
  }

  FC_HD void push(float dq, int32_t q) {
    if (!ranks_before(dq, q, worst, worst_idx)) return;
    FC_UNROLL
    for (int j = Cap - 1; j > 0; --j) {
      if (j < k) {
        if (ranks_before(dq, q, d[j - 1], idx[j - 1])) {
          d[j] = d[j - 1];
          idx[j] = idx[j - 1];
        } else if (ranks_before(dq, q, d[j], idx[j])) {
          d[j] = dq;
          idx[j] = q;
        }
      }
    }
    if (ranks_before(dq, q, d[0], idx[0])) {
      d[0] = dq;
      idx[0] = q;
    }
    float w = d[0];
    int32_t wi = idx[0];
    FC_UNROLL
    for (int j = 1; j < Cap; ++j) {
      if (ranks_before(w, wi, d[j], idx[j])) {
        w = d[j];
        wi = idx[j];
      }
    }
    worst = w;
    worst_idx = wi;
  }

#if !defined(__CUDACC_RTC__)
  // The same insertion for host code: a plain insertion sort over the first
  // k slots, cheaper on a CPU than the fixed-length unrolled loop above
  // (which keeps the arrays in GPU registers).
  void insert(float dq, int32_t q) {
    if (!ranks_before(dq, q, worst, worst_idx)) return;
    int j = k - 1;
    for (; j > 0 && ranks_before(dq, q, d[j - 1], idx[j - 1]); --j) {
      d[j] = d[j - 1];
      idx[j] = idx[j - 1];
    }
    d[j] = dq;
    idx[j] = q;
    worst = d[k - 1];
    worst_idx = idx[k - 1];
  }
#endif  // !__CUDACC_RTC__

  // Whether bin q at distance dq is among the k selected (once all bins were
  // pushed): the same ranking test, so it agrees with idx[] exactly.
  FC_HD bool selected(float dq, int32_t q) const {
    return !ranks_before(worst, worst_idx, dq, q);
  }
};

using KNearest = KNearestT<kMaxK>;

// Gaussian soft-encoding weight of a selected bin, before normalisation:
// exp(-(d - d_min) / (2 sigma^2)), with inv_two_sigma2 = 1 / (2 sigma^2).
// Subtracting the nearest distance keeps it in (0, 1] for any ab, however far
// outside the gamut.
FC_HD float gaussian_weight(float d, float d_min, float inv_two_sigma2) {
  return expf(-(d - d_min) * inv_two_sigma2);
}

// Sum of the k unnormalised Gaussian weights of a KNearest list.
template <int Cap>
FC_HD float gaussian_normaliser(const KNearestT<Cap>& nn, float inv_two_sigma2) {
  float z = 0.f;
  FC_UNROLL
  for (int j = 0; j < Cap; ++j)
    if (j < nn.k) z += gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2);
  return z;
}

// a * b + c in one rounding where the CPU has FMA (or on the GPU), else in
// two. Only for sums whose rounding no selection depends on.
FC_HD float fmadd(float a, float b, float c) {
#if defined(__CUDA_ARCH__) || defined(__FMA__)
  return fmaf(a, b, c);
#else
  return a * b + c;
#endif
}
FC_HD double fmadd(double a, double b, double c) {
#if defined(__CUDA_ARCH__) || defined(__FMA__)
  return fma(a, b, c);
#else
  return a * b + c;
#endif
}

#if !defined(__CUDACC_RTC__)  // host code only
// exp(x) for x <= 0 (softmax terms after the max is subtracted), branch-free
// so that loops over it vectorise on the CPU (std::exp does not). Range
// reduction x = n ln2 + r with |r| <= ln2/2 (ln2 split in two for accuracy),
// a degree-5 minimax polynomial for e^r, and 2^n built from the exponent
// bits. Relative error below 2e-7 over [-87, 0] (measured against exp in
// float64); 0 below -87.3, where float32 leaves its normal range; NaN stays
// NaN. Not valid for x > 0.
inline float exp_nonpositive(float x) {
  const float kLog2e = 1.44269504088896341f;
  const float kLn2Hi = 0.693359375f;
  const float kLn2Lo = -2.12194440e-4f;
  const float xc = x < -87.3f ? -87.3f : x;  // NaN passes through
  // Round to nearest by the 1.5 * 2^23 trick (no libm call, vectorises).
  const float n = fmadd(xc, kLog2e, 12582912.f) - 12582912.f;
  const float r = fmadd(-n, kLn2Lo, fmadd(-n, kLn2Hi, xc));
  float p = 0x1.0F9F9Cp-7f;
  p = fmadd(p, r, 0x1.573A1Ap-5f);
  p = fmadd(p, r, 0x1.555A80p-3f);
  p = fmadd(p, r, 0x1.FFFDC6p-2f);
  p = fmadd(p, r, 0x1.FFFFF6p-1f);
  p = fmadd(p, r, 1.f);
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return x < -87.3f ? 0.f : p * scale;
}

inline double exp_nonpositive(double x) { return std::exp(x); }
#endif  // !__CUDACC_RTC__

}  // namespace fastcolor
