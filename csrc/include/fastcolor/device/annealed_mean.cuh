// The CUDA kernels of annealed_mean (annealed-mean decode and its backward): device code only, torch-free. nvcc
// compiles them into fastcolor._C (csrc/cuda/annealed_mean.cu) and NVRTC at run time
// (fastcolor/ops/jit.py); csrc/cuda/annealed_mean_cuda.cpp checks the arguments, plans
// and packs each launch for both. Every instantiation the host code can launch
// is listed in fastcolor/device/instances.h.
#pragma once

#include "fastcolor/device/common.cuh"

namespace fastcolor {
namespace device {
// Generic kernels (float64 logits, or more bins than the tiled kernels hold
// in registers). One thread per pixel, one read of the logits: an online softmax of z / T
// that carries the weighted sums of the centres along, rescaling all three
// when the running max grows. T = 0: the first largest logit's centre.
template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    annealed_mean_generic_kernel(const scalar_t* __restrict__ logits, PixelLayout lz,
                         const float* __restrict__ centres, int nq,
                         cuda::opmath_t<scalar_t> inv_t, int64_t pixels,
                         cuda::opmath_t<scalar_t>* __restrict__ out,
                         cuda::opmath_t<scalar_t>* __restrict__ stats, PixelLayout lo) {
  using acc_t = cuda::opmath_t<scalar_t>;
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  for (int64_t p = cuda::first_pixel(); p < pixels; p += cuda::pixel_stride()) {
    const scalar_t* zp = logits + lz.offset(p);
    const int64_t oo = lo.offset(p);
    acc_t a, b, m, s;
    if (inv_t == 0) {  // T = 0
      bool nan = false;
      int arg = 0;
      m = -INFINITY;
      for (int q = 0; q < nq; ++q) {
        const acc_t z = cuda::to_acc(zp[q * lz.s_c]);
        nan |= z != z;
        if (z > m) {
          m = z;
          arg = q;
        }
      }
      a = nan ? NAN : static_cast<acc_t>(ca[arg]);
      b = nan ? NAN : static_cast<acc_t>(cb[arg]);
      s = 1;
    } else {
      m = -cuda::largest<acc_t>();
      s = 0;
      a = 0;
      b = 0;
      for (int q = 0; q < nq; ++q) {
        const acc_t z = cuda::to_acc(zp[q * lz.s_c]);
        const acc_t x = static_cast<acc_t>(ca[q]), y = static_cast<acc_t>(cb[q]);
        if (z > m) {
          const acc_t r = cuda::exp_acc((m - z) * inv_t);
          s = s * r + acc_t(1);
          a = a * r + x;
          b = b * r + y;
          m = z;
        } else {
          const acc_t e = cuda::exp_acc((z - m) * inv_t);
          s += e;
          a = fmadd(e, x, a);
          b = fmadd(e, y, b);
        }
      }
      a /= s;
      b /= s;
    }
    out[oo] = a;
    out[oo + lo.s_c] = b;
    stats[oo] = m;
    stats[oo + lo.s_c] = s;
  }
}

// grad_q = exp((z_q - m) / T) / s / T * (ga * ca_q + gb * cb_q - (ga * a + gb * b)).
template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads) annealed_mean_backward_generic_kernel(
    const cuda::opmath_t<scalar_t>* __restrict__ grad_ab, PixelLayout lgab,
    const scalar_t* __restrict__ logits, PixelLayout lz, const float* __restrict__ centres,
    int nq, const cuda::opmath_t<scalar_t>* __restrict__ ab, PixelLayout lab,
    const cuda::opmath_t<scalar_t>* __restrict__ stats, PixelLayout lst,
    cuda::opmath_t<scalar_t> inv_t, int64_t pixels, scalar_t* __restrict__ grad,
    PixelLayout lg) {
  using acc_t = cuda::opmath_t<scalar_t>;
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  for (int64_t p = cuda::first_pixel(); p < pixels; p += cuda::pixel_stride()) {
    const int64_t og = lgab.offset(p), oa = lab.offset(p), os = lst.offset(p);
    const acc_t ga = grad_ab[og], gb = grad_ab[og + lgab.s_c];
    const acc_t m = stats[os];
    const acc_t coef = inv_t / stats[os + lst.s_c];
    const acc_t offset = ga * ab[oa] + gb * ab[oa + lab.s_c];
    const scalar_t* zp = logits + lz.offset(p);
    scalar_t* gp = grad + lg.offset(p);
    for (int q = 0; q < nq; ++q) {
      const acc_t z = cuda::to_acc(zp[q * lz.s_c]);
      const acc_t proj = ga * static_cast<acc_t>(ca[q]) + gb * static_cast<acc_t>(cb[q]) - offset;
      gp[q * lg.s_c] = cuda::from_acc<scalar_t>(cuda::exp_acc((z - m) * inv_t) * coef * proj);
    }
  }
}


// Combines the per-part softmax statistics (max m_i, sums s_i, A_i, B_i of
// e = exp((z - m_i) / T) and e * c) of one pixel, in a fixed order.
struct SoftmaxParts {
  float m, s, a, b;
};

__device__ __forceinline__ SoftmaxParts combine_parts(const float* pm, const float* ps,
                                                      const float* pa, const float* pb, int n,
                                                      int stride, float inv_t) {
  float m = cuda::kLowest;
  for (int v = 0; v < n; ++v) m = fmaxf(m, pm[v * stride]);
  SoftmaxParts out{m, 0.f, 0.f, 0.f};
  for (int v = 0; v < n; ++v) {
    const float f = __expf((pm[v * stride] - m) * inv_t);
    out.s += ps[v * stride] * f;
    out.a += pa[v * stride] * f;
    out.b += pb[v * stride] * f;
  }
  return out;
}

// Tiled kernel for logits whose pixels are adjacent in memory (the layout of
// cross_entropy_tile_kernel): a block owns 32 pixels, warp w holds bins
// w + W r in registers; per-warp softmax statistics are combined across the
// warps through shared memory by warp 0, which writes ab and the statistics.
// T = 0: the first largest logit (per warp, then the lowest bin among the
// warps that reach the maximum); NaN anywhere gives NaN.
template <typename scalar_t, int R>
__global__ void __launch_bounds__(512)
    annealed_mean_tile_kernel(const scalar_t* __restrict__ logits, PixelLayout lz,
                              const float* __restrict__ centres, int nq, float inv_t,
                              int64_t pixels, float* __restrict__ out,
                              float* __restrict__ stats, PixelLayout lo) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x, warp = threadIdx.y, nw = blockDim.y;
  float* ca = smem;
  float* cb = smem + nq;
  float* pm = cb + nq;  // [4][nw][32]
  float* ps = pm + nw * 32;
  float* pa = ps + nw * 32;
  float* pb = pa + nw * 32;
  const int64_t p = static_cast<int64_t>(blockIdx.x) * 32 + lane;
  const bool valid = p < pixels;
  const scalar_t* zp = logits + (valid ? lz.offset(p) : 0);
  float z[R];
  FC_UNROLL
  for (int r = 0; r < R; ++r) {
    const int q = warp + nw * r;
    z[r] = valid && q < nq ? cuda::to_acc(zp[q * lz.s_c]) : -INFINITY;
  }
  cuda::load_bins(centres, nq, ca, cb);
  const int at = warp * 32 + lane;
  if (inv_t == 0.f) {
    float m = -INFINITY;
    int arg = warp;
    bool nan = false;
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      nan |= z[r] != z[r];
      if (z[r] > m) {
        m = z[r];
        arg = warp + nw * r;
      }
    }
    pm[at] = m;
    ps[at] = __int_as_float(arg);
    pa[at] = nan ? 1.f : 0.f;
    __syncthreads();
    if (warp == 0 && valid) {
      float best = pm[lane];
      int best_arg = __float_as_int(ps[lane]);
      bool any_nan = pa[lane] != 0.f;
      for (int v = 1; v < nw; ++v) {  // lowest bin among equal maxima
        const float mv = pm[v * 32 + lane];
        const int av = __float_as_int(ps[v * 32 + lane]);
        any_nan |= pa[v * 32 + lane] != 0.f;
        if (mv > best || (mv == best && av < best_arg)) {
          best = mv;
          best_arg = av;
        }
      }
      const int64_t oo = lo.offset(p);
      out[oo] = any_nan ? NAN : ca[best_arg];
      out[oo + lo.s_c] = any_nan ? NAN : cb[best_arg];
      stats[oo] = best;
      stats[oo + lo.s_c] = 1.f;
    }
    return;
  }
  float m = cuda::kLowest;
  FC_UNROLL
  for (int r = 0; r < R; ++r) m = z[r] > m ? z[r] : m;
  float s = 0.f, a = 0.f, b = 0.f;
  FC_UNROLL
  for (int r = 0; r < R; ++r) {
    const int q = warp + nw * r;
    if (q < nq) {
      const float e = __expf((z[r] - m) * inv_t);  // NaN z makes s NaN
      s += e;
      a = fmaf(e, ca[q], a);
      b = fmaf(e, cb[q], b);
    }
  }
  pm[at] = m;
  ps[at] = s;
  pa[at] = a;
  pb[at] = b;
  __syncthreads();
  if (warp == 0 && valid) {
    const SoftmaxParts t = combine_parts(pm + lane, ps + lane, pa + lane, pb + lane, nw, 32, inv_t);
    const int64_t oo = lo.offset(p);
    out[oo] = t.a / t.s;
    out[oo + lo.s_c] = t.b / t.s;
    stats[oo] = t.m;
    stats[oo + lo.s_c] = t.s;
  }
}

