// Host helpers of the CUDA entry points (csrc/cuda/<op>_cuda.cpp): plain C++
// over ATen, compiled in every build, so that the checks, the planning and
// the argument packing serve both the nvcc-compiled kernels and the JIT.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <c10/util/Exception.h>

#include <string>

#include "fastcolor/launch_plan.h"
#include "fastcolor/launch_select.h"

namespace fastcolor {
namespace cuda {

// The CUDA spelling of a logit dtype, as a template argument of the kernels.
inline std::string type_name(at::ScalarType st) {
  switch (st) {
    case at::kFloat: return "float";
    case at::kHalf: return "__half";
    case at::kBFloat16: return "__nv_bfloat16";
    case at::kDouble: return "double";
    default: TORCH_CHECK(false, "fastcolor: no CUDA kernel for ", st);
  }
  return "";
}

}  // namespace cuda
}  // namespace fastcolor
