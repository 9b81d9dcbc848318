// The op schemas of fastcolor and the table of their kernels, in one place.
// The kernels themselves live in csrc/cpu/<op>_cpu.cpp and
// csrc/cuda/<op>_cuda.cu; fake kernels and autograd in fastcolor/ops.py. The shapes and formulas are documented
// there and in fastcolor/reference.py, the pure-PyTorch specification.
#include <Python.h>
#include <torch/library.h>

#include <vector>

#include "fastcolor/colormath.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/lookup_build.h"

namespace {
// The limits compiled into the kernels (from fastcolor/ops/limits.py, through
// setup.py's -DFASTCOLOR_MAX_K / -DFASTCOLOR_MAX_BINS): [max_k, max_bins].
std::vector<int64_t> limits() { return {fastcolor::kMaxK, fastcolor::kMaxBins}; }

// The lookup table the kernels would use for (centres, k), built afresh (not
// from the cache) so that its build time is measured: [ga, gb, a0, b0,
// inv_wa, inv_wb, cell entries, mean list, longest list, bytes, build ms].
std::vector<double> lookup_info(const at::Tensor& centres, int64_t k) {
  fastcolor::check_centres("lookup_info", centres, centres);
  fastcolor::check_k_sigma("lookup_info", k, 1.0, centres.size(0));
  const at::Tensor c = centres.to(at::kCPU).contiguous();
  const fastcolor::LookupTable t =
      fastcolor::build_lookup(c.const_data_ptr<float>(), c.size(0), static_cast<int>(k));
  const int64_t cells = int64_t(t.ga) * t.gb;
  return {double(t.ga), double(t.gb), t.a0, t.b0, t.inv_wa, t.inv_wb, double(t.start[cells]),
          t.mean_list(), double(t.max_list), double(t.bytes()), t.build_ms};
}
}  // namespace

extern "C" {
// Importing fastcolor._C runs the static registrations below; the module
// itself is empty (no pybind11, no Python-level symbols).
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(fastcolor, m) {
  // -> [max_k, max_bins] as compiled; takes no tensor, so its one kernel is
  // registered for every dispatch key (CompositeImplicitAutograd catch-all).
  m.def("limits() -> int[]", &limits);
  // The k-nearest lookup table of a codebook (csrc/include/fastcolor/lookup.h):
  // its grid and size, built afresh and timed; for tests and benchmarks.
  m.def("lookup_info(Tensor centres, int k) -> float[]");
  // ab (N,2,H,W) f32, centres (Q,2) f32 -> (N,H,W) int64; -1 for non-finite ab.
  m.def("nearest_bin(Tensor ab, Tensor centres) -> Tensor");
  // -> (N,Q,H,W) f32 dense Gaussian soft targets over the k nearest bins.
  m.def("soft_encode(Tensor ab, Tensor centres, int k, float sigma) -> Tensor");
  // -> (Q,) f64 counts (or sums of weight) of nearest bins.
  m.def("bin_histogram(Tensor ab, Tensor centres, Tensor? weight) -> Tensor");
  // -> (loss, grad): loss () or (N,H,W) in f32 (f64 for f64 logits); grad has
  // the logits' shape, strides and dtype, already multiplied by
  // d(loss)/d(per-pixel loss), or is empty when compute_grad is false.
  m.def(
      "rebalanced_cross_entropy(Tensor logits, Tensor ab, Tensor centres, "
      "Tensor class_weights, Tensor? pixel_weight, int k, float sigma, "
      "str reduction, bool compute_grad) -> (Tensor, Tensor)");
  // -> (ab (N,2,H,W), stats (N,2,H,W): max logit and softmax normaliser per
  // pixel, kept for the backward), both f32 (f64 for f64 logits).
  m.def("annealed_mean(Tensor logits, Tensor centres, float temperature) -> (Tensor, Tensor)");
  m.def(
      "annealed_mean_backward(Tensor grad_ab, Tensor logits, Tensor centres, "
      "Tensor ab, Tensor stats, float temperature) -> Tensor");
  // One step of temporal filtering, inference only: logits (N,Q,H,W), state
  // (N,Q,H,W) f32, weight (N,1,H,W) f32 -> (ab (N,2,H,W) f32, new_state
  // (N,Q,H,W) f32 in the logits' memory format).
  m.def(
      "temporal_decode(Tensor logits, Tensor state, Tensor weight, Tensor centres, "
      "float temperature, float sharpness) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(fastcolor, CPU, m) {
  m.impl("lookup_info", &lookup_info);
  m.impl("nearest_bin", &fastcolor::nearest_bin_cpu);
  m.impl("soft_encode", &fastcolor::soft_encode_cpu);
  m.impl("bin_histogram", &fastcolor::bin_histogram_cpu);
  m.impl("rebalanced_cross_entropy", &fastcolor::rebalanced_cross_entropy_cpu);
  m.impl("annealed_mean", &fastcolor::annealed_mean_cpu);
  m.impl("annealed_mean_backward", &fastcolor::annealed_mean_backward_cpu);
  m.impl("temporal_decode", &fastcolor::temporal_decode_cpu);
}

#ifdef FASTCOLOR_WITH_CUDA
TORCH_LIBRARY_IMPL(fastcolor, CUDA, m) {
  m.impl("lookup_info", &lookup_info);
  m.impl("nearest_bin", &fastcolor::nearest_bin_cuda);
  m.impl("soft_encode", &fastcolor::soft_encode_cuda);
  m.impl("bin_histogram", &fastcolor::bin_histogram_cuda);
  m.impl("rebalanced_cross_entropy", &fastcolor::rebalanced_cross_entropy_cuda);
  m.impl("annealed_mean", &fastcolor::annealed_mean_cuda);
  m.impl("annealed_mean_backward", &fastcolor::annealed_mean_backward_cuda);
  m.impl("temporal_decode", &fastcolor::temporal_decode_cuda);
}
#endif
