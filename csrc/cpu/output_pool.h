// Large CPU outputs, recycled.
//
// glibc maps every allocation over 32 MiB afresh and unmaps it on free, so
// the first write to each page of such an output faults and the kernel
// zeroes the page first. For temporal_decode's new state (Q floats a pixel:
// 41 MiB for 8x313x64x64, 82 MiB a 256x256 video frame) that costs more
// than the op's arithmetic: on this project's CPU, allocating and filling 41
// MiB takes 16.6 ms against ~3 ms for filling it again. The pool keeps a few
// freed outputs (kKept, at most kKeptBytes in all) and hands one out again
// to a request of the same byte size, already mapped; anything else is
// allocated and freed as usual (64-byte aligned, transparent huge pages
// asked for). Thread-safe.
#pragma once

#include <ATen/core/Tensor.h>

namespace fastcolor {
namespace cpu {

// An uninitialised float32 CPU tensor shaped like `like` (its sizes, and its
// strides where it is dense, as at::empty_like), from the pool when it is at
// least kPoolBytes.
at::Tensor pooled_empty_like(const at::Tensor& like);

}  // namespace cpu
}  // namespace fastcolor
