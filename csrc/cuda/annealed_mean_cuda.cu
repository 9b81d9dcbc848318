#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros_like.h>

#include <limits>
#include <tuple>

#include "cuda_common.cuh"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// One thread per pixel, one read of the logits: an online softmax of z / T
// that carries the weighted sums of the centres along, rescaling all three
// when the running max grows. T = 0: the first largest logit's centre.
template <typename scalar_t>
__global__ void __launch_bounds__(cuda::kThreads)
    annealed_mean_kernel(const scalar_t* __restrict__ logits, PixelLayout lz,
                         const float* __restrict__ centres, int nq,
                         at::opmath_type<scalar_t> inv_t, int64_t pixels,
                         at::opmath_type<scalar_t>* __restrict__ out,
                         at::opmath_type<scalar_t>* __restrict__ stats, PixelLayout lo) {
  using acc_t = at::opmath_type<scalar_t>;
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
        const acc_t z = static_cast<acc_t>(zp[q * lz.s_c]);
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
      m = -std::numeric_limits<acc_t>::max();
      s = 0;
      a = 0;
      b = 0;
      for (int q = 0; q < nq; ++q) {
        const acc_t z = static_cast<acc_t>(zp[q * lz.s_c]);
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
__global__ void __launch_bounds__(cuda::kThreads) annealed_mean_backward_kernel(
    const at::opmath_type<scalar_t>* __restrict__ grad_ab, PixelLayout lgab,
    const scalar_t* __restrict__ logits, PixelLayout lz, const float* __restrict__ centres,
    int nq, const at::opmath_type<scalar_t>* __restrict__ ab, PixelLayout lab,
    const at::opmath_type<scalar_t>* __restrict__ stats, PixelLayout lst,
    at::opmath_type<scalar_t> inv_t, int64_t pixels, scalar_t* __restrict__ grad,
    PixelLayout lg) {
  using acc_t = at::opmath_type<scalar_t>;
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
      const acc_t z = static_cast<acc_t>(zp[q * lz.s_c]);
      const acc_t proj = ga * static_cast<acc_t>(ca[q]) + gb * static_cast<acc_t>(cb[q]) - offset;
      gp[q * lg.s_c] = static_cast<scalar_t>(cuda::exp_acc((z - m) * inv_t) * coef * proj);
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> annealed_mean_cuda(const at::Tensor& logits,
                                                      const at::Tensor& centres,
                                                      double temperature) {
  check_annealed_mean_args("annealed_mean", logits, centres, temperature);
  const c10::cuda::CUDAGuard guard(logits.device());
  at::Tensor out, stats;
  std::tie(out, stats) = empty_decoded(logits);
  const int64_t pixels = out.numel() / 2;
  if (pixels == 0) return {out, stats};
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const size_t smem = 2 * nq * sizeof(float);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, logits.scalar_type(), "annealed_mean_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        annealed_mean_kernel<scalar_t><<<cuda::blocks_for(pixels), cuda::kThreads, smem,
                                         c10::cuda::getCurrentCUDAStream()>>>(
            logits.const_data_ptr<scalar_t>(), pixel_layout(logits), c.const_data_ptr<float>(),
            nq, inverse_temperature<acc_t>(temperature), pixels, out.mutable_data_ptr<acc_t>(),
            stats.mutable_data_ptr<acc_t>(), pixel_layout(out));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return {out, stats};
}

at::Tensor annealed_mean_backward_cuda(const at::Tensor& grad_ab, const at::Tensor& logits,
                                       const at::Tensor& centres, const at::Tensor& ab,
                                       const at::Tensor& stats, double temperature) {
  const char* op = "annealed_mean_backward";
  check_annealed_mean_args(op, logits, centres, temperature);
  check_decoded(op, grad_ab, ab, stats, logits);
  const c10::cuda::CUDAGuard guard(logits.device());
  if (temperature == 0) return at::zeros_like(logits);  // piecewise constant in z
  at::Tensor grad = at::empty_like(logits);
  const int64_t pixels = logits.size(0) * logits.size(2) * logits.size(3);
  if (grad.numel() == 0) return grad;
  const at::Tensor c = centres.contiguous();
  const int nq = static_cast<int>(c.size(0));
  const size_t smem = 2 * nq * sizeof(float);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, logits.scalar_type(), "annealed_mean_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        annealed_mean_backward_kernel<scalar_t>
            <<<cuda::blocks_for(pixels), cuda::kThreads, smem,
               c10::cuda::getCurrentCUDAStream()>>>(
                grad_ab.const_data_ptr<acc_t>(), pixel_layout(grad_ab),
                logits.const_data_ptr<scalar_t>(), pixel_layout(logits),
                c.const_data_ptr<float>(), nq, ab.const_data_ptr<acc_t>(), pixel_layout(ab),
                stats.const_data_ptr<acc_t>(), pixel_layout(stats),
                inverse_temperature<acc_t>(temperature), pixels, grad.mutable_data_ptr<scalar_t>(),
                pixel_layout(grad));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
  return grad;
}

}  // namespace fastcolor
