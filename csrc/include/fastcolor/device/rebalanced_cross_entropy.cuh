// The CUDA kernels of rebalanced_cross_entropy (loss): device code only, torch-free. nvcc
// compiles them into fastcolor._C (csrc/cuda/rebalanced_cross_entropy.cu) and NVRTC at run time
// (fastcolor/ops/jit.py); csrc/cuda/rebalanced_cross_entropy_cuda.cpp checks the arguments, plans
// and packs each launch for both. Every instantiation the host code can launch
// is listed in fastcolor/device/instances.h.
#pragma once

#include "fastcolor/device/common.cuh"

namespace fastcolor {
namespace device {
// The generic kernel (float64 logits, or more bins than the tiled kernels
// hold in registers): one thread per pixel. The k nearest bins of its ab (from
// its cell's candidates in the lookup table; kept in registers) define the
// soft target t, never stored. One pass over the logits gives the online
// log-sum-exp; the loss is w * (log(s) sum_j t_j + sum_j t_j (m - z_j)). With grad,
// a second pass writes scale * w * (softmax(z) - t), formed in acc_t and
// rounded once, the target term found by re-testing each bin's rank.
template <typename scalar_t, int Cap>
__global__ void __launch_bounds__(cuda::kThreads) cross_entropy_generic_kernel(
    const scalar_t* __restrict__ logits, PixelLayout lz, const float* __restrict__ ab,
    PixelLayout lab, const float* __restrict__ centres, const float* __restrict__ class_w,
    int nq, LookupView lut, const float* __restrict__ pixel_w, PixelLayout lw, int k,
    float inv_two_sigma2, cuda::opmath_t<scalar_t> scale, int64_t pixels, cuda::opmath_t<scalar_t>* __restrict__ loss,
    scalar_t* __restrict__ grad, PixelLayout lg) {
  using acc_t = cuda::opmath_t<scalar_t>;
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  float* cw = smem + 2 * nq;
  for (int i = threadIdx.x; i < nq; i += blockDim.x) cw[i] = class_w[i];
  cuda::load_bins(centres, nq, ca, cb);  // ends with __syncthreads()

  for (int64_t p = cuda::first_pixel(); p < pixels; p += cuda::pixel_stride()) {
    const int64_t off = lab.offset(p);
    const float a = ab[off], b = ab[off + lab.s_c];
    const scalar_t* zp = logits + lz.offset(p);
    scalar_t* gp = grad ? grad + lg.offset(p) : nullptr;
    if (!finite2(a, b)) {
      loss[p] = NAN;
      if (gp)
        for (int q = 0; q < nq; ++q) gp[q * lg.s_c] = cuda::from_acc<scalar_t>(NAN);
      continue;
    }
    KNearestT<Cap> nn(k);
    lookup_push(nn, lut, a, b, ca, cb);
    const float norm = gaussian_normaliser(nn, inv_two_sigma2);
    const acc_t w = static_cast<acc_t>(cw[nn.idx[0]]) *
                    (pixel_w ? static_cast<acc_t>(pixel_w[lw.offset(p)]) : acc_t(1));
    // Online softmax from the lowest finite value, so -inf logits add 0.
    acc_t m = -cuda::largest<acc_t>(), s = 0;
    for (int q = 0; q < nq; ++q) {
      const acc_t z = cuda::to_acc(zp[q * lz.s_c]);
      if (z > m) {
        s = s * cuda::exp_acc(m - z) + acc_t(1);
        m = z;
      } else {
        s += cuda::exp_acc(z - m);  // NaN z makes s NaN
      }
    }
    // -sum_j t_j log softmax_j = log(s) sum_j t_j + sum_j t_j (m - z_j): every
    // term >= 0, none growing with a common shift of the logits.
    acc_t shift = 0, tsum = 0;
    FC_UNROLL
    for (int j = 0; j < Cap; ++j) {
      if (j < k) {
        const acc_t tj =
            static_cast<acc_t>(gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2) / norm);
        shift += tj * (m - cuda::to_acc(zp[nn.idx[j] * lz.s_c]));
        tsum += tj;
      }
    }
    loss[p] = w * (cuda::log_acc(s) * tsum + shift);
    if (gp) {
      const acc_t coef = scale * w;
      const acc_t pscale = coef / s;
      for (int q = 0; q < nq; ++q) {
        const acc_t z = cuda::to_acc(zp[q * lz.s_c]);
        acc_t g = cuda::exp_acc(z - m) * pscale;
        const float d = sqdist(a, b, ca[q], cb[q]);
        if (nn.selected(d, q))
          g -= coef * static_cast<acc_t>(gaussian_weight(d, nn.d[0], inv_two_sigma2) / norm);
        gp[q * lg.s_c] = cuda::from_acc<scalar_t>(g);
      }
    }
  }
}


// Finishes one pixel once its k nearest bins (nn, with the normaliser of
// their Gaussian weights) and its log-sum-exp (m, s) are known: the loss
// w * (log(s) sum_j t_j + sum_j t_j (m - z_j)) (shift-invariant: no
// cancellation for huge logits) from the k selected logits (read
// again: they were just read, so from cache), and, with grad, the k selected
// entries of the gradient rewritten as scale * w * (softmax - t), formed in
// float32 and rounded once (the bf16-safe target term). The caller has
// already written scale * w * softmax to every entry and made those writes
// visible (barrier) before this overwrites k of them. w is NaN for a pixel
// whose ab is not finite: its loss is NaN and its gradient already NaN.
template <typename scalar_t, int Cap>
__device__ __forceinline__ float finish_pixel(const KNearestT<Cap>& nn, float w, int k,
                                              float inv_two_sigma2, float m, float s,
                                              const scalar_t* __restrict__ zp, int64_t zs,
                                              scalar_t* __restrict__ gp, int64_t gs,
                                              float scale) {
  if (!(w == w)) return NAN;
  const float norm = gaussian_normaliser(nn, inv_two_sigma2);
  const float coef = scale * w;
  float z[Cap];
  FC_UNROLL
  for (int j = 0; j < Cap; ++j) z[j] = j < k ? cuda::to_acc(zp[nn.idx[j] * zs]) : 0.f;
  float shift = 0.f, tsum = 0.f;
  FC_UNROLL
  for (int j = 0; j < Cap; ++j) {
    if (j < k) {
      const float t = gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2) / norm;
      shift += t * (m - z[j]);
      tsum += t;
      if (gp) gp[nn.idx[j] * gs] = cuda::from_acc<scalar_t>(coef * (__expf(z[j] - m) / s - t));
    }
  }
  return w * (logf(s) * tsum + shift);
}

