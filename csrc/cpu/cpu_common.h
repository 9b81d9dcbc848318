// Helpers shared by the CPU kernels.
//
// Nearest bins: the per-codebook lookup table (fastcolor/lookup.h, built
// once per codebook and k and cached): per pixel one cell, then exact
// distances to that cell's few candidates; it selects exactly what a full
// scan would.
//
// Logits: pixels are processed in tiles of kTile, gathered channel-major
// (buf[q * kTile + t]) so that every per-pixel reduction over the Q bins is
// a loop over q of kTile-wide vector operations across pixels.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <array>
#include <cfloat>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include "fastcolor/colormath.h"
#include "fastcolor/layout.h"
#include "fastcolor/lookup.h"
#include "fastcolor/lookup_cache.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace fastcolor {
namespace cpu {

constexpr int64_t kTile = 64;  // pixels per tile: long contiguous runs per bin, lanes in registers

// Calls f(p, offset) for the pixels p in [p0, p1) in order, the offsets
// stepped along each row (two divisions per call instead of two per pixel).
template <typename F>
inline void walk_pixels(const PixelLayout& l, int64_t p0, int64_t p1, F&& f) {
  if (p0 >= p1) return;
  const int64_t h = l.hw / l.w;
  int64_t n = p0 / l.hw;
  int64_t y = (p0 - n * l.hw) / l.w;
  int64_t x = p0 - n * l.hw - y * l.w;
  int64_t p = p0;
  while (p < p1) {
    const int64_t end = std::min(p1, p + (l.w - x));
    int64_t off = n * l.s_n + y * l.s_h + x * l.s_w;
    for (; p < end; ++p, off += l.s_w) f(p, off);
    x = 0;
    if (++y == h) {
      y = 0;
      ++n;
    }
  }
}

// Offsets of the n pixels [p0, p0 + n) (two divisions per call, not per pixel).
inline void tile_offsets(const PixelLayout& l, int64_t p0, int64_t n, int64_t* off) {
  walk_pixels(l, p0, p0 + n, [&](int64_t p, int64_t o) { off[p - p0] = o; });
}

// The centres by index (the decode's weighted sums).
struct Bins {
  std::vector<float> a, b;

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
  }
  int64_t size() const { return static_cast<int64_t>(a.size()); }
};

// Up to this many bins, the nearest bins of a tile of pixels (k = 1) are
// found by scanning every centre with the tile's 64 pixels as vector lanes:
// Q / 16 vector steps a pixel, no branches, against a table query's
// candidate loop (data-dependent trip count and dependent loads). Measured
// with the 32-bin Stanford codebook: the k = 1 loss forward+backward went
// from 5.4 to 2.7 ms on one thread (4x32x128x128 float32). The cost grows
// with Q; larger codebooks keep the table.
constexpr int64_t kScanBins = 64;

// The nearest of the nq centres of every lane of a tile, by the table's
// rule: sqdist, strict < in index order (so ties to the lower index), bin 0
// if nothing is below +inf. Lanes with non-finite ab get garbage the caller
// ignores.
inline void scan_nearest(const float* __restrict a, const float* __restrict b,
                         const float* __restrict ca, const float* __restrict cb, int64_t nq,
                         int32_t* __restrict out) {
  // GCC/Clang vector types (16 lanes; lowered to whatever the target has):
  // the running minimum stays in registers and every select is a blend.
  typedef float vf __attribute__((vector_size(64)));
  typedef int32_t vi __attribute__((vector_size(64)));
  constexpr int64_t V = 16;
  static_assert(kTile % V == 0, "tiles hold whole vectors");
  // Bins outside, vectors inside: the kTile / V running minima are
  // independent chains that overlap, where one vector at a time waited on
  // its compare-and-select every bin (the 32-bin loss spent a sixth of its
  // kernel time here).
  constexpr int64_t C = kTile / V;
  vf va[C], vb[C], best_d[C];
  vi best[C];
  for (int64_t c = 0; c < C; ++c) {
    std::memcpy(&va[c], a + c * V, sizeof(vf));
    std::memcpy(&vb[c], b + c * V, sizeof(vf));
    best_d[c] = vf{} + INFINITY;
    best[c] = vi{};
  }
  for (int64_t q = 0; q < nq; ++q) {
    const float qa = ca[q], qb = cb[q];
    for (int64_t c = 0; c < C; ++c) {
      const vf da = va[c] - qa;
      const vf db = vb[c] - qb;
      // sqdist (no FMA: -ffp-contract=off). Compared as lookup_nearest
      // does: an overflowed +inf or a NaN is never below best_d.
      const vf d = da * da + db * db;
      const vi take = d < best_d[c];
      best_d[c] = take ? d : best_d[c];
      best[c] = take ? static_cast<int32_t>(q) : best[c];
    }
  }
  for (int64_t c = 0; c < C; ++c) std::memcpy(out + c * V, &best[c], sizeof(vi));
}