// Warp-per-pixel kernel for channels_last logits: lanes span the bins (R per
// lane) so every load is contiguous; statistics by shuffles.
template <typename scalar_t, int R>
__global__ void __launch_bounds__(cuda::kThreads)
    annealed_mean_warp_kernel(const scalar_t* __restrict__ logits, PixelLayout lz,
                              const float* __restrict__ centres, int nq, float inv_t,
                              int64_t pixels, float* __restrict__ out,
                              float* __restrict__ stats, PixelLayout lo) {
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       p < pixels; p += warps) {
    const scalar_t* zp = logits + lz.offset(p);
    float z[R];
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      const int q = lane + 32 * r;
      z[r] = q < nq ? cuda::to_acc(zp[q * lz.s_c]) : -INFINITY;
    }
    float m = inv_t == 0.f ? -INFINITY : cuda::kLowest;
    int arg = lane;
    bool nan = false;
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      nan |= z[r] != z[r];
      if (z[r] > m) {
        m = z[r];
        arg = lane + 32 * r;
      }
    }
    float a, b, s;
    if (inv_t == 0.f) {
      for (int o = 16; o > 0; o >>= 1) {  // max, lowest bin on ties
        const float mo = __shfl_xor_sync(0xffffffffu, m, o);
        const int ao = __shfl_xor_sync(0xffffffffu, arg, o);
        if (mo > m || (mo == m && ao < arg)) {
          m = mo;
          arg = ao;
        }
      }
      nan = __any_sync(0xffffffffu, nan);
      a = nan ? NAN : ca[arg];
      b = nan ? NAN : cb[arg];
      s = 1.f;
    } else {
      m = cuda::warp_max(m);
      s = 0.f;
      a = 0.f;
      b = 0.f;
      FC_UNROLL
      for (int r = 0; r < R; ++r) {
        const int q = lane + 32 * r;
        if (q < nq) {
          const float e = __expf((z[r] - m) * inv_t);
          s += e;
          a = fmaf(e, ca[q], a);
          b = fmaf(e, cb[q], b);
        }
      }
      s = cuda::warp_sum(s);
      a = cuda::warp_sum(a) / s;
      b = cuda::warp_sum(b) / s;
    }
    if (lane == 0) {
      const int64_t oo = lo.offset(p);
      out[oo] = a;
      out[oo + lo.s_c] = b;
      stats[oo] = m;
      stats[oo + lo.s_c] = s;
    }
  }
}

