// Where a planned kernel launch (fastcolor/launch.h) goes: to the kernels nvcc
// compiled into this extension (CUDA builds), or to the JIT launcher that
// fastcolor/ops/jit.py installs (NVRTC through CuPy), or, while a thread
// records (the planning tests), into a list instead of onto a GPU. Both
// launch paths run the same host code before this point: checks, outputs,
// lookup table, plan, packed arguments.
#include "fastcolor/launch_select.h"

#include <c10/core/Device.h>
#include <c10/core/Stream.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>

#ifdef FASTCOLOR_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace fastcolor {
namespace {

struct Compiled {
  const void* fn;
  std::vector<ParamInfo> params;
};

std::unordered_map<std::string, Compiled>& compiled_table() {
  static std::unordered_map<std::string, Compiled> table;
  return table;
}

std::atomic<JitLauncher> jit_launcher{nullptr};
std::atomic<bool> jit_preferred{false};
thread_local std::vector<KernelLaunch>* recording = nullptr;

std::string describe(const std::vector<ParamInfo>& ps) {
  std::string s;
  for (const auto& p : ps) s += std::string(1, p.kind) + std::to_string(p.size) + " ";
  return s;
}

#ifdef FASTCOLOR_WITH_CUDA
void launch_compiled(const Compiled& k, KernelLaunch& l, void* stream) {
  TORCH_CHECK(k.params.size() == l.params.size(), "fastcolor: ", l.kernel, " takes ", k.params.size(),
              " arguments but its launch packed ", l.params.size());
  for (size_t i = 0; i < k.params.size(); ++i)
    TORCH_CHECK(k.params[i].kind == l.params[i].kind && k.params[i].size == l.params[i].size,
                "fastcolor: argument ", i, " of ", l.kernel, " is packed as [", describe(l.params),
                "] but the kernel takes [", describe(k.params), "]");
  // Dynamic shared memory above the default 48 KiB must be opted into.
  if (l.smem > 48 * 1024) {
    const cudaError_t e = cudaFuncSetAttribute(k.fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                               static_cast<int>(l.smem));
    if (e != cudaSuccess) (void)cudaGetLastError();  // reported here, not by a later check
    TORCH_CHECK(e == cudaSuccess, "fastcolor: ", l.kernel, ": ", cudaGetErrorString(e));
  }
  std::vector<void*> args = l.pointers();
  const cudaError_t e = cudaLaunchKernel(k.fn, dim3(l.grid[0], l.grid[1], l.grid[2]),
                                         dim3(l.block[0], l.block[1], l.block[2]), args.data(),
                                         l.smem, static_cast<cudaStream_t>(stream));
  if (e != cudaSuccess) (void)cudaGetLastError();
  TORCH_CHECK(e == cudaSuccess, "fastcolor: launching ", l.kernel, " failed: ", cudaGetErrorString(e));
}
#endif

}  // namespace

void register_compiled_kernel(const char* name, const void* fn, std::vector<ParamInfo> params) {
  compiled_table()[name] = Compiled{fn, std::move(params)};
}

bool has_compiled_kernels() { return !compiled_table().empty(); }

std::vector<std::pair<std::string, std::vector<ParamInfo>>> compiled_kernels() {
  std::vector<std::pair<std::string, std::vector<ParamInfo>>> out;
  for (const auto& kv : compiled_table()) out.emplace_back(kv.first, kv.second.params);
  return out;
}

void set_jit_launcher(JitLauncher f) { jit_launcher.store(f); }
void prefer_jit(bool on) { jit_preferred.store(on); }
bool jit_is_preferred() { return jit_preferred.load(); }

void record_launches(std::vector<KernelLaunch>* into) { recording = into; }

void launch_kernel(KernelLaunch& l, const c10::Device& device) {
  if (recording) {
    recording->push_back(l);
    return;
  }
  TORCH_CHECK(device.is_cuda(), "fastcolor: ", l.kernel, " launched for ", device, ", not a CUDA device");
  void* stream = c10::impl::VirtualGuardImpl(c10::DeviceType::CUDA).getStream(device).native_handle();
  const JitLauncher jit = jit_launcher.load();
  const auto& table = compiled_table();
  if (jit != nullptr && (jit_preferred.load() || table.empty())) {
    std::vector<void*> args = l.pointers();
    char error[1024] = {0};
    const int rc = jit(l.op.c_str(), l.kernel.c_str(), l.grid, l.block, l.smem, stream, device.index(),
                       args.data(), static_cast<int>(args.size()), error, sizeof(error));
    TORCH_CHECK(rc == 0, "fastcolor: the JIT could not launch ", l.kernel, ": ", error);
    return;
  }
#ifdef FASTCOLOR_WITH_CUDA
  const auto it = table.find(l.kernel);
  TORCH_CHECK(it != table.end(), "fastcolor: no compiled kernel ", l.kernel,
              " (it must be listed in fastcolor/device/instances.h)");
  launch_compiled(it->second, l, stream);
#else
  TORCH_CHECK(false, "fastcolor: this build has no compiled CUDA kernels and the JIT is not active "
              "(pip install cupy-cuda13x, or run with FASTCOLOR_BACKEND=reference)");
#endif
}

}  // namespace fastcolor
