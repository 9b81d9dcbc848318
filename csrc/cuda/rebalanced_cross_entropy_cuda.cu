#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <limits>
#include <optional>
#include <tuple>

#include "cuda_common.cuh"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"

namespace fastcolor {
namespace {

// One thread per pixel. The k nearest bins of its ab (registers) define the
// soft target t, never stored. One pass over the logits gives the online
// log-sum-exp; the loss is w * (lse * sum_j t_j - sum_j t_j z_j). With grad,
// a second pass writes scale * w * (softmax(z) - t), formed in acc_t and
// rounded once, the target term found by re-testing each bin's rank.
template <typename scalar_t, int Cap>
__global__ void __launch_bounds__(cuda::kThreads) cross_entropy_kernel(
    const scalar_t* __restrict__ logits, PixelLayout lz, const float* __restrict__ ab,
    PixelLayout lab, const float* __restrict__ centres, const float* __restrict__ class_w,
    int nq, const float* __restrict__ pixel_w, PixelLayout lw, int k, float inv_two_sigma2,
    at::opmath_type<scalar_t> scale, int64_t pixels, at::opmath_type<scalar_t>* __restrict__ loss,
    scalar_t* __restrict__ grad, PixelLayout lg) {
  using acc_t = at::opmath_type<scalar_t>;
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
        for (int q = 0; q < nq; ++q) gp[q * lg.s_c] = static_cast<scalar_t>(NAN);
      continue;
    }
    KNearestT<Cap> nn(k);
    for (int q = 0; q < nq; ++q) nn.push(sqdist(a, b, ca[q], cb[q]), q);
    const float norm = gaussian_normaliser(nn, inv_two_sigma2);
    const acc_t w = static_cast<acc_t>(cw[nn.idx[0]]) *
                    (pixel_w ? static_cast<acc_t>(pixel_w[lw.offset(p)]) : acc_t(1));
    acc_t tdot = 0, tsum = 0;
    FC_UNROLL
    for (int j = 0; j < Cap; ++j) {
      if (j < k) {
        const acc_t tj =
            static_cast<acc_t>(gaussian_weight(nn.d[j], nn.d[0], inv_two_sigma2) / norm);
        tdot += tj * static_cast<acc_t>(zp[nn.idx[j] * lz.s_c]);
        tsum += tj;
      }
    }
    // Online softmax from the lowest finite value, so -inf logits add 0.
    acc_t m = -std::numeric_limits<acc_t>::max(), s = 0;
    for (int q = 0; q < nq; ++q) {
      const acc_t z = static_cast<acc_t>(zp[q * lz.s_c]);
      if (z > m) {
        s = s * cuda::exp_acc(m - z) + acc_t(1);
        m = z;
      } else {
        s += cuda::exp_acc(z - m);  // NaN z makes s NaN
      }
    }
    loss[p] = w * ((m + log(s)) * tsum - tdot);
    if (gp) {
      const acc_t coef = scale * w;
      const acc_t pscale = coef / s;
      for (int q = 0; q < nq; ++q) {
        const acc_t z = static_cast<acc_t>(zp[q * lz.s_c]);
        acc_t g = cuda::exp_acc(z - m) * pscale;
        const float d = sqdist(a, b, ca[q], cb[q]);
        if (nn.selected(d, q))
          g -= coef * static_cast<acc_t>(gaussian_weight(d, nn.d[0], inv_two_sigma2) / norm);
        gp[q * lg.s_c] = static_cast<scalar_t>(g);
      }
    }
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> rebalanced_cross_entropy_cuda(
    const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& centres,
    const at::Tensor& class_weights, const std::optional<at::Tensor>& pixel_weight, int64_t k,
    double sigma, c10::string_view reduction, bool compute_grad) {
  const char* op = "rebalanced_cross_entropy";
  check_cross_entropy_args(op, logits, ab, centres, class_weights, pixel_weight, k, sigma);
  const Reduction red = parse_reduction(op, reduction);
  const c10::cuda::CUDAGuard guard(logits.device());
  const int64_t nq = logits.size(1);
  at::Tensor loss_px, grad;
  std::tie(loss_px, grad) = empty_cross_entropy(logits, compute_grad);
  const int64_t pixels = loss_px.numel();
  if (pixels > 0) {
    const at::Tensor c = centres.contiguous();
    const at::Tensor cw = class_weights.contiguous();
    const float inv_two_sigma2 = static_cast<float>(0.5 / (sigma * sigma));
    const size_t smem = 3 * nq * sizeof(float);
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, logits.scalar_type(), "rebalanced_cross_entropy_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          cuda::with_capacity(k, [&](auto cap) {
            auto kernel = cross_entropy_kernel<scalar_t, decltype(cap)::value>;
            cuda::allow_shared_memory(kernel, smem);
            kernel<<<cuda::blocks_for(pixels), cuda::kThreads, smem,
                     c10::cuda::getCurrentCUDAStream()>>>(
                logits.const_data_ptr<scalar_t>(), pixel_layout(logits),
                ab.const_data_ptr<float>(), pixel_layout(ab), c.const_data_ptr<float>(),
                cw.const_data_ptr<float>(), static_cast<int>(nq),
                pixel_weight ? pixel_weight->const_data_ptr<float>() : nullptr,
                pixel_weight ? plane_layout(*pixel_weight) : PixelLayout{},
                static_cast<int>(k), inv_two_sigma2,
                static_cast<acc_t>(reduction_grad_scale(red, pixels)), pixels,
                loss_px.mutable_data_ptr<acc_t>(),
                compute_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr,
                compute_grad ? pixel_layout(grad) : PixelLayout{});
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        });
  }
  return {reduce_loss(loss_px, red), grad};
}

}  // namespace fastcolor
