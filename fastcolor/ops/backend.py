"""Which implementation of the ops runs: compiled kernels or the reference.

Importing never fails: if the extension fastcolor._C is missing or does not
load (not built, built against another torch), every op falls back to the
pure-PyTorch reference, and backend_info() says why. FASTCOLOR_BACKEND=reference
in the environment, or set_backend("reference"), forces the reference even
when the kernels are there (for comparisons and debugging).
"""

import os

import torch

try:
    from .. import _C  # noqa: F401  (importing it registers torch.ops.fastcolor)

    _LOAD_ERROR = None
except (ImportError, OSError) as exc:  # not built, or built for another torch
    _C = None
    _LOAD_ERROR = f"{type(exc).__name__}: {exc}"

try:
    from .. import _build_info
except ImportError:
    _build_info = None

BACKENDS = ("kernels", "reference")
_backend = "reference" if os.environ.get("FASTCOLOR_BACKEND", "").lower() == "reference" else "kernels"
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def extension_loaded():
    return _C is not None


def _registered(key):
    return _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key("fastcolor::nearest_bin", key)


# Read once: a plain dict lookup is what torch.compile can trace.
_COMPILED = {device: _registered(key) for device, key in _DISPATCH_KEYS.items()}


def compiled_for(device_type):
    """Whether the extension has kernels for this device type ("cpu", "cuda")."""
    return _COMPILED.get(device_type, False)


def use_kernels(device_type):
    """Whether ops on tensors of this device type run the compiled kernels."""
    return _backend == "kernels" and _COMPILED.get(device_type, False)


def set_backend(name):
    """Choose "kernels" (the default: compiled kernels where they exist, the
    reference elsewhere) or "reference" (always the pure-PyTorch reference)."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend():
    return _backend


def backend_info():
    """What was compiled, what can run here, and what each device will use."""
    cuda_ok = torch.cuda.is_available()
    info = {
        "torch": torch.__version__,
        "extension_loaded": _C is not None,
        "extension_error": _LOAD_ERROR,
        "built_with_torch": getattr(_build_info, "TORCH_VERSION", None),
        "compiled_cpu": compiled_for("cpu"),
        "compiled_cuda": compiled_for("cuda"),
        "cuda_archs": getattr(_build_info, "CUDA_ARCHS", None),
        "cuda_available": cuda_ok,
        "cuda_device": torch.cuda.get_device_name() if cuda_ok else None,
        "cpu_threads": torch.get_num_threads(),
        "backend": _backend,
        "cpu": "kernels" if use_kernels("cpu") else "reference",
        "cuda": ("kernels" if use_kernels("cuda") else "reference") if cuda_ok else "unavailable",
    }
    return info