// log(x) without a libm call, so that loops over a tile's lanes vectorise:
// x = 2^e m with m in [sqrt(1/2), sqrt(2)), log(m) by the Cephes polynomial
// in m - 1 (within 2 ulp of log for normal x). Subnormals are scaled by 2^23
// first; 0 gives about -104 (not -inf). Non-finite or negative x are passed
// through as log would give them: +inf for +inf, NaN otherwise.
inline float log_of(float x) {
  const bool sub = x < FLT_MIN;
  const float xs = sub ? x * 8388608.f : x;
  int32_t bits;
  std::memcpy(&bits, &xs, sizeof(bits));
  const int32_t e = ((bits >> 23) & 0xff) - 126;
  bits = (bits & 0x007fffff) | 0x3f000000;
  float m;
  std::memcpy(&m, &bits, sizeof(m));
  const bool low = m < 0.70710678118654752f;
  const float f = low ? m + m - 1.f : m - 1.f;
  const float fe = static_cast<float>(low ? e - 1 : e) - (sub ? 23.f : 0.f);
  const float z = f * f;
  float y = 7.0376836292e-2f;
  y = fmadd(y, f, -1.1514610310e-1f);
  y = fmadd(y, f, 1.1676998740e-1f);
  y = fmadd(y, f, -1.2420140846e-1f);
  y = fmadd(y, f, 1.4249322787e-1f);
  y = fmadd(y, f, -1.6668057665e-1f);
  y = fmadd(y, f, 2.0000714765e-1f);
  y = fmadd(y, f, -2.4999993993e-1f);
  y = fmadd(y, f, 3.3333331174e-1f);
  y = y * f * z;
  y = fmadd(fe, -2.12194440e-4f, y);
  y = fmadd(z, -0.5f, y);
  const float r = fmadd(fe, 0.693359375f, f + y);
  return (x >= 0.f && x < INFINITY) ? r : (x == INFINITY ? x : NAN);
}
inline double log_of(double x) { return std::log(x); }

// The k nearest bins of the pixels of one call: the codebook's lookup table
// and a search specialised on k (one function per k, picked once per call).
class Search {
 public:
  Search(const at::Tensor& centres, int k)
      : entry_(lookup_table(centres, k)), v_(entry_->view()), ca_(entry_->host.ca.data()),
        cb_(entry_->host.cb.data()), k_(k), fn_(table()[k - 1]) {}

  // The nearest bins of a tile's kTile lanes (a, b): the vector scan for
  // small codebooks, else the table per lane. Lanes whose ab is not finite
  // get an unspecified bin.
  void nearest_tile(const float* a, const float* b, int32_t* out) const {
    const int64_t nq = static_cast<int64_t>(entry_->host.ca.size());
    if (nq <= kScanBins) {
      scan_nearest(a, b, ca_, cb_, nq, out);
      return;
    }
    const LookupView v = v_;
    for (int64_t t = 0; t < kTile; ++t)
      out[t] = finite2(a[t], b[t]) ? lookup_nearest(v, a[t], b[t], ca_, cb_) : 0;
  }

  // Index of the nearest bin, ties to the lower index; -1 for non-finite ab.
  int32_t nearest(float a, float b) const {
    if (!finite2(a, b)) return -1;
    return lookup_nearest(v_, a, b, ca_, cb_);
  }
  // The k nearest bins of a finite (a, b) into nn's first k slots, sorted.
  void k_nearest(float a, float b, KNearest& nn) const { fn_(v_, a, b, ca_, cb_, nn.d, nn.idx); }
  int k() const { return k_; }

 private:
  using Fn = void (*)(const LookupView&, float, float, const float*, const float*, float*,
                      int32_t*);
  template <int... Ks>
  static constexpr std::array<Fn, sizeof...(Ks)> make(std::integer_sequence<int, Ks...>) {
    return {&lookup_k_nearest<Ks + 1>...};
  }
  static const std::array<Fn, kMaxK>& table() {
    static constexpr std::array<Fn, kMaxK> fns = make(std::make_integer_sequence<int, kMaxK>());
    return fns;
  }

