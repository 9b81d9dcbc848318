// The per-codebook lookup structure for the k nearest bins: the part that
// queries it, shared by the CPU and CUDA kernels (torch-free, host and
// device). The table itself is built by lookup_build.h; docs/lookup.md
// explains the structure and why a query selects exactly what a scan of all
// Q centres selects.
//
// A uniform grid of ga x gb cells covers the codebook's range (with a margin
// around it). Every cell has a list of candidate bins that provably contains
// the k nearest centres of every point of the cell; one more list (number
// ga * gb) holds every bin in index order, for points outside the grid (and
// for codebooks that get no grid at all: ga = gb = 0). Per pixel: one cell
// computation, two reads of start[], then exact distances (sqdist, so
// rounded as everywhere else) to the candidates, ranked by the usual rule.
#pragma once

#include "fastcolor/colormath.h"

namespace fastcolor {

// Bin indices in the lists are uint16: the limit on Q must leave room.
static_assert(FASTCOLOR_MAX_BINS <= 65535, "lookup lists store bin indices as uint16");

// What a kernel needs of a table: the grid and the lists (pointers into
// host or device memory, whichever the kernel runs on).
struct LookupView {
  float a0 = 0.f, b0 = 0.f;        // lower corner of the grid
  float inv_wa = 0.f, inv_wb = 0.f;  // cells per unit of a and of b
  int32_t ga = 0, gb = 0;          // cells along a and b; 0: no grid
  const int32_t* start = nullptr;  // ga * gb + 2 offsets: list c is [start[c], start[c + 1])
  const uint16_t* idx = nullptr;   // the lists' bin indices
};

// The list to search for (a, b): its cell's, or the full list (number
// ga * gb) when (a, b) is outside the grid or not finite (NaN fails every
// comparison). The cell of a point is floor((a - a0) * inv_wa), computed in
// float32; the builder gave every cell's list a margin of a thousandth of a
// cell on each side, far above the rounding of this computation, so a point
// rounded into a neighbouring cell is still covered by that cell's list.
FC_HD int32_t lookup_list(const LookupView& v, float a, float b) {
  const float ta = (a - v.a0) * v.inv_wa;
  const float tb = (b - v.b0) * v.inv_wb;
  if (ta >= 0.f && ta < static_cast<float>(v.ga) && tb >= 0.f && tb < static_cast<float>(v.gb))
    return static_cast<int32_t>(ta) * v.gb + static_cast<int32_t>(tb);
  return v.ga * v.gb;
}

FC_HD int32_t lookup_start(const LookupView& v, int32_t list) {
#if defined(__CUDA_ARCH__)
  return __ldg(v.start + list);
#else
  return v.start[list];
#endif
}

FC_HD int32_t lookup_bin(const LookupView& v, int32_t j) {
#if defined(__CUDA_ARCH__)
  return static_cast<int32_t>(__ldg(reinterpret_cast<const unsigned short*>(v.idx) + j));
#else
  return static_cast<int32_t>(v.idx[j]);
#endif
}

// The nearest bin of a finite (a, b), centres ca/cb by index: the list's
// candidate ranking first (lower index on equal distance), selected without
// a branch. Equal to a scan of all bins with a strict < in index order.
FC_HD int32_t lookup_nearest(const LookupView& v, float a, float b, const float* ca,
                             const float* cb) {
  const int32_t list = lookup_list(v, a, b);
  const int32_t e = lookup_start(v, list + 1);
  float best_d = INFINITY;
  int32_t best = 0;  // as the scan: bin 0 if no distance is below +inf (NaN centres)
  for (int32_t j = lookup_start(v, list); j < e; ++j) {
    const int32_t q = lookup_bin(v, j);
    const float d = sqdist(a, b, ca[q], cb[q]);
    const bool take = d < best_d || (d == best_d && q < best);
    best_d = take ? d : best_d;
    best = take ? q : best;
  }
  return best;
}

// The K first bins in ranking order among those added, for a compile-time K
// (the CPU kernels instantiate one per k): slots sorted, empty ones +inf.
// Insertion is one predictable test against the K-th entry, then a
// branch-free shift of the slots (selects, no data-dependent jumps).
template <int K>
struct TopK {
  float d[K];
  int32_t idx[K];

  FC_HD TopK() {
    FC_UNROLL
    for (int j = 0; j < K; ++j) {
      d[j] = INFINITY;
      idx[j] = INT32_MAX;
    }
  }

  FC_HD void add(float dq, int32_t q) {
    if (!ranks_before(dq, q, d[K - 1], idx[K - 1])) return;
    FC_UNROLL
    for (int j = K - 1; j > 0; --j) {
      const bool before_prev = ranks_before(dq, q, d[j - 1], idx[j - 1]);
      const bool before_this = ranks_before(dq, q, d[j], idx[j]);
      const float dj = before_this ? dq : d[j];
      const int32_t ij = before_this ? q : idx[j];
      d[j] = before_prev ? d[j - 1] : dj;
      idx[j] = before_prev ? idx[j - 1] : ij;
    }
    const bool first = ranks_before(dq, q, d[0], idx[0]);
    d[0] = first ? dq : d[0];
    idx[0] = first ? q : idx[0];
  }
};

// The k nearest bins of a finite (a, b) by the table: d[0..K) and idx[0..K)
// sorted in ranking order, exactly those of a full scan.
template <int K>
FC_HD void lookup_k_nearest(const LookupView& v, float a, float b, const float* ca,
                            const float* cb, float* d, int32_t* idx) {
  const int32_t list = lookup_list(v, a, b);
  const int32_t e = lookup_start(v, list + 1);
  TopK<K> top;
  for (int32_t j = lookup_start(v, list); j < e; ++j) {
    const int32_t q = lookup_bin(v, j);
    top.add(sqdist(a, b, ca[q], cb[q]), q);
  }
  FC_UNROLL
  for (int j = 0; j < K; ++j) {
    d[j] = top.d[j];
    idx[j] = top.idx[j];
  }
}

// Pushes the candidates first, first + step, ... of (a, b)'s list into nn
// (a KNearestT: the GPU kernels' register list with runtime k). With step
// > 1 several threads share one pixel's list; merging their lists (by the
// same ranking) gives the k nearest.
template <int Cap>
FC_HD void lookup_push(KNearestT<Cap>& nn, const LookupView& v, float a, float b,
                       const float* ca, const float* cb, int32_t first = 0, int32_t step = 1) {
  const int32_t list = lookup_list(v, a, b);
  const int32_t e = lookup_start(v, list + 1);
  for (int32_t j = lookup_start(v, list) + first; j < e; j += step) {
    const int32_t q = lookup_bin(v, j);
    nn.push(sqdist(a, b, ca[q], cb[q]), q);
  }
}

}  // namespace fastcolor
