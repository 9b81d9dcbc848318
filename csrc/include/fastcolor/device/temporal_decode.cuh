// The CUDA kernels of temporal_decode: device code only, torch-free (CUDA
// builtins, cuda_fp16.h / cuda_bf16.h and fastcolor's torch-free headers),
// templated on the logits' element type: float, __half, __nv_bfloat16 or
// double. nvcc compiles them into fastcolor._C (csrc/cuda/temporal_decode.cu)
// and NVRTC at run time (fastcolor/ops/jit.py); csrc/cuda/
// temporal_decode_cuda.cpp checks the arguments, plans and packs each launch
// for both. Every instantiation the host code can launch is listed in
// fastcolor/device/instances.h.
//
// Per pixel, with z its Q logits, the state st and the weight w0:
//   p = softmax(z), w = w0 (1 - max p)^sharpness, s = w st + (1 - w) p (p where
//   w = 0), stored as float32; ab = the annealed mean of log s, i.e.
//   sum_q c_q s_q^(1/T) / sum_q s_q^(1/T) (T = 0: the centre of the first
//   largest s). NaN propagates as in fastcolor.ops.reference.temporal_decode:
//   a NaN or negative s gives NaN ab; a +inf s NaN for T > 0 (inf - inf) and
//   the mode for T = 0; an all-zero s NaN for T > 0 (0 / 0).
//
// Three kernels, chosen on the host by plan_launch (fastcolor/launch_plan.h):
//  * tile: pixels adjacent in memory (NCHW), float/half/bf16, Q <= 640: a
//    block owns 32 pixels, warp v holds bins v, v + W, ... in registers; the
//    logits are read once;
//  * warp: channels_last logits: a warp per pixel, lanes across the bins;
//  * generic: float64 logits or more bins: a thread per pixel, the logits
//    read twice (the max and the softmax sum, then the blend).
#pragma once

#include "fastcolor/device/common.cuh"

namespace fastcolor {
namespace device {
// The helpers of these kernels, apart from the other ops' device code.
namespace temporal {

__device__ __forceinline__ float pow_acc(float x, float y) { return powf(x, y); }
__device__ __forceinline__ double pow_acc(double x, double y) { return pow(x, y); }

// The blend of one bin, rounded to float32. Where w = 0 the state is not
// used (a reset may pass anything there).
template <typename acc_t>
__device__ __forceinline__ float blend(acc_t w, float st, acc_t p) {
  return w == acc_t(0) ? static_cast<float>(p)
                       : static_cast<float>(w * static_cast<acc_t>(st) + (acc_t(1) - w) * p);
}

// The weight of the state after confidence gating; max p = 1 / sum.
template <typename acc_t>
__device__ __forceinline__ acc_t gated_weight(float w0, acc_t inv_sum, acc_t sharpness) {
  const acc_t w = static_cast<acc_t>(w0);
  return sharpness == acc_t(0) ? w : w * pow_acc(acc_t(1) - inv_sum, sharpness);
}

// Entries of s whose log is NaN (NaN, negative) or +inf: flag bits.
constexpr unsigned kNegative = 1u, kInfinite = 2u;
__device__ __forceinline__ unsigned flags_of(float v) {
  return (v >= 0.f ? 0u : kNegative) | (v == INFINITY ? kInfinite : 0u);
}

// Running annealed mean of log s over some bins: lm the largest log s so far,
// w, a, b the sums of exp((log s - lm) / T), times ca, times cb. Rescaled when
// lm grows, so that any T > 0 (1 / T saturated) stays finite. Zero entries
// weigh nothing (an all-zero s leaves w = 0, so ab = 0 / 0); NaN and negative
// entries are skipped here and caught by the flags.
struct Annealed {
  float lm, w, a, b;
  __device__ __forceinline__ Annealed() : lm(-INFINITY), w(0.f), a(0.f), b(0.f) {}

