"""Which implementation of the ops runs: the compiled kernels or the reference.

One vocabulary, everywhere (op keyword, layer attribute, Colorizer field,
``--backend`` on the command line, training config):

* ``"kernels"``: the compiled C++ (CPU) and CUDA kernels of fastcolor._C,
  wherever the extension has them for the tensors' device; the reference
  elsewhere;
* ``"reference"``: always the pure-PyTorch reference (fastcolor.ops.reference).

Every op takes ``backend=`` explicitly; ``None`` means the process default,
which is "kernels" unless the environment variable FASTCOLOR_BACKEND says
"reference" or set_backend() changed it. Passing the backend explicitly never
touches the default, so two threads (two Colorizers, say) with different
backends do not interfere.

Importing never fails: if the extension is missing or does not load (not
built, built against another torch), every op falls back to the reference,
and backend_info() says why.
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

__all__ = ["BACKENDS", "backend_info", "compiled_for", "extension_loaded", "get_backend", "resolve",
           "set_backend", "use_kernels"]

BACKENDS = ("kernels", "reference")
_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def _check(name):
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS} (or None for the default), got {name!r}")
    return name


def _from_environment():
    value = os.environ.get("FASTCOLOR_BACKEND", "").strip().lower()
    if value in ("", "kernels"):
        return "kernels", None
    if value == "reference":
        return "reference", None
    # Importing never fails: an unknown value is reported, not raised.
    return "kernels", f"FASTCOLOR_BACKEND={value!r} is not one of {BACKENDS}; using 'kernels'"


_default, _ENV_ERROR = _from_environment()


def extension_loaded():
    return _C is not None


def _registered(key):
    return _C is not None and torch._C._dispatch_has_kernel_for_dispatch_key("fastcolor::nearest_bin", key)


# Read once: a plain dict lookup is what torch.compile can trace.
_COMPILED = {device: _registered(key) for device, key in _DISPATCH_KEYS.items()}


def compiled_for(device_type):
    """Whether the extension has kernels for this device type ("cpu", "cuda")."""
    return _COMPILED.get(device_type, False)


def resolve(backend=None):
    """The backend a call runs with: ``backend`` itself, checked, or the
    process default when it is None."""
    return _default if backend is None else _check(backend)


def use_kernels(device_type, backend=None):
    """Whether an op on tensors of this device type, asked for ``backend``,
    runs the compiled kernels."""
    return resolve(backend) == "kernels" and _COMPILED.get(device_type, False)


def set_backend(name):
    """Set the process default: "kernels" (compiled kernels where they exist,
    the reference elsewhere) or "reference". Calls that pass backend= are not
    affected."""
    global _default
    _default = _check(name)


def get_backend():
    """The process default backend ("kernels" or "reference")."""
    return _default


def backend_info():
    """What was compiled, what can run here, and what each device will use
    under the default backend."""
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
        "backend": _default,
        "cpu": "kernels" if use_kernels("cpu") else "reference",
        "cuda": ("kernels" if use_kernels("cuda") else "reference") if cuda_ok else "unavailable",
    }
    if _ENV_ERROR:
        info["environment_error"] = _ENV_ERROR
    return info