// Tiled kernel for logits whose pixels are adjacent in memory (NCHW and
// other layouts with C not innermost). A block owns 32 consecutive pixels
// (the lanes) and all their Q logits: warp w holds bins w, w + W, w + 2W, ...
// (R of them, in registers), so every load and store of a warp is one row of
// 32 adjacent pixels. Each logit is read once from memory and each gradient
// entry written once:
//  1. every thread issues its R loads, then, while they are in flight, finds
//     the k nearest among its share of its pixel's candidates (the codebook's
//     lookup table: the list of the pixel's cell, entries warp, warp + W, ...;
//     a few per warp instead of a scan of ~Q/W centres);
//  2. per-warp max and sum of exponentials and the per-warp nearest lists go
//     through shared memory; every thread combines its pixel's partials in the
//     same order (so all agree bit for bit) and takes the class weight of the
//     overall nearest bin from the lists' heads;
//  3. the gradient scale * w * exp(z - m) / s is written from the registers;
//  4. warp 0 merges the W sorted lists into the k nearest (each list is
//     left at its first entry that cannot enter) and, after a barrier,
//     finishes the loss and rewrites the k target entries (finish_pixel).
template <typename scalar_t, int R, int Cap>
__global__ void __launch_bounds__(512) cross_entropy_tile_kernel(
    const scalar_t* __restrict__ logits, PixelLayout lz, const float* __restrict__ ab,
    PixelLayout lab, const float* __restrict__ centres, const float* __restrict__ class_w, int nq,
    LookupView lut, const float* __restrict__ pixel_w, PixelLayout lw, int k, float inv_two_sigma2,
    float scale,
    int64_t pixels, float* __restrict__ loss, scalar_t* __restrict__ grad, PixelLayout lg) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x, warp = threadIdx.y, nw = blockDim.y;
  float* ca = smem;
  float* cb = ca + nq;
  float* part_m = cb + nq;  // [nw][32]
  float* part_s = part_m + nw * 32;
  float* list_d = part_s + nw * 32;  // [nw][k][32]
  int32_t* list_i = reinterpret_cast<int32_t*>(list_d + nw * k * 32);

  const int64_t p = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  const bool valid = p < pixels;
  const scalar_t* zp = logits + (valid ? lz.offset(p) : 0);
  float z[R];
  FC_UNROLL
  for (int r = 0; r < R; ++r) {
    const int q = warp + nw * r;
    z[r] = valid && q < nq ? cuda::to_acc(zp[q * lz.s_c]) : -INFINITY;
  }
  float a = 0.f, b = 0.f;
  if (valid) {
    const int64_t off = lab.offset(p);
    a = ab[off];
    b = ab[off + lab.s_c];
  }
  cuda::load_bins(centres, nq, ca, cb);  // ends with __syncthreads()

  {  // 1. the k nearest among this warp's bins
    KNearestT<Cap> part(k);
    lookup_push(part, lut, a, b, ca, cb, warp, nw);
    FC_UNROLL
    for (int j = 0; j < Cap; ++j) {
      if (j < k) {
        list_d[(warp * k + j) * 32 + lane] = part.d[j];
        list_i[(warp * k + j) * 32 + lane] = part.idx[j];
      }
    }
  }
  float m = cuda::kLowest;
  FC_UNROLL
  for (int r = 0; r < R; ++r) m = z[r] > m ? z[r] : m;
  float s = 0.f;
  FC_UNROLL
  for (int r = 0; r < R; ++r) {
    z[r] = __expf(z[r] - m);  // from here on z holds exp(z - m_warp)
    s += z[r];
  }
  part_m[warp * 32 + lane] = m;
  part_s[warp * 32 + lane] = s;
  __syncthreads();

  // 2. the pixel's (M, S) and the weight of its nearest bin, from the partials.
  float mm = cuda::kLowest;
  for (int v = 0; v < nw; ++v) mm = fmaxf(mm, part_m[v * 32 + lane]);
  float ss = 0.f;
  float best_d = INFINITY;
  int32_t best = INT32_MAX;
  for (int v = 0; v < nw; ++v) {
    ss += part_s[v * 32 + lane] * __expf(part_m[v * 32 + lane] - mm);
    const float d = list_d[v * k * 32 + lane];
    const int32_t i = list_i[v * k * 32 + lane];
    if (ranks_before(d, i, best_d, best)) {
      best_d = d;
      best = i;
    }
  }
  const float w = !finite2(a, b) ? NAN
                  : class_w[best] * (pixel_w && valid ? pixel_w[lw.offset(p)] : 1.f);

  // 3. the gradient rows.
  scalar_t* gp = grad && valid ? grad + lg.offset(p) : nullptr;
  if (gp) {
    const float g = scale * w * __expf(m - mm) / ss;
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      const int q = warp + nw * r;
      if (q < nq) gp[q * lg.s_c] = cuda::from_acc<scalar_t>(g * z[r]);
    }
  }
  // 4. warp 0: the k nearest overall, then the loss and the k target entries.
  KNearestT<Cap> nn(k);
  if (warp == 0) {
    for (int v = 0; v < nw; ++v) {
      for (int j = 0; j < k; ++j) {  // each list is sorted: stop at its first miss
        const float d = list_d[(v * k + j) * 32 + lane];
        const int32_t i = list_i[(v * k + j) * 32 + lane];
        if (!ranks_before(d, i, nn.worst, nn.worst_idx)) break;
        nn.push(d, i);
      }
    }
  }
  if (grad) __syncthreads();  // the rows are written before warp 0 rewrites k entries
  if (warp == 0 && valid)
    loss[p] = finish_pixel<scalar_t, Cap>(nn, w, k, inv_two_sigma2, mm, ss, zp, lz.s_c, gp,
                                          lg.s_c, scale);
}

