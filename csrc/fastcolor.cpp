// The op schemas of fastcolor and the table of their kernels, in one place.
// The kernels themselves live in csrc/cpu/<op>_cpu.cpp and, for CUDA, in
// csrc/include/fastcolor/device/<op>.cuh (host side: csrc/cuda/<op>_cuda.cpp); fake kernels and autograd in fastcolor/ops.py. The shapes and formulas are documented
// there and in fastcolor/reference.py, the pure-PyTorch specification.
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <torch/library.h>

#include <vector>

#include "fastcolor/colormath.h"
#include "fastcolor/host.h"
#include "fastcolor/kernels.h"
#include "fastcolor/launch_select.h"
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

// The module's few functions (plain CPython, no pybind11): the CUDA launch
// paths of csrc/launch.cpp, driven by fastcolor/ops/jit.py and
// fastcolor/ops/backend.py. Importing fastcolor._C also runs the static
// registrations below.
namespace {

PyObject* py_set_jit_launcher(PyObject*, PyObject* arg) {
  const unsigned long long address = PyLong_AsUnsignedLongLong(arg);
  if (PyErr_Occurred()) return nullptr;
  fastcolor::set_jit_launcher(reinterpret_cast<fastcolor::JitLauncher>(address));
  Py_RETURN_NONE;
}

PyObject* py_prefer_jit(PyObject*, PyObject* arg) {
  const int on = PyObject_IsTrue(arg);
  if (on < 0) return nullptr;
  fastcolor::prefer_jit(on != 0);
  Py_RETURN_NONE;
}

PyObject* params_list(const std::vector<fastcolor::ParamInfo>& ps, const std::vector<size_t>* offsets) {
  PyObject* list = PyList_New(static_cast<Py_ssize_t>(ps.size()));
  for (size_t i = 0; i < ps.size(); ++i) {
    PyObject* item = offsets ? Py_BuildValue("(s#In)", &ps[i].kind, Py_ssize_t(1), ps[i].size,
                                             static_cast<Py_ssize_t>((*offsets)[i]))
                             : Py_BuildValue("(s#I)", &ps[i].kind, Py_ssize_t(1), ps[i].size);
    PyList_SET_ITEM(list, static_cast<Py_ssize_t>(i), item);
  }
  return list;
}

// {name expression: [(kind, size), ...]} of the kernels nvcc compiled in.
PyObject* py_compiled_kernels(PyObject*, PyObject*) {
  PyObject* d = PyDict_New();
  for (const auto& kv : fastcolor::compiled_kernels()) {
    PyObject* v = params_list(kv.second, nullptr);
    PyDict_SetItemString(d, kv.first.c_str(), v);
    Py_DECREF(v);
  }
  return d;
}

// Runs fn(*args) with this thread's launches recorded instead of run; returns
// (fn's result, [launch dicts]). For the planning tests (fastcolor_plan ops).
PyObject* py_record_launches(PyObject*, PyObject* args) {
  PyObject* fn = nullptr;
  PyObject* fn_args = nullptr;
  if (!PyArg_ParseTuple(args, "OO!", &fn, &PyTuple_Type, &fn_args)) return nullptr;
  std::vector<fastcolor::KernelLaunch> launches;
  fastcolor::record_launches(&launches);
  PyObject* result = PyObject_CallObject(fn, fn_args);
  fastcolor::record_launches(nullptr);
  if (result == nullptr) return nullptr;
  PyObject* list = PyList_New(0);
  for (const auto& l : launches) {
    PyObject* params = params_list(l.params, &l.offsets);
    PyObject* d = Py_BuildValue(
        "{s:s,s:s,s:(III),s:(III),s:n,s:N,s:y#}", "op", l.op.c_str(), "kernel", l.kernel.c_str(),
        "grid", l.grid[0], l.grid[1], l.grid[2], "block", l.block[0], l.block[1], l.block[2], "smem",
        static_cast<Py_ssize_t>(l.smem), "params", params, "args",
        reinterpret_cast<const char*>(l.bytes.data()), static_cast<Py_ssize_t>(l.bytes.size()));
    PyList_Append(list, d);
    Py_DECREF(d);
  }
  return Py_BuildValue("(NN)", result, list);
}

PyMethodDef methods[] = {
    {"set_jit_launcher", py_set_jit_launcher, METH_O,
     "Address of the JIT's launch function (a ctypes callback), 0 for none."},
    {"prefer_jit", py_prefer_jit, METH_O, "Launch through the JIT even where compiled kernels exist."},
    {"compiled_kernels", py_compiled_kernels, METH_NOARGS,
     "The kernels nvcc compiled into this extension, with their parameters."},
    {"record_launches", py_record_launches, METH_VARARGS,
     "record_launches(fn, args): fn(*args) with kernel launches recorded, not run."},
    {nullptr, nullptr, 0, nullptr},
};

}  // namespace

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods,
  };
  return PyModule_Create(&module_def);
}
}

