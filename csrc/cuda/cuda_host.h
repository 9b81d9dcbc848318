// Host helpers of the CUDA entry points (csrc/cuda/<op>_cuda.cpp): plain C++
// over ATen, compiled in every build, so that the checks, the planning and
// the argument packing serve both the nvcc-compiled kernels and the JIT.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>
#include <c10/util/Exception.h>

#include <algorithm>
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

// The launch of a per-pixel decode (annealed_mean, temporal_decode): the
// kernel plan picks among <op>_generic_kernel<type>, <op>_warp_kernel<type, R>
// and <op>_tile_kernel<type, R>, with its grid
// and block over `pixels` pixels (a thread per pixel in a grid-stride loop; a
// warp per pixel, 8 per block; a block of 32 pixels by plan.warps warps). The
// dynamic shared memory and the arguments are the caller's.
inline KernelLaunch decode_launch(const char* op, const LaunchPlan& plan, const std::string& type,
                                  int64_t pixels) {
  const std::string b(op);
  if (plan.kind == LaunchPlan::kGeneric) {
    KernelLaunch l(op, kernel_name((b + "_generic_kernel").c_str(), {type}));
    l.set_grid(blocks_for(pixels));
    l.set_block(kThreads);
    return l;
  }
  if (plan.kind == LaunchPlan::kWarp) {
    KernelLaunch l(op, kernel_name((b + "_warp_kernel").c_str(), {type, std::to_string(plan.rows)}));
    const int64_t per_block = kThreads / 32;
    l.set_grid(static_cast<unsigned>(std::min<int64_t>((pixels + per_block - 1) / per_block, 65536)));
    l.set_block(kThreads);
    return l;
  }
  KernelLaunch l(op, kernel_name((b + "_tile_kernel").c_str(), {type, std::to_string(plan.rows)}));
  l.set_grid(static_cast<unsigned>((pixels + 31) / 32));
  l.set_block(32, plan.warps);
  return l;
}

}  // namespace cuda
}  // namespace fastcolor
