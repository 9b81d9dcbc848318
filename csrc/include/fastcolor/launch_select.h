// The launch paths of csrc/launch.cpp (host side, ATen-free but for
// c10::Device).
#pragma once

#include <c10/core/Device.h>

#include <string>
#include <utility>
#include <vector>

#include "fastcolor/launch.h"

namespace fastcolor {

// The JIT's entry point, a C function fastcolor/ops/jit.py makes with ctypes:
// returns 0 when the kernel was launched, else writes why into error.
using JitLauncher = int (*)(const char* op, const char* kernel, const unsigned* grid,
                            const unsigned* block, size_t smem, void* stream, int device,
                            void** args, int nargs, char* error, size_t error_size);

// Launches l on the current stream of device (a CUDA device): through the JIT
// when a launcher is set and preferred or nothing was compiled, else the
// compiled kernel of that name, its signature checked against the packing.
void launch_kernel(KernelLaunch& l, const c10::Device& device);

void set_jit_launcher(JitLauncher f);  // nullptr: none
void prefer_jit(bool on);              // even where compiled kernels exist
bool jit_is_preferred();
bool has_compiled_kernels();
std::vector<std::pair<std::string, std::vector<ParamInfo>>> compiled_kernels();
// While set (non-null) for this thread, launches are appended there instead.
void record_launches(std::vector<KernelLaunch>* into);

}  // namespace fastcolor