  __device__ __forceinline__ void push(float v, float ca, float cb, float inv_t) {
    if (!(v > 0.f)) return;
    const float lv = logf(v);
    if (lv > lm) {
      const float r = __expf((lm - lv) * inv_t);  // lm = -inf at first: r = 0
      w = fmaf(w, r, 1.f);
      a = fmaf(a, r, ca);
      b = fmaf(b, r, cb);
      lm = lv;
    } else {
      const float e = __expf((lv - lm) * inv_t);
      w += e;
      a = fmaf(e, ca, a);
      b = fmaf(e, cb, b);
    }
  }

  __device__ __forceinline__ void merge(float olm, float ow, float oa, float ob, float inv_t) {
    if (ow == 0.f) return;
    if (w == 0.f) {
      lm = olm;
      w = ow;
      a = oa;
      b = ob;
      return;
    }
    const float m = lm > olm ? lm : olm;
    const float f = __expf((lm - m) * inv_t), g = __expf((olm - m) * inv_t);
    w = w * f + ow * g;
    a = a * f + oa * g;
    b = b * f + ob * g;
    lm = m;
  }
};

// The first largest entry so far (ties to the lower bin).
__device__ __forceinline__ void mode_push(float v, int q, float& best, int& arg) {
  if (v > best || (v == best && (arg < 0 || q < arg))) {
    best = v;
    arg = q;
  }
}

// Writes the decoded ab of one pixel.
__device__ __forceinline__ void write_ab(float* __restrict__ ab, const PixelLayout& lo, int64_t p,
                                         bool mode, unsigned flags, int arg, const Annealed& d,
                                         const float* ca, const float* cb) {
  float a, b;
  if (mode) {
    const bool nan = (flags & kNegative) || arg < 0;
    a = nan ? NAN : ca[arg];
    b = nan ? NAN : cb[arg];
  } else {
    const bool nan = flags != 0u || d.w == 0.f;
    a = nan ? NAN : d.a / d.w;
    b = nan ? NAN : d.b / d.w;
  }
  const int64_t oo = lo.offset(p);
  ab[oo] = a;
  ab[oo + lo.s_c] = b;
}

}  // namespace temporal

// Every kernel takes the same parameters: the logits, the state and the
// weight with their layouts, the centres (Q, 2), inv_t = 1 / T saturated (0
// for T = 0), sharpness >= 0, the number of pixels, and the outputs ab and
// new_state with their layouts.

// A thread per pixel (grid-stride): the max and the softmax sum online, then
// the blend, the store and the decode in one more sweep.
template <typename scalar_t>
__global__ void __launch_bounds__(256) temporal_decode_generic_kernel(
    const scalar_t* logits, PixelLayout lz, const float* state, PixelLayout ls,
    const float* weight, PixelLayout lw, const float* centres, int nq, float inv_t,
    double sharpness, int64_t pixels, float* ab, PixelLayout lo, float* new_state, PixelLayout ln) {
  using acc_t = cuda::opmath_t<scalar_t>;
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  const bool mode = inv_t == 0.f;
  const acc_t sharp = static_cast<acc_t>(sharpness);
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; p < pixels;
       p += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const scalar_t* zp = logits + lz.offset(p);
    acc_t m = -INFINITY, sum = 0;
    for (int q = 0; q < nq; ++q) {
      const acc_t z = cuda::to_acc(zp[q * lz.s_c]);
      if (z > m) {  // NaN never enters here: exp(NaN - m) makes the sum NaN below
        sum = sum * cuda::exp_acc(m - z) + acc_t(1);
        m = z;
      } else {
        sum += cuda::exp_acc(z - m);  // all -inf: exp(NaN) = NaN, as softmax
      }
    }
    const acc_t inv = acc_t(1) / sum;
    const acc_t w = temporal::gated_weight(weight[lw.offset(p)], inv, sharp);
    const float* sp = state + ls.offset(p);
    float* np = new_state + ln.offset(p);
    unsigned flags = 0u;
    temporal::Annealed d;
    float best = -INFINITY;
    int arg = -1;
    for (int q = 0; q < nq; ++q) {
      const acc_t pq = cuda::exp_acc(cuda::to_acc(zp[q * lz.s_c]) - m) * inv;
      const float v = temporal::blend(w, sp[q * ls.s_c], pq);
      np[q * ln.s_c] = v;
      flags |= temporal::flags_of(v);
      if (mode) {
        if (v > best) {  // strictly: the first of equal maxima stays
          best = v;
          arg = q;
        }
      } else {
        d.push(v, ca[q], cb[q], inv_t);
      }
    }
    temporal::write_ab(ab, lo, p, mode, flags, arg, d, ca, cb);
  }
}

// Pixels adjacent in memory: a block of (32, W) threads owns 32 pixels, warp
// v holds bins v + W r (r < R) of lane's pixel in registers. Per-warp partial
// results meet in shared memory: every thread combines the maxima and sums
// (so all know the softmax), warp 0 combines the decode and writes ab.
// Shared memory: 2 Q floats of centres, then 5 arrays of W x 32.
template <typename scalar_t, int R>
__global__ void __launch_bounds__(512) temporal_decode_tile_kernel(
    const scalar_t* logits, PixelLayout lz, const float* state, PixelLayout ls,
    const float* weight, PixelLayout lw, const float* centres, int nq, float inv_t,
    double sharpness, int64_t pixels, float* ab, PixelLayout lo, float* new_state, PixelLayout ln) {
  extern __shared__ float smem[];
  const int lane = threadIdx.x, warp = threadIdx.y, nw = blockDim.y;
  float* ca = smem;
  float* cb = ca + nq;
  float* r0 = cb + nq;
  float* r1 = r0 + nw * 32;
  float* r2 = r1 + nw * 32;
  float* r3 = r2 + nw * 32;
  float* r4 = r3 + nw * 32;
  const int at = warp * 32 + lane;
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

  float m = -INFINITY;
  FC_UNROLL
  for (int r = 0; r < R; ++r) m = z[r] > m ? z[r] : m;  // NaN is caught by the sum
  r0[at] = m;
  __syncthreads();
  m = -INFINITY;
  for (int v = 0; v < nw; ++v) m = r0[v * 32 + lane] > m ? r0[v * 32 + lane] : m;
  float part = 0.f;
  FC_UNROLL
  for (int r = 0; r < R; ++r)
    if (warp + nw * r < nq) part += __expf(z[r] - m);
  r1[at] = part;
  __syncthreads();
  float sum = 0.f;
  for (int v = 0; v < nw; ++v) sum += r1[v * 32 + lane];  // the same order in every warp
  const float inv = 1.f / sum;
  const float w =
      valid ? temporal::gated_weight(weight[lw.offset(p)], inv, static_cast<float>(sharpness))
            : 0.f;

  const bool mode = inv_t == 0.f;
  unsigned flags = 0u;
  temporal::Annealed d;
  float best = -INFINITY;
  int arg = -1;
  if (valid) {
    const float* sp = state + ls.offset(p);
    float* np = new_state + ln.offset(p);
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      const int q = warp + nw * r;
      if (q < nq) {
        const float v = temporal::blend(w, sp[q * ls.s_c], __expf(z[r] - m) * inv);
        np[q * ln.s_c] = v;
        flags |= temporal::flags_of(v);
        if (mode) {
          if (v > best) {  // r ascending: bins ascending, the first maximum stays
            best = v;
            arg = q;
          }
        } else {
          d.push(v, ca[q], cb[q], inv_t);
        }
      }
    }
  }
  __syncthreads();  // r0 and r1 were read above
  if (mode) {
    r0[at] = best;
    r1[at] = __int_as_float(arg);
  } else {
    r0[at] = d.lm;
    r1[at] = d.w;
    r2[at] = d.a;
    r3[at] = d.b;
  }
  r4[at] = __uint_as_float(flags);
  __syncthreads();
  if (warp != 0 || !valid) return;
  temporal::Annealed t;
  best = -INFINITY;
  arg = -1;
  flags = 0u;
  for (int v = 0; v < nw; ++v) {
    const int i = v * 32 + lane;
    flags |= __float_as_uint(r4[i]);
    if (mode) {
      const int av = __float_as_int(r1[i]);
      if (av >= 0) temporal::mode_push(r0[i], av, best, arg);
    } else {
      t.merge(r0[i], r1[i], r2[i], r3[i], inv_t);
    }
  }
  temporal::write_ab(ab, lo, p, mode, flags, arg, t, ca, cb);
}

