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

On CUDA tensors the kernels run by one of two paths, chosen by
FASTCOLOR_CUDA (the variable setup.py reads at build time) or set_cuda_path():

* ``"auto"`` (default): the kernels nvcc compiled into the extension where
  there are some, else the JIT (fastcolor.ops.jit: the same kernel sources
  compiled at first use through CuPy), else the reference;
* ``"compiled"``: only the compiled kernels (the reference without them);
* ``"jit"``: the JIT even where compiled kernels exist (the reference
  without CuPy).

FASTCOLOR_BACKEND=reference (or backend="reference") wins over all three:
it never runs a kernel.
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

__all__ = ["BACKENDS", "CUDA_PATHS", "backend_info", "compiled_for", "cuda_path", "extension_loaded",
           "get_backend", "resolve", "set_backend", "set_cuda_path", "use_kernels"]

BACKENDS = ("kernels", "reference")
CUDA_PATHS = ("auto", "compiled", "jit")


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


# What the extension compiled: C++ CPU kernels, nvcc-compiled CUDA kernels.
_BUILT = {"cpu": _registered("CPU"),
          "cuda": hasattr(_C, "compiled_kernels") and bool(_C.compiled_kernels())}
# Whether ops on each device type run kernels (compiled or JIT): updated by
# set_cuda_path, read as a plain dict lookup (which torch.compile can trace).
_COMPILED = {"cpu": _BUILT["cpu"], "cuda": False}
_cuda = {"requested": "auto", "path": None, "why": None}


def _cuda_from_environment():
    value = os.environ.get("FASTCOLOR_CUDA", "").strip().lower()
    if value in ("", "auto"):
        return "auto", None
    if value in CUDA_PATHS:
        return value, None
    return "auto", f"FASTCOLOR_CUDA={value!r} is not one of {CUDA_PATHS}; using 'auto'"


def set_cuda_path(name):
    """Which kernels run on CUDA tensors: "auto", "compiled" or "jit" (see the
    module docstring). Returns the path now in use ("compiled", "jit" or None
    for the reference)."""
    if name not in CUDA_PATHS:
        raise ValueError(f"the CUDA path must be one of {CUDA_PATHS}, got {name!r}")
    from . import jit

    path, why = None, None
    if not hasattr(_C, "prefer_jit"):  # not loaded, or built from older sources
        why = "the extension is not loaded" if _C is None else "the extension predates the JIT; rebuild it"
    elif name != "jit" and _BUILT["cuda"]:
        path = "compiled"
    elif name == "compiled":
        why = "this build has no compiled CUDA kernels (FASTCOLOR_CUDA=compiled)"
    else:
        why = jit.unavailable_reason()
        path = "jit" if why is None else None
    if hasattr(_C, "prefer_jit"):
        if path == "jit":
            jit.install(_C)
        _C.prefer_jit(path == "jit")
    _cuda.update(requested=name, path=path, why=why)
    _COMPILED["cuda"] = path is not None
    return path


def cuda_path():
    """The kernels CUDA tensors run on now: "compiled", "jit", or None (the reference)."""
    return _cuda["path"]


def compiled_for(device_type):
    """Whether the extension has nvcc/C++-compiled kernels for this device
    type ("cpu", "cuda"); the JIT does not count."""
    return _BUILT.get(device_type, False)


def resolve(backend=None):
    """The backend a call runs with: ``backend`` itself, checked, or the
    process default when it is None."""
    return _default if backend is None else _check(backend)


def use_kernels(device_type, backend=None):
    """Whether an op on tensors of this device type, asked for ``backend``,
    runs fastcolor's kernels (compiled, or the JIT's on CUDA)."""
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


def _jit_cache():
    from . import jit

    return jit.cache_dir()


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
        # The CUDA kernels' path (FASTCOLOR_CUDA / set_cuda_path): requested,
        # in use ("compiled", "jit" or None), and why not the JIT or compiled
        # kernels where they were asked for but cannot run.
        "cuda_path_requested": _cuda["requested"],
        "cuda_path": _cuda["path"],
        "cuda_path_note": _cuda["why"],
        "jit_cache": _jit_cache(),
    }
    errors = [e for e in (_ENV_ERROR, _CUDA_ENV_ERROR) if e]
    if errors:
        info["environment_error"] = "; ".join(errors)
    return info


_requested, _CUDA_ENV_ERROR = _cuda_from_environment()
set_cuda_path(_requested)
