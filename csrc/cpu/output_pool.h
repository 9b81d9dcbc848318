// Large CPU outputs, recycled.
//
// glibc maps every allocation over its mmap threshold (32 MiB at most, often
// less after frees) afresh and gives it back on free, so the first write to
// each page of such an output faults and the kernel zeroes the page first.
// For the ops' logits-sized outputs that can cost more than their
// arithmetic: on this project's CPU, allocating and filling 41 MiB takes 16.6
// ms against ~3 ms for filling it again, and the 32-bin loss's 8 MiB
// gradient took 200-2100 page faults a call (0.5-3 ms) under autograd. The
// pool keeps a few freed outputs (kKept, at most kKeptBytes in all) and hands
// one out again to a request of the same byte size, already mapped; smaller
// requests are allocated as usual. Buffers are 2 MiB aligned with
// transparent huge pages asked for. Thread-safe.
#pragma once

#include <ATen/core/Tensor.h>

namespace fastcolor {
namespace cpu {

// An uninitialised CPU tensor of `dtype` shaped like `like` (its sizes, and
// its strides where it is dense, as at::empty_like), from the pool when it
// holds at least 4 MiB.
at::Tensor pooled_empty_like(const at::Tensor& like, at::ScalarType dtype);

}  // namespace cpu
}  // namespace fastcolor