  std::shared_ptr<const LookupEntry> entry_;
  LookupView v_;
  const float* ca_;
  const float* cb_;
  int k_;
  Fn fn_;
};

// Whether the n pixels from p0 sit at consecutive offsets (a row of NCHW).
inline bool consecutive(const int64_t* off, int64_t n) {
  if (n != kTile) return false;
  int64_t diff = 0;  // (an OR of XORs vectorises; a chain of bool ANDs did not)
  for (int64_t t = 1; t < kTile; ++t) diff |= off[t] ^ (off[0] + t);
  return diff == 0;
}

// Hundreds of strided streams (one per bin) defeat the hardware prefetcher:
// fetch a bin's run of the next tile ourselves, into L2 (a tile of 313 bins
// is larger than L1; with L1 as the target, temporal_decode took 10% longer).
template <typename scalar_t>
void prefetch_next_run(const scalar_t* row) {
  for (int64_t b = 0; b < kTile * int64_t(sizeof(scalar_t)); b += 64)
    __builtin_prefetch(reinterpret_cast<const char*>(row + kTile) + b, 0, 1);
}

// The logits of the n <= kTile pixels [p0, p0 + n) of an (N, Q, H, W)
// tensor as nq rows of kTile values of type T, row q at rows[q * stride].
// Read in place when the tile is a run of adjacent pixels already of type T
// (NCHW float32/float64); otherwise gathered into buf (lanes past n get 0).
template <typename T, typename scalar_t>
const T* tile_rows(const scalar_t* src, const PixelLayout& l, int64_t p0, int64_t n, int64_t nq,
                   T* buf, int64_t& stride, bool prefetch = true) {
  int64_t off[kTile];
  tile_offsets(l, p0, n, off);
  const bool run = consecutive(off, n);
  if constexpr (std::is_same_v<T, scalar_t>) {
    if (run) {
      if (prefetch)
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

// Outputs at least this large are written with streaming stores (below):
// several times a core's L2, so that they would not stay cached until read.
constexpr int64_t kStreamBytes = int64_t(4) << 20;

// One tile row of kTile values to dst with non-temporal (streaming) stores,
// which write whole cache lines without reading them first: a written
// gradient then moves its bytes once instead of twice (read for ownership,
// then write back). Measured on the 32-bin loss (4x32x128x128 float32, one
// thread, x86-64 AVX-512): 1.97 -> 1.67 ms. Plain stores where dst is not
// 64-byte aligned or the target has no such instruction. After the last
// one, a thread must call stream_fence() before its writes are relied on.
template <typename T>
inline void stream_row(T* __restrict dst, const T* __restrict src) {
#if defined(__AVX512F__)
  if ((reinterpret_cast<uintptr_t>(dst) & 63) == 0) {
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t i = 0; i < kTile; i += 16) _mm512_stream_ps(dst + i, _mm512_loadu_ps(src + i));
      return;
    } else if constexpr (std::is_same_v<T, double>) {
      for (int64_t i = 0; i < kTile; i += 8) _mm512_stream_pd(dst + i, _mm512_loadu_pd(src + i));
      return;
    }
  }
#elif defined(__AVX__)
  if ((reinterpret_cast<uintptr_t>(dst) & 31) == 0) {
    if constexpr (std::is_same_v<T, float>) {
      for (int64_t i = 0; i < kTile; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
      return;
    } else if constexpr (std::is_same_v<T, double>) {
      for (int64_t i = 0; i < kTile; i += 4) _mm256_stream_pd(dst + i, _mm256_loadu_pd(src + i));
      return;
    }
  }
#endif
  std::memcpy(dst, src, kTile * sizeof(T));
}

// Orders a thread's streaming stores before whatever it does next (they
// are weakly ordered on x86).
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// The inverse of tile_rows' gather for the first n lanes, rounding to
// scalar_t; with stream, full runs of type T go out through stream_row.
template <typename T, typename scalar_t>
void scatter_tile(const T* buf, const PixelLayout& l, int64_t p0, int64_t n, int64_t nq,
                  scalar_t* dst, bool stream = false) {
  int64_t off[kTile];
  tile_offsets(l, p0, n, off);
  if (consecutive(off, n)) {
    if constexpr (std::is_same_v<T, scalar_t>) {
      if (stream) {
        for (int64_t q = 0; q < nq; ++q) stream_row(dst + off[0] + q * l.s_c, buf + q * kTile);
        return;
      }
    }
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