// Backward, one gradient entry per thread and iteration, no reduction:
// grad_q = exp((z_q - m) / T) / s / T * (ga * ca_q + gb * cb_q - (ga * a + gb * b)).
// Pixel-adjacent layouts: lanes span 32 pixels, the block's 8 warps the bins.
// channels_last: a warp per pixel, lanes span the bins.
template <typename scalar_t, bool kBinsOnLanes>
__global__ void __launch_bounds__(cuda::kThreads) annealed_mean_backward_tile_kernel(
    const float* __restrict__ grad_ab, PixelLayout lgab, const scalar_t* __restrict__ logits,
    PixelLayout lz, const float* __restrict__ centres, int nq, const float* __restrict__ ab,
    PixelLayout lab, const float* __restrict__ stats, PixelLayout lst, float inv_t,
    int64_t pixels, scalar_t* __restrict__ grad, PixelLayout lg) {
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32, nw = blockDim.x / 32;
  const int64_t p = kBinsOnLanes ? static_cast<int64_t>(blockIdx.x) * nw + warp
                                 : static_cast<int64_t>(blockIdx.x) * 32 + lane;
  if (p >= pixels) return;
  const int64_t og = lgab.offset(p), oa = lab.offset(p), os = lst.offset(p);
  const float ga = grad_ab[og], gb = grad_ab[og + lgab.s_c];
  const float m = stats[os];
  const float coef = inv_t / stats[os + lst.s_c];
  const float offset = ga * ab[oa] + gb * ab[oa + lab.s_c];
  const scalar_t* zp = logits + lz.offset(p);
  scalar_t* gp = grad + lg.offset(p);
  const int first = kBinsOnLanes ? lane : warp, step = kBinsOnLanes ? 32 : nw;
#pragma unroll 4
  for (int q = first; q < nq; q += step) {
    const float z = cuda::to_acc(zp[q * lz.s_c]);
    const float proj = ga * ca[q] + gb * cb[q] - offset;
    gp[q * lg.s_c] = cuda::from_acc<scalar_t>(__expf((z - m) * inv_t) * coef * proj);
  }
}

}  // namespace device
}  // namespace fastcolor
