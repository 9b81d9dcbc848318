// Building the lookup table of lookup.h for one codebook and one k (host
// only, torch-free). docs/lookup.md has the proof; in short, for a cell C
// (the grid cell widened by a margin) and a centre c let
//   lo(c) = min over x in C of |x - c|^2,   hi(c) = max over x in C of |x - c|^2.
// Let D be the k-th smallest hi(c). Every point x of C has k centres within
// D, so its k-th nearest distance is at most D; a centre with lo(c) > D is
// strictly farther from every x of C than k others and is never selected,
// whatever the tie rule. The list of C is every other centre. To hold for the
// float32 distances the kernels compute (sqdist: a difference, two products
// and a sum, each rounded; relative error below 4.8e-7 for results in the
// normal range, plus at most 3 subnormal roundings of 2^-150), lo is lowered
// and D raised by a relative 1e-5 and an absolute 1e-37 before comparing.
#pragma once

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <vector>

#include "fastcolor/lookup.h"

namespace fastcolor {

struct LookupTable {
  float a0 = 0.f, b0 = 0.f, inv_wa = 0.f, inv_wb = 0.f;
  int32_t ga = 0, gb = 0;
  int k = 1;
  std::vector<float> ca, cb;      // the centres the table was built from
  std::vector<int32_t> start;     // ga * gb + 2 offsets
  std::vector<uint16_t> idx;      // the lists
  int32_t max_list = 0;           // longest cell list (not counting the full list)
  double build_ms = 0.0;

