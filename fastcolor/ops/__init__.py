"""The op layer: fastcolor's ops, each with three implementations.

* ``fastcolor.ops`` (this package): the functional API. Each function checks
  its arguments, then runs the compiled kernel for the tensors' device (C++
  on the CPU, CUDA on the GPU) or the pure-PyTorch reference.
* ``fastcolor.ops.reference``: the reference, which is also the specification.
* ``fastcolor.ops.backend``: loading the extension, choosing the backend and
  the CUDA path (compiled or JIT), reporting what runs where (``backend_info``).
* ``fastcolor.ops.jit``: the CUDA kernels compiled at first use through CuPy
  (NVRTC), where nvcc did not build them.
* ``fastcolor.ops.limits``: the limits shared with the kernels.
* ``fastcolor.ops.temporal``: temporal_decode, the per-frame step of video
  colorization's temporal filtering (inference only).
"""

from . import backend, reference
from .backend import BACKENDS, backend_info, get_backend, set_backend
from .functional import annealed_mean, bin_histogram, nearest_bin, rebalanced_cross_entropy, soft_encode
from .limits import MAX_BINS, MAX_K
from .temporal import temporal_decode

__all__ = [
    "BACKENDS",
    "MAX_BINS",
    "MAX_K",
    "annealed_mean",
    "backend",
    "backend_info",
    "bin_histogram",
    "get_backend",
    "nearest_bin",
    "rebalanced_cross_entropy",
    "reference",
    "set_backend",
    "soft_encode",
    "temporal_decode",
]
