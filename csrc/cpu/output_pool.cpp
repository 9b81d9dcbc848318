#include "output_pool.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <c10/util/Exception.h>

#include <cstdlib>
#include <mutex>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace fastcolor {
namespace cpu {
namespace {

constexpr size_t kPoolBytes = size_t(4) << 20;    // smaller ones stay on glibc's heap
constexpr size_t kKept = 4;                        // buffers kept at most
constexpr size_t kKeptBytes = size_t(512) << 20;  // bytes kept at most

struct Buffer {
  void* ptr;
  size_t bytes;
};

struct Pool {
  std::mutex mu;
  std::vector<Buffer> kept;  // most recently freed last
  size_t kept_bytes = 0;
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: tensors may outlive static destruction
  return *p;
}

void* take(size_t bytes) {
  Pool& p = pool();
  {
    std::lock_guard<std::mutex> lock(p.mu);
    for (size_t i = p.kept.size(); i-- > 0;) {
      if (p.kept[i].bytes == bytes) {
        void* ptr = p.kept[i].ptr;
        p.kept.erase(p.kept.begin() + static_cast<std::ptrdiff_t>(i));
        p.kept_bytes -= bytes;
        return ptr;
      }
    }
  }
  void* ptr = nullptr;
  TORCH_CHECK(posix_memalign(&ptr, 2 << 20, bytes) == 0 && ptr != nullptr,
              "fastcolor: out of memory allocating ", bytes, " bytes");
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(ptr, bytes & ~size_t(4095), MADV_HUGEPAGE);  // a hint; ignored where THP is off
#endif
  return ptr;
}

// The deleter of a pooled tensor's storage: keep the buffer, evicting the
// oldest kept ones beyond the limits.
void give_back(void* ctx) {
  auto* b = static_cast<Buffer*>(ctx);
  std::vector<void*> drop;
  {
    Pool& p = pool();
    std::lock_guard<std::mutex> lock(p.mu);
    p.kept.push_back(*b);
    p.kept_bytes += b->bytes;
    while (!p.kept.empty() && (p.kept.size() > kKept || p.kept_bytes > kKeptBytes)) {
      drop.push_back(p.kept.front().ptr);
      p.kept_bytes -= p.kept.front().bytes;
      p.kept.erase(p.kept.begin());
    }
  }
  for (void* ptr : drop) std::free(ptr);
  delete b;
}

}  // namespace

at::Tensor pooled_empty_like(const at::Tensor& like, at::ScalarType dtype) {
  const auto opts = like.options().dtype(dtype);
  const at::Tensor shape = at::empty_like(like, opts.device(at::kMeta));
  const size_t bytes = static_cast<size_t>(shape.storage().nbytes());
  if (bytes < kPoolBytes) return at::empty_like(like, opts);
  auto* b = new Buffer{take(bytes), bytes};
  at::Storage storage(at::Storage::use_byte_size_t(), bytes,
                      at::DataPtr(b->ptr, b, &give_back, at::Device(at::kCPU)),
                      /*allocator=*/nullptr, /*resizable=*/false);
  return at::empty({0}, opts).set_(storage, 0, shape.sizes(), shape.strides());
}

}  // namespace cpu
}  // namespace fastcolor