// The op schemas, each defined once: in the fastcolor library and, for the
// planning tests, in fastcolor_plan (the same CUDA host code run on CPU
// tensors while fastcolor._C.record_launches records its launches).
// ab (N,2,H,W) f32, centres (Q,2) f32 -> (N,H,W) int64; -1 for non-finite ab.
#define FASTCOLOR_SCHEMA_NEAREST_BIN "nearest_bin(Tensor ab, Tensor centres) -> Tensor"
// -> (N,Q,H,W) f32 dense Gaussian soft targets over the k nearest bins.
#define FASTCOLOR_SCHEMA_SOFT_ENCODE "soft_encode(Tensor ab, Tensor centres, int k, float sigma) -> Tensor"
// -> (Q,) f64 counts (or sums of weight) of nearest bins.
#define FASTCOLOR_SCHEMA_BIN_HISTOGRAM "bin_histogram(Tensor ab, Tensor centres, Tensor? weight) -> Tensor"
// -> (loss, grad): loss () or (N,H,W) in f32 (f64 for f64 logits); grad has
// the logits' shape, strides and dtype, already multiplied by
// d(loss)/d(per-pixel loss), or is empty when compute_grad is false.
#define FASTCOLOR_SCHEMA_CROSS_ENTROPY                                 \
  "rebalanced_cross_entropy(Tensor logits, Tensor ab, Tensor centres, " \
  "Tensor class_weights, Tensor? pixel_weight, int k, float sigma, "    \
  "str reduction, bool compute_grad) -> (Tensor, Tensor)"
// -> (ab (N,2,H,W), stats (N,2,H,W): max logit and softmax normaliser per
// pixel, kept for the backward), both f32 (f64 for f64 logits).
#define FASTCOLOR_SCHEMA_ANNEALED_MEAN \
  "annealed_mean(Tensor logits, Tensor centres, float temperature) -> (Tensor, Tensor)"
#define FASTCOLOR_SCHEMA_ANNEALED_MEAN_BACKWARD                   \
  "annealed_mean_backward(Tensor grad_ab, Tensor logits, Tensor centres, " \
  "Tensor ab, Tensor stats, float temperature) -> Tensor"
// One step of temporal filtering, inference only: logits (N,Q,H,W), state
// (N,Q,H,W) f32, weight (N,1,H,W) f32 -> (ab (N,2,H,W) f32, new_state
// (N,Q,H,W) f32 in the logits' memory format).
#define FASTCOLOR_SCHEMA_TEMPORAL_DECODE                                          \
  "temporal_decode(Tensor logits, Tensor state, Tensor weight, Tensor centres, " \
  "float temperature, float sharpness) -> (Tensor, Tensor)"

#define FASTCOLOR_DEFINE_OPS(m)                     \
  m.def(FASTCOLOR_SCHEMA_NEAREST_BIN);              \
  m.def(FASTCOLOR_SCHEMA_SOFT_ENCODE);              \
  m.def(FASTCOLOR_SCHEMA_BIN_HISTOGRAM);            \
  m.def(FASTCOLOR_SCHEMA_CROSS_ENTROPY);            \
  m.def(FASTCOLOR_SCHEMA_ANNEALED_MEAN);            \
  m.def(FASTCOLOR_SCHEMA_ANNEALED_MEAN_BACKWARD);   \
  m.def(FASTCOLOR_SCHEMA_TEMPORAL_DECODE);

#define FASTCOLOR_IMPL_OPS(m, dev)                                                    \
  m.impl("nearest_bin", &fastcolor::nearest_bin_##dev);                               \
  m.impl("soft_encode", &fastcolor::soft_encode_##dev);                               \
  m.impl("bin_histogram", &fastcolor::bin_histogram_##dev);                           \
  m.impl("rebalanced_cross_entropy", &fastcolor::rebalanced_cross_entropy_##dev);     \
  m.impl("annealed_mean", &fastcolor::annealed_mean_##dev);                           \
  m.impl("annealed_mean_backward", &fastcolor::annealed_mean_backward_##dev);         \
  m.impl("temporal_decode", &fastcolor::temporal_decode_##dev);

TORCH_LIBRARY(fastcolor, m) {
  // -> [max_k, max_bins] as compiled; takes no tensor, so its one kernel is
  // registered for every dispatch key (CompositeImplicitAutograd catch-all).
  m.def("limits() -> int[]", &limits);
  // The k-nearest lookup table of a codebook (csrc/include/fastcolor/lookup.h):
  // its grid and size, built afresh and timed; for tests and benchmarks.
  m.def("lookup_info(Tensor centres, int k) -> float[]");
  FASTCOLOR_DEFINE_OPS(m)
}

TORCH_LIBRARY_IMPL(fastcolor, CPU, m) {
  m.impl("lookup_info", &lookup_info);
  FASTCOLOR_IMPL_OPS(m, cpu)
}

// In every build: csrc/launch.cpp sends the launches to the compiled kernels
// or to the JIT (and refuses them when neither is there).
TORCH_LIBRARY_IMPL(fastcolor, CUDA, m) {
  m.impl("lookup_info", &lookup_info);
  FASTCOLOR_IMPL_OPS(m, cuda)
}

TORCH_LIBRARY(fastcolor_plan, m) { FASTCOLOR_DEFINE_OPS(m) }

TORCH_LIBRARY_IMPL(fastcolor_plan, CPU, m) { FASTCOLOR_IMPL_OPS(m, cuda) }
