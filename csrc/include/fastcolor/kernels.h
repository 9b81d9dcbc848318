// Entry points of the kernels, one per op and device. They are registered
// under the schemas of csrc/fastcolor.cpp; keeping torch/library.h out of the
// kernel files keeps each of them quick to compile.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>
#include <tuple>

namespace fastcolor {

#define FASTCOLOR_DECLARE_KERNELS(dev)                                                   \
  at::Tensor nearest_bin_##dev(const at::Tensor& ab, const at::Tensor& centres);       \
  at::Tensor soft_encode_##dev(const at::Tensor& ab, const at::Tensor& centres,        \
                               int64_t k, double sigma);                                \
  at::Tensor bin_histogram_##dev(const at::Tensor& ab, const at::Tensor& centres,      \
                                 const std::optional<at::Tensor>& weight);              \
  std::tuple<at::Tensor, at::Tensor> rebalanced_cross_entropy_##dev(                    \
      const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& centres,        \
      const at::Tensor& class_weights, const std::optional<at::Tensor>& pixel_weight,   \
      int64_t k, double sigma, c10::string_view reduction, bool compute_grad);          \
  std::tuple<at::Tensor, at::Tensor> annealed_mean_##dev(                               \
      const at::Tensor& logits, const at::Tensor& centres, double temperature);         \
  at::Tensor annealed_mean_backward_##dev(                                              \
      const at::Tensor& grad_ab, const at::Tensor& logits, const at::Tensor& centres,   \
      const at::Tensor& ab, const at::Tensor& stats, double temperature);               \
  std::tuple<at::Tensor, at::Tensor> temporal_decode_##dev(                             \
      const at::Tensor& logits, const at::Tensor& state, const at::Tensor& weight,      \
      const at::Tensor& centres, double temperature, double sharpness);

FASTCOLOR_DECLARE_KERNELS(cpu)
// The CUDA entry points are plain C++ (csrc/cuda/<op>_cuda.cpp), built in every
// build: they launch the compiled kernels or the JIT's (csrc/launch.cpp).
FASTCOLOR_DECLARE_KERNELS(cuda)

#undef FASTCOLOR_DECLARE_KERNELS

}  // namespace fastcolor
