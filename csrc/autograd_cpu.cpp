// The loss's autograd on CPU tensors, in C++ (the AutogradCPU key).
//
// fastcolor/ops/functional.py registers the same rule for every device in
// Python (torch.library.register_autograd, the Autograd alias key); a kernel
// for a device's own key wins over the alias, so CPU tensors come here. The
// reason is overhead: the Python rule costs about 90 us a call in forward
// and backward together, which was 8% of the 32-bin loss's forward+backward
// on 4x32x128x128 float32 logits (2 CPU threads). The CUDA path keeps the
// Python rule: skipping the scaled copy there needs a CUDA-graph-capture
// check that a build without the CUDA headers cannot make.
//
// The rule (as in Python): the forward stores the gradient already scaled by
// d(reduction); backward hands it on as it is when the incoming gradient of
// a scalar loss is exactly 1 (loss.backward(): no logits-sized copy), else
// scales it. First-order only: the stored gradient does not carry its own
// dependence on the logits.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>
#include <string>
#include <tuple>

namespace fastcolor {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> call_cross_entropy(
    const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& centres,
    const at::Tensor& class_weights, const std::optional<at::Tensor>& pixel_weight, int64_t k,
    double sigma, c10::string_view reduction, bool compute_grad) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("fastcolor::rebalanced_cross_entropy", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(
              const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
              const std::optional<at::Tensor>&, int64_t, double, c10::string_view, bool)>();
  return op.call(logits, ab, centres, class_weights, pixel_weight, k, sigma, reduction,
                 compute_grad);
}

// Whether g is a one-element tensor holding exactly 1. Tensors without data
// (the fake and functional tensors of a traced graph carry the Python or
// Functionalize key) cannot be read, so there the multiply always runs.
bool is_one(const at::Tensor& g) {
  const c10::DispatchKeySet keys = g.key_set();
  if (g.numel() != 1 || keys.has(c10::DispatchKey::Python) ||
      keys.has(c10::DispatchKey::Functionalize))
    return false;
  return g.item<double>() == 1.0;
}

struct CrossEntropy : public torch::autograd::Function<CrossEntropy> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits,
                               const at::Tensor& ab, const at::Tensor& centres,
                               const at::Tensor& class_weights,
                               const std::optional<at::Tensor>& pixel_weight, int64_t k,
                               double sigma, c10::string_view reduction, bool compute_grad) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [loss, grad] = call_cross_entropy(logits, ab, centres, class_weights, pixel_weight, k,
                                           sigma, reduction, compute_grad);
    // The stored gradient output is never differentiated: without this,
    // autograd would hand backward a logits-sized zero tensor for it.
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({grad});
    ctx->saved_data["none"] = reduction == "none";
    ctx->saved_data["compute_grad"] = compute_grad;
    ctx->mark_non_differentiable({grad});
    return {loss, grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list out(9);
    const at::Tensor& g = grads[0];
    if (!g.defined()) return out;
    // Grad mode is on inside backward only with create_graph=True.
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "fastcolor: rebalanced_cross_entropy supports first-order gradients only; "
                "backward with create_graph=True (double backward) is not supported");
    TORCH_CHECK(ctx->saved_data["compute_grad"].toBool(),
                "rebalanced_cross_entropy: backward needs the gradient stored by the forward "
                "pass; call it with compute_grad=True (fastcolor.ops does so when logits "
                "require grad)");
    const at::Tensor grad = ctx->get_saved_variables()[0];
    if (ctx->saved_data["none"].toBool()) {
      out[0] = grad.mul(g.unsqueeze(1)).to(grad.scalar_type());
    } else if (is_one(g)) {
      out[0] = grad;
    } else {
      out[0] = grad.mul(g).to(grad.scalar_type());
    }
    return out;
  }
};

std::tuple<at::Tensor, at::Tensor> cross_entropy_autograd(
    const at::Tensor& logits, const at::Tensor& ab, const at::Tensor& centres,
    const at::Tensor& class_weights, const std::optional<at::Tensor>& pixel_weight, int64_t k,
    double sigma, c10::string_view reduction, bool compute_grad) {
  variable_list out = CrossEntropy::apply(logits, ab, centres, class_weights, pixel_weight, k,
                                          sigma, reduction, compute_grad);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace fastcolor

TORCH_LIBRARY_IMPL(fastcolor, AutogradCPU, m) {
  m.impl("rebalanced_cross_entropy", &fastcolor::cross_entropy_autograd);
}