// channels_last logits (bins innermost): a warp per pixel, lane l holding bins
// l + 32 r (r < R), reductions by shuffles; lane 0 writes ab.
template <typename scalar_t, int R>
__global__ void __launch_bounds__(256) temporal_decode_warp_kernel(
    const scalar_t* logits, PixelLayout lz, const float* state, PixelLayout ls,
    const float* weight, PixelLayout lw, const float* centres, int nq, float inv_t,
    double sharpness, int64_t pixels, float* ab, PixelLayout lo, float* new_state, PixelLayout ln) {
  extern __shared__ float smem[];
  float* ca = smem;
  float* cb = smem + nq;
  cuda::load_bins(centres, nq, ca, cb);
  const int lane = threadIdx.x & 31;
  const bool mode = inv_t == 0.f;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x / 32);
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
       p < pixels; p += warps) {
    const scalar_t* zp = logits + lz.offset(p);
    float z[R];
    float m = -INFINITY;
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      const int q = lane + 32 * r;
      z[r] = q < nq ? cuda::to_acc(zp[q * lz.s_c]) : -INFINITY;
      m = z[r] > m ? z[r] : m;
    }
    for (int o = 16; o > 0; o >>= 1) {
      const float u = __shfl_xor_sync(0xffffffffu, m, o);
      m = u > m ? u : m;
    }
    float sum = 0.f;
    FC_UNROLL
    for (int r = 0; r < R; ++r)
      if (lane + 32 * r < nq) sum += __expf(z[r] - m);
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    const float inv = 1.f / sum;
    const float w =
        temporal::gated_weight(weight[lw.offset(p)], inv, static_cast<float>(sharpness));
    const float* sp = state + ls.offset(p);
    float* np = new_state + ln.offset(p);
    unsigned flags = 0u;
    temporal::Annealed d;
    float best = -INFINITY;
    int arg = -1;
    FC_UNROLL
    for (int r = 0; r < R; ++r) {
      const int q = lane + 32 * r;
      if (q < nq) {
        const float v = temporal::blend(w, sp[q * ls.s_c], __expf(z[r] - m) * inv);
        np[q * ln.s_c] = v;
        flags |= temporal::flags_of(v);
        if (mode) {
          if (v > best) {
            best = v;
            arg = q;
          }
        } else {
          d.push(v, ca[q], cb[q], inv_t);
        }
      }
    }
    for (int o = 16; o > 0; o >>= 1) {
      flags |= __shfl_xor_sync(0xffffffffu, flags, o);
      if (mode) {
        const float bo = __shfl_xor_sync(0xffffffffu, best, o);
        const int ao = __shfl_xor_sync(0xffffffffu, arg, o);
        if (ao >= 0) temporal::mode_push(bo, ao, best, arg);
      } else {
        const float olm = __shfl_xor_sync(0xffffffffu, d.lm, o);
        const float ow = __shfl_xor_sync(0xffffffffu, d.w, o);
        const float oa = __shfl_xor_sync(0xffffffffu, d.a, o);
        const float ob = __shfl_xor_sync(0xffffffffu, d.b, o);
        d.merge(olm, ow, oa, ob, inv_t);
      }
    }
    if (lane == 0) temporal::write_ab(ab, lo, p, mode, flags, arg, d, ca, cb);
  }
}

}  // namespace device
}  // namespace fastcolor
