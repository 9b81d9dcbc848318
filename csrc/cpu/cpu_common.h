// Helpers shared by the CPU kernels.
//
// Nearest bins: a sweep over the bins sorted by their first coordinate,
// outwards from the pixel's, that stops once (a - ca)^2 alone exceeds the
// k-th best distance; it visits a narrow strip of the codebook instead of
// all of it, and selects exactly what a full scan would.
//
// Logits: pixels are processed in tiles of kTile, gathered channel-major
// (buf[q * kTile + t]) so that every per-pixel reduction over the Q bins is
// a loop over q of kTile-wide vector operations across pixels.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <type_traits>
#include <vector>

#include "fastcolor/colormath.h"
#include "fastcolor/layout.h"

namespace fastcolor {
namespace cpu {

constexpr int64_t kTile = 64;  // pixels per tile: long contiguous runs per bin, lanes in registers

struct Bins {
  std::vector<float> a, b;        // by index
  std::vector<float> sa, sb;      // sorted by (a, index)
  std::vector<int32_t> sidx;      // original index of each sorted entry

  explicit Bins(const at::Tensor& centres) {
    const at::Tensor c = centres.contiguous();
    const float* p = c.const_data_ptr<float>();
    const int64_t nq = c.size(0);
    a.resize(nq);
    b.resize(nq);
    for (int64_t i = 0; i < nq; ++i) {
      a[i] = p[2 * i];
      b[i] = p[2 * i + 1];
    }
    sidx.resize(nq);
    std::iota(sidx.begin(), sidx.end(), 0);
    std::stable_sort(sidx.begin(), sidx.end(),
                     [&](int32_t i, int32_t j) { return a[i] < a[j]; });
    sa.resize(nq);
    sb.resize(nq);
    for (int64_t i = 0; i < nq; ++i) {
      sa[i] = a[sidx[i]];
      sb[i] = b[sidx[i]];
    }
  }
  int64_t size() const { return static_cast<int64_t>(a.size()); }
};

// The k nearest bins of a finite (a, b). A bin whose first-coordinate term
// alone, rounded as in sqdist, ranks after the current k-th cannot enter
// (sqdist only adds to it), and the term grows outwards from the start of
// the sweep, so each side stops at its first such bin.
template <int Cap>
KNearestT<Cap> k_nearest(float a, float b, const Bins& bins, int k) {
  KNearestT<Cap> nn(k);
  const int64_t nq = bins.size();
  const float* sa = bins.sa.data();
  int64_t hi = std::lower_bound(sa, sa + nq, a) - sa;
  int64_t lo = hi - 1;
  auto bound = [&](int64_t i) {
    const float da = a - sa[i];
    const float d = da * da;
    return d < FLT_MAX ? d : FLT_MAX;
  };
  while (lo >= 0 || hi < nq) {
    const float dl = lo >= 0 ? bound(lo) : INFINITY;
    const float dh = hi < nq ? bound(hi) : INFINITY;
    const int64_t i = dl <= dh ? lo : hi;
    if (std::min(dl, dh) > nn.worst) break;
    nn.insert(sqdist(a, b, sa[i], bins.sb[i]), bins.sidx[i]);
    if (i == lo) --lo; else ++hi;
  }
  return nn;
}

// Index of the nearest bin, ties to the lower index; -1 for non-finite ab.
inline int32_t nearest(float a, float b, const Bins& bins) {
  if (!finite2(a, b)) return -1;
  return k_nearest<1>(a, b, bins, 1).idx[0];
}

// Whether the n pixels from p0 sit at consecutive offsets (a row of NCHW).
inline bool consecutive(const int64_t* off, int64_t n) {
  if (n != kTile) return false;
  bool run = true;
  for (int64_t t = 1; t < kTile; ++t) run &= off[t] == off[0] + t;
  return run;
}

// Hundreds of strided streams (one per bin) defeat the hardware prefetcher:
// fetch a bin's run of the next tile ourselves.
template <typename scalar_t>
void prefetch_next_run(const scalar_t* row) {
  for (int64_t b = 0; b < kTile * int64_t(sizeof(scalar_t)); b += 64)
    __builtin_prefetch(reinterpret_cast<const char*>(row + kTile) + b);
}

// The logits of the n <= kTile pixels [p0, p0 + n) of an (N, Q, H, W)
// tensor as nq rows of kTile values of type T, row q at rows[q * stride].
// Read in place when the tile is a run of adjacent pixels already of type T
// (NCHW float32/float64); otherwise gathered into buf (lanes past n get 0).
template <typename T, typename scalar_t>
const T* tile_rows(const scalar_t* src, const PixelLayout& l, int64_t p0, int64_t n, int64_t nq,
                   T* buf, int64_t& stride) {
  int64_t off[kTile];
  for (int64_t t = 0; t < n; ++t) off[t] = l.offset(p0 + t);
  const bool run = consecutive(off, n);
  if constexpr (std::is_same_v<T, scalar_t>) {
    if (run) {
      for (int64_t q = 0; q < nq; ++q) prefetch_next_run(src + off[0] + q * l.s_c);
      stride = l.s_c;
      return src + off[0];
    }
  }
  stride = kTile;
  if (run) {  // NCHW in another dtype: one contiguous run per bin, converted
    for (int64_t q = 0; q < nq; ++q) {
      const scalar_t* row = src + off[0] + q * l.s_c;
      prefetch_next_run(row);
      for (int64_t t = 0; t < kTile; ++t) buf[q * kTile + t] = static_cast<T>(row[t]);
    }
    return buf;
  }
  for (int64_t q = 0; q < nq; ++q)
    for (int64_t t = n; t < kTile; ++t) buf[q * kTile + t] = T(0);
  if (l.s_c == 1) {  // channels_last: each pixel's channels are contiguous
    for (int64_t t = 0; t < n; ++t)
      for (int64_t q = 0; q < nq; ++q) buf[q * kTile + t] = static_cast<T>(src[off[t] + q]);
  } else {
    for (int64_t q = 0; q < nq; ++q)
      for (int64_t t = 0; t < n; ++t)
        buf[q * kTile + t] = static_cast<T>(src[off[t] + q * l.s_c]);
  }
  return buf;
}

// The inverse of tile_rows' gather for the first n lanes, rounding to scalar_t.
template <typename T, typename scalar_t>
void scatter_tile(const T* buf, const PixelLayout& l, int64_t p0, int64_t n, int64_t nq,
                  scalar_t* dst) {
  int64_t off[kTile];
  for (int64_t t = 0; t < n; ++t) off[t] = l.offset(p0 + t);
  if (consecutive(off, n)) {
    for (int64_t q = 0; q < nq; ++q) {
      scalar_t* row = dst + off[0] + q * l.s_c;
      for (int64_t t = 0; t < kTile; ++t) row[t] = static_cast<scalar_t>(buf[q * kTile + t]);
    }
  } else if (l.s_c == 1) {
    for (int64_t t = 0; t < n; ++t)
      for (int64_t q = 0; q < nq; ++q) dst[off[t] + q] = static_cast<scalar_t>(buf[q * kTile + t]);
  } else {
    for (int64_t q = 0; q < nq; ++q)
      for (int64_t t = 0; t < n; ++t)
        dst[off[t] + q * l.s_c] = static_cast<scalar_t>(buf[q * kTile + t]);
  }
}

// Per-lane max over the rows of a tile; NaN entries are skipped (the
// exp-sum that follows turns NaN instead).
template <typename T>
void tile_max(const T* rows, int64_t stride, int64_t nq, T* m) {
  for (int64_t t = 0; t < kTile; ++t) m[t] = -std::numeric_limits<T>::infinity();
  for (int64_t q = 0; q < nq; ++q)
    for (int64_t t = 0; t < kTile; ++t) m[t] = rows[q * stride + t] > m[t] ? rows[q * stride + t] : m[t];
}

}  // namespace cpu
}  // namespace fastcolor
