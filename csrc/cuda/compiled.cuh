// The nvcc side of the kernel table: csrc/cuda/<op>.cu includes the op's
// device code and FASTCOLOR_COMPILE(<op>) registers every instantiation of
// fastcolor/device/instances.h under its name expression, with its parameter
// signature, when the extension loads. csrc/launch.cpp looks them up by name.
#pragma once

#include <vector>

#include "fastcolor/device/instances.h"
#include "fastcolor/launch.h"

namespace fastcolor {

template <typename... P>
std::vector<ParamInfo> signature_of(void (*)(P...)) {
  return {param_info<P>()...};
}

}  // namespace fastcolor

#define FASTCOLOR_COMPILED_ENTRY(...)                                                  \
  ::fastcolor::register_compiled_kernel(#__VA_ARGS__, reinterpret_cast<const void*>(&__VA_ARGS__), \
                                        ::fastcolor::signature_of(&__VA_ARGS__));

#define FASTCOLOR_COMPILE(op)                          \
  namespace {                                          \
  const bool registered_##op = [] {                    \
    FASTCOLOR_KERNELS_##op(FASTCOLOR_COMPILED_ENTRY)   \
    return true;                                       \
  }();                                                 \
  }
