// Host-side helpers shared by the CPU and CUDA entry points: argument checks
// with messages a user can act on, layout extraction, and the reduction that
// finishes the loss. Every op checks its arguments here, whichever back end
// runs it, so the two back ends reject exactly the same inputs.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/sum.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <limits>
#include <optional>
#include <string>
#include <utility>

#include "fastcolor/layout.h"

namespace fastcolor {

// Bins live in shared memory on the GPU (a few floats each); this bound keeps
// them well inside it on every supported card. Both back ends enforce it.
// Defined once, in fastcolor/ops/limits.py (setup.py: -DFASTCOLOR_MAX_BINS).
#ifndef FASTCOLOR_MAX_BINS
#error "FASTCOLOR_MAX_BINS is not defined: setup.py passes it from fastcolor/ops/limits.py"
#endif
constexpr int64_t kMaxBins = FASTCOLOR_MAX_BINS;

// The dtype losses and decoded ab are accumulated and returned in.
inline at::ScalarType opmath_dtype(at::ScalarType st) {
  return st == at::kDouble ? at::kDouble : at::kFloat;
}

inline PixelLayout pixel_layout(const at::Tensor& t) {
  PixelLayout l;
  l.hw = t.size(2) * t.size(3);
  l.w = t.size(3);
  l.s_n = t.stride(0);
  l.s_c = t.stride(1);
  l.s_h = t.stride(2);
  l.s_w = t.stride(3);
  return l;
}

// (N, H, W) tensors (per-pixel weights, losses) viewed as (N, 1, H, W).
inline PixelLayout plane_layout(const at::Tensor& t) {
  PixelLayout l;
  l.hw = t.size(1) * t.size(2);
  l.w = t.size(2);
  l.s_n = t.stride(0);
  l.s_c = 0;
  l.s_h = t.stride(1);
  l.s_w = t.stride(2);
  return l;
}

inline void check_ab(const char* op, const at::Tensor& ab) {
  TORCH_CHECK_VALUE(ab.dim() == 4 && ab.size(1) == 2, op,
                    ": ab must have shape (N, 2, H, W), got ", ab.sizes());
  TORCH_CHECK_TYPE(ab.scalar_type() == at::kFloat, op,
                   ": ab must be float32, got ", ab.scalar_type());
}

inline void check_centres(const char* op, const at::Tensor& centres,
                          const at::Tensor& like) {
  TORCH_CHECK_VALUE(centres.dim() == 2 && centres.size(1) == 2, op,
                    ": centres must have shape (Q, 2), got ", centres.sizes());
  TORCH_CHECK_VALUE(centres.size(0) >= 1 && centres.size(0) <= kMaxBins, op,
                    ": the codebook must have between 1 and ", kMaxBins,
                    " bins, got ", centres.size(0));
  TORCH_CHECK_TYPE(centres.scalar_type() == at::kFloat, op,
                   ": centres must be float32, got ", centres.scalar_type());
  TORCH_CHECK_VALUE(centres.device() == like.device(), op,
                    ": centres are on ", centres.device(), " but the data is on ",
                    like.device());
}

inline void check_logits(const char* op, const at::Tensor& logits,
                         const at::Tensor& centres) {
  TORCH_CHECK_VALUE(logits.dim() == 4, op,
                    ": logits must have shape (N, Q, H, W), got ", logits.sizes());
  const auto st = logits.scalar_type();
  TORCH_CHECK_TYPE(st == at::kFloat || st == at::kHalf || st == at::kBFloat16 ||
                       st == at::kDouble,
                   op, ": logits must be float32, float16, bfloat16 or float64, got ",
                   st);
  TORCH_CHECK_VALUE(logits.size(1) == centres.size(0), op, ": logits have ",
                    logits.size(1), " channels but the codebook has ",
                    centres.size(0), " bins");
}

// The other tensor must sit on the same pixels as the logits.
inline void check_same_pixels(const char* op, const char* name,
                              const at::Tensor& t, const at::Tensor& logits) {
  TORCH_CHECK_VALUE(t.device() == logits.device(), op, ": ", name, " is on ",
                    t.device(), " but the logits are on ", logits.device());
  const bool plane = t.dim() == 3;
  const int64_t off = plane ? 1 : 2;
  TORCH_CHECK_VALUE(
      (t.dim() == 3 || t.dim() == 4) && t.size(0) == logits.size(0) &&
          t.size(off) == logits.size(2) && t.size(off + 1) == logits.size(3),
      op, ": ", name, " of shape ", t.sizes(),
      " does not match the logits' batch and spatial size ", logits.sizes(),
      " (subsample full-resolution targets first, as fastcolor.nn does)");
}

inline void check_k_sigma(const char* op, int64_t k, double sigma, int64_t bins) {
  TORCH_CHECK_VALUE(k >= 1 && k <= kMaxK && k <= bins, op,
                    ": k must be between 1 and min(", kMaxK,
                    ", number of bins = ", bins, "), got ", k);
  TORCH_CHECK_VALUE(std::isfinite(sigma) && sigma > 0, op,
                    ": sigma must be a positive finite number, got ", sigma);
}

inline void check_pixel_weight(const char* op, const at::Tensor& w,
                               const at::Tensor& logits) {
  TORCH_CHECK_VALUE(w.dim() == 3, op,
                    ": pixel_weight must have shape (N, H, W), got ", w.sizes());
  TORCH_CHECK_TYPE(w.scalar_type() == at::kFloat, op,
                   ": pixel_weight must be float32, got ", w.scalar_type());
  check_same_pixels(op, "pixel_weight", w, logits);
}

inline void check_histogram_weight(const char* op, const at::Tensor& w, const at::Tensor& ab) {
  TORCH_CHECK_VALUE(w.dim() == 3 && w.size(0) == ab.size(0) && w.size(1) == ab.size(2) &&
                        w.size(2) == ab.size(3),
                    op, ": weight must have shape (N, H, W) = (", ab.size(0), ", ", ab.size(2),
                    ", ", ab.size(3), "), got ", w.sizes());
  TORCH_CHECK_TYPE(w.scalar_type() == at::kFloat, op, ": weight must be float32, got ",
                   w.scalar_type());
  TORCH_CHECK_VALUE(w.device() == ab.device(), op, ": weight is on ", w.device(),
                    " but ab is on ", ab.device());
}

inline void check_cross_entropy_args(const char* op, const at::Tensor& logits,
                                     const at::Tensor& ab, const at::Tensor& centres,
                                     const at::Tensor& class_weights,
                                     const std::optional<at::Tensor>& pixel_weight, int64_t k,
                                     double sigma) {
  check_ab(op, ab);
  check_centres(op, centres, logits);
  check_logits(op, logits, centres);
  check_same_pixels(op, "ab", ab, logits);
  check_k_sigma(op, k, sigma, centres.size(0));
  TORCH_CHECK_VALUE(class_weights.dim() == 1 && class_weights.size(0) == centres.size(0), op,
                    ": class_weights must have shape (Q,) = (", centres.size(0), ",), got ",
                    class_weights.sizes());
  TORCH_CHECK_TYPE(class_weights.scalar_type() == at::kFloat, op,
                   ": class_weights must be float32, got ", class_weights.scalar_type());
  TORCH_CHECK_VALUE(class_weights.device() == logits.device(), op, ": class_weights are on ",
                    class_weights.device(), " but the logits are on ", logits.device());
  if (pixel_weight) check_pixel_weight(op, *pixel_weight, logits);
}

enum class Reduction { kNone, kSum, kMean };

inline Reduction parse_reduction(const char* op, c10::string_view r) {
  if (r == "none") return Reduction::kNone;
  if (r == "sum") return Reduction::kSum;
  if (r == "mean") return Reduction::kMean;
  TORCH_CHECK_VALUE(false, op, ": reduction must be 'mean', 'sum' or 'none', got '",
                    std::string(r), "'");
  return Reduction::kNone;
}

// Factor the kernel folds into the stored gradient: d(loss)/d(per-pixel loss).
inline double reduction_grad_scale(Reduction r, int64_t pixels) {
  return r == Reduction::kMean ? 1.0 / static_cast<double>(pixels) : 1.0;
}

inline at::Tensor reduce_loss(const at::Tensor& per_pixel, Reduction r) {
  if (r == Reduction::kNone) return per_pixel;
  at::Tensor total = at::sum(per_pixel);
  // Mean of zero pixels is NaN, as torch.mean of an empty tensor.
  if (r == Reduction::kMean) total.div_(static_cast<double>(per_pixel.numel()));
  return total;
}

inline void check_temperature(const char* op, double t) {
  TORCH_CHECK_VALUE(std::isfinite(t) && t >= 0, op,
                    ": temperature must be a finite number >= 0, got ", t);
}

// 1 / T, saturated so that (z - max z) / T stays finite-or-(-inf) for tiny T.
template <typename acc_t>
acc_t inverse_temperature(double t) {
  const double inv = t > 0 ? 1.0 / t : 0.0;
  const double cap = static_cast<double>(std::numeric_limits<acc_t>::max());
  return static_cast<acc_t>(inv < cap ? inv : cap);
}

inline void check_annealed_mean_args(const char* op, const at::Tensor& logits,
                                     const at::Tensor& centres, double temperature) {
  check_centres(op, centres, logits);
  check_logits(op, logits, centres);
  check_temperature(op, temperature);
}

// The saved forward results and the incoming gradient of annealed_mean.
inline void check_decoded(const char* op, const at::Tensor& grad_ab, const at::Tensor& ab,
                          const at::Tensor& stats, const at::Tensor& logits) {
  const auto acc = opmath_dtype(logits.scalar_type());
  for (const at::Tensor* t : {&grad_ab, &ab, &stats}) {
    TORCH_CHECK_VALUE(t->dim() == 4 && t->size(1) == 2, op,
                      ": decoded tensors must have shape (N, 2, H, W), got ", t->sizes());
    check_same_pixels(op, "a decoded tensor", *t, logits);
    TORCH_CHECK_TYPE(t->scalar_type() == acc, op, ": expected ", acc,
                     " for the decoded tensors, got ", t->scalar_type());
  }
}

// The outputs of annealed_mean: decoded ab and the softmax statistics, both
// (N, 2, H, W) in the accumulation dtype.
inline std::pair<at::Tensor, at::Tensor> empty_decoded(const at::Tensor& logits) {
  const auto opts = logits.options().dtype(opmath_dtype(logits.scalar_type()));
  const int64_t n = logits.size(0), h = logits.size(2), w = logits.size(3);
  return {at::empty({n, 2, h, w}, opts), at::empty({n, 2, h, w}, opts)};
}

// The outputs of rebalanced_cross_entropy's kernels: per-pixel losses
// (N, H, W) in the accumulation dtype, and the gradient with the logits'
// shape, strides and dtype (empty when not asked for).
inline std::pair<at::Tensor, at::Tensor> empty_cross_entropy(const at::Tensor& logits,
                                                             bool compute_grad) {
  const auto opts = logits.options().dtype(opmath_dtype(logits.scalar_type()));
  at::Tensor loss_px = at::empty({logits.size(0), logits.size(2), logits.size(3)}, opts);
  at::Tensor grad = compute_grad ? at::empty_like(logits) : at::empty({0}, logits.options());
  return {loss_px, grad};
}

// temporal_decode: logits (N, Q, H, W) as above, state (N, Q, H, W) float32,
// weight (N, 1, H, W) float32, all on the logits' device; T >= 0 and
// sharpness >= 0 finite.
inline void check_temporal_decode_args(const char* op, const at::Tensor& logits,
                                       const at::Tensor& state, const at::Tensor& weight,
                                       const at::Tensor& centres, double temperature,
                                       double sharpness) {
  check_centres(op, centres, logits);
  check_logits(op, logits, centres);
  check_temperature(op, temperature);
  TORCH_CHECK_VALUE(std::isfinite(sharpness) && sharpness >= 0, op,
                    ": sharpness must be a finite number >= 0, got ", sharpness);
  TORCH_CHECK_VALUE(state.sizes() == logits.sizes(), op, ": state must have the logits' shape ",
                    logits.sizes(), ", got ", state.sizes());
  TORCH_CHECK_TYPE(state.scalar_type() == at::kFloat, op, ": state must be float32, got ",
                   state.scalar_type());
  TORCH_CHECK_VALUE(state.device() == logits.device(), op, ": state is on ", state.device(),
                    " but the logits are on ", logits.device());
  TORCH_CHECK_VALUE(weight.dim() == 4 && weight.size(0) == logits.size(0) && weight.size(1) == 1 &&
                        weight.size(2) == logits.size(2) && weight.size(3) == logits.size(3),
                    op, ": weight must have shape (N, 1, H, W) = (", logits.size(0), ", 1, ",
                    logits.size(2), ", ", logits.size(3), "), got ", weight.sizes());
  TORCH_CHECK_TYPE(weight.scalar_type() == at::kFloat, op, ": weight must be float32, got ",
                   weight.scalar_type());
  TORCH_CHECK_VALUE(weight.device() == logits.device(), op, ": weight is on ", weight.device(),
                    " but the logits are on ", logits.device());
}

// The outputs of temporal_decode: ab (N, 2, H, W) float32, contiguous, and the
// new state, float32 in the logits' memory format (so that a pixel's bins are
// written in the order they are read).
// with_state false: the new state is left empty, for a caller that allocates
// it itself (the CPU kernel recycles it: cpu/output_pool.h).
inline std::pair<at::Tensor, at::Tensor> empty_temporal_decode(const at::Tensor& logits,
                                                               bool with_state = true) {
  const auto opts = logits.options().dtype(at::kFloat);
  return {at::empty({logits.size(0), 2, logits.size(2), logits.size(3)}, opts),
          with_state ? at::empty_like(logits, opts) : at::empty({0}, opts)};
}

}  // namespace fastcolor