  LookupView view() const {
    LookupView v;
    v.a0 = a0;
    v.b0 = b0;
    v.inv_wa = inv_wa;
    v.inv_wb = inv_wb;
    v.ga = ga;
    v.gb = gb;
    v.start = start.data();
    v.idx = idx.data();
    return v;
  }
  size_t bytes() const {
    return start.size() * sizeof(int32_t) + idx.size() * sizeof(uint16_t);
  }
  double mean_list() const {
    const int64_t cells = int64_t(ga) * gb;
    return cells ? double(start[cells]) / double(cells) : 0.0;
  }
};

namespace lookup_detail {

constexpr double kRelSlack = 1e-5;
constexpr double kAbsSlack = 1e-37;
constexpr double kMargin = 1e-3;  // of a cell, on every side
constexpr int kMaxCellsPerSide = 512;
constexpr int64_t kMaxCells = int64_t(1) << 18;
constexpr int kCoarse = 8;  // fine cells per coarse cell, per side
// Coordinates beyond this could overflow float32 squared distances (the
// kernels saturate at FLT_MAX, which would tie): no grid then.
constexpr double kMaxCoord = 1e18;

struct Rect {
  double alo, ahi, blo, bhi;
};

inline double min_d2(const Rect& r, double a, double b) {
  const double da = a < r.alo ? r.alo - a : (a > r.ahi ? a - r.ahi : 0.0);
  const double db = b < r.blo ? r.blo - b : (b > r.bhi ? b - r.bhi : 0.0);
  return da * da + db * db;
}
inline double max_d2(const Rect& r, double a, double b) {
  const double da = std::max(std::fabs(a - r.alo), std::fabs(a - r.ahi));
  const double db = std::max(std::fabs(b - r.blo), std::fabs(b - r.bhi));
  return da * da + db * db;
}

// The candidates among `from` for rectangle r, sorted by lo (then index) so
// that the likely winners are met first; appended to out.
inline void select(const Rect& r, const std::vector<float>& ca, const std::vector<float>& cb,
                   const uint16_t* from, int64_t n, int k, std::vector<double>& scratch,
                   std::vector<std::pair<double, uint16_t>>& keep, std::vector<uint16_t>& out) {
  scratch.resize(n);
  for (int64_t i = 0; i < n; ++i) scratch[i] = max_d2(r, ca[from[i]], cb[from[i]]);
  std::nth_element(scratch.begin(), scratch.begin() + (k - 1), scratch.end());
  const double bound = scratch[k - 1] * (1.0 + kRelSlack) + kAbsSlack;
  keep.clear();
  for (int64_t i = 0; i < n; ++i) {
    const double lo = min_d2(r, ca[from[i]], cb[from[i]]);
    if (lo * (1.0 - kRelSlack) - kAbsSlack <= bound) keep.emplace_back(lo, from[i]);
  }
  std::sort(keep.begin(), keep.end());
  for (const auto& e : keep) out.push_back(e.second);
}

}  // namespace lookup_detail

// The table for centres (Q, 2) float32 (row-major) and k (1 <= k <= Q).
inline LookupTable build_lookup(const float* centres, int64_t nq, int k) {
  using namespace lookup_detail;
  const auto t0 = std::chrono::steady_clock::now();
  LookupTable t;
  t.k = k;
  t.ca.resize(nq);
  t.cb.resize(nq);
  bool finite = true;
  double amin = INFINITY, amax = -INFINITY, bmin = INFINITY, bmax = -INFINITY;
  for (int64_t i = 0; i < nq; ++i) {
    t.ca[i] = centres[2 * i];
    t.cb[i] = centres[2 * i + 1];
    finite = finite && std::isfinite(t.ca[i]) && std::isfinite(t.cb[i]);
    amin = std::min<double>(amin, t.ca[i]);
    amax = std::max<double>(amax, t.ca[i]);
    bmin = std::min<double>(bmin, t.cb[i]);
    bmax = std::max<double>(bmax, t.cb[i]);
  }
  std::vector<uint16_t> all(nq);
  for (int64_t i = 0; i < nq; ++i) all[i] = static_cast<uint16_t>(i);

  // The grid: the centres' bounding box widened by a quarter of its larger
  // side on every side.
  bool grid = finite && nq > k;
  if (grid) {
    const double ra = amax - amin, rb = bmax - bmin, r = std::max(ra, rb);
    const double scale = std::max({std::fabs(amin), std::fabs(amax), std::fabs(bmin),
                                   std::fabs(bmax), r});
    if (!(r > 1e-6 * scale) || 2 * scale > kMaxCoord) {
      grid = false;  // all centres (nearly) equal, or coordinates too large
    } else {
      const double ext = 0.25 * r;
      const double lo_a = amin - ext, hi_a = amax + ext, lo_b = bmin - ext, hi_b = bmax + ext;
      const double ea = std::max(ra, r / 16), eb = std::max(rb, r / 16);
      // Cell side: a quarter of the mean spacing of the centres for k = 1
      // (lists of ~2 bins for zhang313), half of it for larger k (lists are
      // at least k long anyway; a smaller table).
      const double w = (k == 1 ? 0.25 : 0.5) * std::sqrt(ea * eb / double(nq));
      int64_t ga = static_cast<int64_t>(std::ceil((hi_a - lo_a) / w));
      int64_t gb = static_cast<int64_t>(std::ceil((hi_b - lo_b) / w));
      ga = std::clamp<int64_t>(ga, 1, kMaxCellsPerSide);
      gb = std::clamp<int64_t>(gb, 1, kMaxCellsPerSide);
      while (ga * gb > kMaxCells) {
        ga = std::max<int64_t>(1, ga * 7 / 8);
        gb = std::max<int64_t>(1, gb * 7 / 8);
      }
      t.ga = static_cast<int32_t>(ga);
      t.gb = static_cast<int32_t>(gb);
      t.a0 = static_cast<float>(lo_a);
      t.b0 = static_cast<float>(lo_b);
      t.inv_wa = static_cast<float>(double(ga) / (hi_a - lo_a));
      t.inv_wb = static_cast<float>(double(gb) / (hi_b - lo_b));
    }
  }

  const int64_t cells = int64_t(t.ga) * t.gb;
  t.start.assign(cells + 2, 0);
  if (cells > 0) {
    // Cells as the kernels see them: [a0 + i / inv_wa, a0 + (i + 1) / inv_wa),
    // from the float32 parameters, widened by the margin.
    const double wa = 1.0 / double(t.inv_wa), wb = 1.0 / double(t.inv_wb);
    auto rect = [&](int64_t i0, int64_t i1, int64_t j0, int64_t j1) {
      return Rect{double(t.a0) + (double(i0) - kMargin) * wa, double(t.a0) + (double(i1) + kMargin) * wa,
                  double(t.b0) + (double(j0) - kMargin) * wb, double(t.b0) + (double(j1) + kMargin) * wb};
    };
    std::vector<double> scratch;
    std::vector<std::pair<double, uint16_t>> keep;
    std::vector<uint16_t> coarse;
    std::vector<std::vector<uint16_t>> lists(cells);
    // Two levels: a coarse cell's list (over all bins) contains the lists of
    // its fine cells (a smaller region has no smaller lo and no larger D), so
    // the fine cells only search it.
    for (int64_t ci = 0; ci < t.ga; ci += kCoarse) {
      const int64_t ci1 = std::min<int64_t>(t.ga, ci + kCoarse);
      for (int64_t cj = 0; cj < t.gb; cj += kCoarse) {
        const int64_t cj1 = std::min<int64_t>(t.gb, cj + kCoarse);
        coarse.clear();
        select(rect(ci, ci1, cj, cj1), t.ca, t.cb, all.data(), nq, k, scratch, keep, coarse);
        for (int64_t i = ci; i < ci1; ++i)
          for (int64_t j = cj; j < cj1; ++j)
            select(rect(i, i + 1, j, j + 1), t.ca, t.cb, coarse.data(),
                   static_cast<int64_t>(coarse.size()), k, scratch, keep, lists[i * t.gb + j]);
      }
    }
    int64_t total = 0;
    for (int64_t c = 0; c < cells; ++c) {
      t.start[c] = static_cast<int32_t>(total);
      total += static_cast<int64_t>(lists[c].size());
      t.max_list = std::max<int32_t>(t.max_list, static_cast<int32_t>(lists[c].size()));
    }
    t.idx.reserve(total + nq);
    for (int64_t c = 0; c < cells; ++c) t.idx.insert(t.idx.end(), lists[c].begin(), lists[c].end());
  }
  t.start[cells] = static_cast<int32_t>(t.idx.size());
  t.idx.insert(t.idx.end(), all.begin(), all.end());  // the full list, in index order
  t.start[cells + 1] = static_cast<int32_t>(t.idx.size());
  t.build_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  return t;
}

}  // namespace fastcolor
