// The lookup tables of lookup_build.h, built once per codebook and k and kept
// per device (the host side; ATen, no CUDA headers).
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>

#include "fastcolor/lookup_build.h"

namespace fastcolor {

struct LookupEntry {
  LookupTable host;       // the table; its lists in host memory
  at::Tensor start, idx;  // on the device of the centres (CUDA entries only)
  // The table for a kernel on the centres' device.
  LookupView view() const {
    LookupView v = host.view();
    if (start.defined()) {
      v.start = start.const_data_ptr<int32_t>();
      v.idx = reinterpret_cast<const uint16_t*>(idx.const_data_ptr<int16_t>());
    }
    return v;
  }
};

// The table for centres ((Q, 2) float32 contiguous) and k, from the cache or
// built now. CPU entries are found by content (the centres are compared with
// the copy the table was built from, so an entry can never be stale); CUDA
// entries by the tensor's identity (held through a weak reference, so its
// address cannot be reused), its version counter and data pointer: a change
// through torch's in-place ops makes a new table, reading the centres back
// from the GPU only then. The returned entry stays valid while held.
std::shared_ptr<const LookupEntry> lookup_table(const at::Tensor& centres, int64_t k);

}  // namespace fastcolor