// Warp-per-pixel kernel for channels_last logits (C innermost: a pixel's Q
// logits are contiguous). A warp owns 32 consecutive pixels: first each lane
// finds the k nearest bins of one of them (its cell's candidates from the
// codebook's lookup table), then the warp
// walks the 32 pixels, its lanes spanning the bins (R per lane, in
// registers) so that loads and stores are contiguous; max and sum by
// shuffles. Finally each lane finishes its own pixel (finish_pixel).
template <typename scalar_t, int R, int Cap>
__global__ void __launch_bounds__(cuda::kThreads) cross_entropy_warp_kernel(
    const scalar_t* __restrict__ logits, PixelLayout lz, const float* __restrict__ ab,
    PixelLayout lab, const float* __restrict__ centres, const float* __restrict__ class_w, int nq,
    LookupView lut, const float* __restrict__ pixel_w, PixelLayout lw, int k, float inv_two_sigma2,
    float scale,
    int64_t pixels, float* __restrict__ loss, scalar_t* __restrict__ grad, PixelLayout lg) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x & 31;
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  const int64_t base = (static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32) * 32;
  if (base >= pixels) return;  // no barrier follows
  const int64_t mine = base + lane;
  const bool valid = mine < pixels;
  float a = 0.f, b = 0.f;
  if (valid) {
    const int64_t off = lab.offset(mine);
    a = ab[off];
    b = ab[off + lab.s_c];
  }
  KNearestT<Cap> nn(k);
  lookup_push(nn, lut, a, b, ca, cb);
  const float w = !finite2(a, b) ? NAN
                  : class_w[nn.idx[0]] * (pixel_w && valid ? pixel_w[lw.offset(mine)] : 1.f);
  float my_m = 0.f, my_s = 1.f;
  const int count = static_cast<int>(pixels - base < 32 ? pixels - base : 32);
  for (int j = 0; j < count; ++j) {
    const int64_t pj = base + j;
    const scalar_t* zp = logits + lz.offset(pj);
    float z[R];
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      const int q = lane + 32 * r;
      z[r] = q < nq ? cuda::to_acc(zp[q * lz.s_c]) : -INFINITY;
    }
    float m = cuda::kLowest;
    FC_UNROLL
    for (int r = 0; r < R; ++r) m = z[r] > m ? z[r] : m;
    m = cuda::warp_max(m);
    float s = 0.f;
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      z[r] = __expf(z[r] - m);
      s += z[r];
    }
    s = cuda::warp_sum(s);
    if (lane == j) {
      my_m = m;
      my_s = s;
    }
    if (grad) {
      const float g = scale * __shfl_sync(0xffffffffu, w, j) / s;
      scalar_t* gp = grad + lg.offset(pj);
      FC_UNROLL
      for (int r = 0; r < R; ++r) {
        const int q = lane + 32 * r;
        if (q < nq) gp[q * lg.s_c] = cuda::from_acc<scalar_t>(g * z[r]);
      }
    }
  }
  __syncwarp();  // the rows are written before each lane rewrites its k entries
  if (valid)
    loss[mine] = finish_pixel<scalar_t, Cap>(nn, w, k, inv_two_sigma2, my_m, my_s,
                                             logits + lz.offset(mine), lz.s_c,
                                             grad ? grad + lg.offset(mine) : nullptr, lg.s_c,
                                             scale);
}

}  // namespace device
}  // namespace fastcolor
