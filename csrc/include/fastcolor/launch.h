// One kernel launch, described without CUDA: the kernel's name expression,
// grid, block, dynamic shared memory and its arguments packed as the kernel
// takes them. The host code of each op (csrc/cuda/<op>_cuda.cpp) plans and
// packs it; csrc/launch.cpp then hands it to the kernels nvcc compiled into
// the extension or to the JIT (fastcolor/ops/jit.py, NVRTC through CuPy),
// whichever path is chosen. Host-only and torch-free.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

namespace fastcolor {

// What a kernel parameter is, as far as a launch can check it: its size and
// a kind ('p' pointer, 'f' float, 'd' double, 'i' 32-bit integer, 'l' 64-bit
// integer, 'b' bool, 's' struct). The compiled kernels' signatures are
// recorded with the same classification, so a packing that does not match
// its kernel is refused instead of launched.
struct ParamInfo {
  char kind;
  uint32_t size;
};

template <typename T>
constexpr ParamInfo param_info() {
  using U = typename std::remove_cv<T>::type;
  return ParamInfo{std::is_pointer<U>::value             ? 'p'
                   : std::is_same<U, float>::value       ? 'f'
                   : std::is_same<U, double>::value      ? 'd'
                   : std::is_same<U, bool>::value        ? 'b'
                   : std::is_integral<U>::value && sizeof(U) == 4 ? 'i'
                   : std::is_integral<U>::value && sizeof(U) == 8 ? 'l'
                                                                  : 's',
                   static_cast<uint32_t>(sizeof(U))};
}

struct KernelLaunch {
  std::string op;      // its device code: csrc/include/fastcolor/device/<op>.cuh
  std::string kernel;  // name expression, as listed in fastcolor/device/instances.h
  unsigned grid[3] = {1, 1, 1};
  unsigned block[3] = {1, 1, 1};
  size_t smem = 0;                   // dynamic shared memory, bytes
  std::vector<unsigned char> bytes;  // the arguments, each at its natural alignment
  std::vector<size_t> offsets;       // where each argument starts in bytes
  std::vector<ParamInfo> params;

  KernelLaunch(std::string op_, std::string kernel_) : op(std::move(op_)), kernel(std::move(kernel_)) {}

  void set_grid(unsigned x, unsigned y = 1, unsigned z = 1) { grid[0] = x, grid[1] = y, grid[2] = z; }
  void set_block(unsigned x, unsigned y = 1, unsigned z = 1) { block[0] = x, block[1] = y, block[2] = z; }

  // Appends one argument: its type must be the kernel parameter's type
  // (int for int, int64_t for int64_t, ...); pointers of any type.
  template <typename T>
  KernelLaunch& arg(const T& v) {
    static_assert(std::is_trivially_copyable<T>::value, "kernel arguments are copied bytewise");
    const size_t align = alignof(T);
    const size_t at = (bytes.size() + align - 1) / align * align;
    bytes.resize(at + sizeof(T));
    std::memcpy(bytes.data() + at, &v, sizeof(T));
    offsets.push_back(at);
    params.push_back(param_info<T>());
    return *this;
  }

  // The argument pointers cudaLaunchKernel and cuLaunchKernel take.
  std::vector<void*> pointers() {
    std::vector<void*> p;
    for (size_t o : offsets) p.push_back(bytes.data() + o);
    return p;
  }
};

// "fastcolor::device::<base><a, b, ...>": the spelling of instances.h.
inline std::string kernel_name(const char* base, std::initializer_list<std::string> targs = {}) {
  std::string s = std::string("fastcolor::device::") + base;
  if (targs.size() == 0) return s;
  s += "<";
  bool first = true;
  for (const auto& t : targs) {
    if (!first) s += ", ";
    s += t;
    first = false;
  }
  return s + ">";
}

// The compiled kernels (CUDA builds): each nvcc-compiled csrc/cuda/<op>.cu
// registers its instantiations at load time.
void register_compiled_kernel(const char* name, const void* fn, std::vector<ParamInfo> params);

}  // namespace fastcolor
