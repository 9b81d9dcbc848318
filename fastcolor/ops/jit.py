"""The JIT path: fastcolor's CUDA kernels compiled at first use through CuPy.

The device code of every CUDA kernel lives in torch-free headers
(csrc/include/fastcolor/device/<op>.cuh) that nvcc compiles into the extension
when a CUDA toolkit is there at build time. Without one, this module compiles
the same headers with NVRTC (CuPy's binding, headers from the nvidia pip
wheels; no nvcc, no CUDA toolkit) for the device's exact architecture, one
kernel instantiation at a time, when an op first needs it.

The C++ extension keeps everything else: the argument checks, the output
allocation, the lookup tables, the launch planning (grid, block, shared
memory) and the packed arguments (csrc/cuda/<op>_cuda.cpp). It hands each
planned launch to the function this module installs (a ctypes callback,
csrc/launch.cpp), which loads the kernel and launches it with the CUDA driver
on torch's current stream, on the tensors' own memory. So the JIT path has the
same ops, checks, autograd and fake kernels as the compiled one.

Compiled kernels are cached on disk: FASTCOLOR_CACHE_DIR, else
$XDG_CACHE_HOME/fastcolor/kernels, else ~/.cache/fastcolor/kernels. An entry
is keyed by the SHA-256 of the kernel headers, the kernel's name, the NVRTC
options (architecture and limits included) and the NVRTC version; it carries
a digest of its contents and is rebuilt, never trusted, when that does not
match. Entries are written to a temporary file and renamed into place, so
processes compiling the same kernel at the same time never read half a file.
"""

import ctypes
import functools
import hashlib
import importlib.util
import os
import re
import tempfile
import threading
import traceback

from . import limits

__all__ = ["LAUNCHER", "available", "cache_dir", "cached_cubin", "compile_options", "compile_program",
           "cuda_include_dir", "install", "kernel_source_dir", "kernel_table", "loaded_function", "nvrtc_version",
           "source_digest", "unavailable_reason", "warm_cache"]

_MAGIC = b"FASTCOLOR-CUBIN-1\n"
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def kernel_source_dir():
    """The directory holding fastcolor/device/*.cuh: the repository's
    csrc/include in a checkout (editable install), else the copy setup.py
    ships inside the package (fastcolor/cuda_src)."""
    for d in (os.path.join(os.path.dirname(_PACKAGE), "csrc", "include"), os.path.join(_PACKAGE, "cuda_src")):
        if os.path.isfile(os.path.join(d, "fastcolor", "device", "instances.h")):
            return d
    raise FileNotFoundError("fastcolor's kernel headers (fastcolor/device/*.cuh) are neither in csrc/include "
                            "nor in the package's cuda_src; reinstall fastcolor")


@functools.lru_cache(maxsize=None)
def kernel_table():
    """{op: [name expression, ...]}: every kernel instantiation the host code
    can launch, read from fastcolor/device/instances.h (the one list, which
    nvcc's build compiles too)."""
    path = os.path.join(kernel_source_dir(), "fastcolor", "device", "instances.h")
    with open(path) as f:
        text = f.read()
    table = {}
    for block in re.finditer(r"#define FASTCOLOR_KERNELS_(\w+)\(X\)((?:[^\n]*\\\n)*[^\n]*)", text):
        names = re.findall(r"X\((.+?)\)\s*(?:\\|$)", block.group(2), flags=re.M)
        table[block.group(1)] = names
    if not table:
        raise RuntimeError(f"{path} lists no kernels")
    return table


@functools.lru_cache(maxsize=None)
def source_digest():
    """SHA-256 over every kernel header (path and contents)."""
    root = os.path.join(kernel_source_dir(), "fastcolor")
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read() + b"\0")
    return h.hexdigest()


def cuda_include_dir():
    """The directory of cuda_fp16.h / cuda_bf16.h: from the nvidia pip wheels
    (CUDA 13: nvidia/cu13/include; CUDA 12: nvidia/cuda_runtime/include),
    else $CUDA_PATH or $CUDA_HOME's include; None if none has them."""
    candidates = []
    spec = importlib.util.find_spec("nvidia")
    if spec is not None:
        for base in spec.submodule_search_locations or ():
            candidates += [os.path.join(base, "cu13", "include"), os.path.join(base, "cuda_runtime", "include")]
    for var in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(var):
            candidates.append(os.path.join(os.environ[var], "include"))
    for d in candidates:
        if os.path.isfile(os.path.join(d, "cuda_fp16.h")) and os.path.isfile(os.path.join(d, "cuda_bf16.h")):
            return d
    return None


def compile_options(arch):
    """NVRTC options for compute capability ``arch`` (e.g. 90): the flags the
    nvcc build uses that change code (limits, half/bfloat16 conversions only
    through explicit intrinsics), and the include paths."""
    cuda_inc = cuda_include_dir()
    if cuda_inc is None:
        raise RuntimeError("the CUDA headers (cuda_fp16.h) were not found: pip install cupy-cuda13x[ctk] "
                           "(or set CUDA_PATH to a CUDA toolkit)")
    return [f"-arch=sm_{arch}", "-std=c++17",
            f"-DFASTCOLOR_MAX_K={limits.MAX_K}", f"-DFASTCOLOR_MAX_BINS={limits.MAX_BINS}",
            "-D__CUDA_NO_HALF_OPERATORS__", "-D__CUDA_NO_HALF_CONVERSIONS__",
            "-D__CUDA_NO_BFLOAT16_CONVERSIONS__", "-D__CUDA_NO_HALF2_OPERATORS__",
            f"-I{kernel_source_dir()}", f"-I{cuda_inc}"]


def compile_program(op, names, arch):
    """Compiles instantiations ``names`` of fastcolor/device/<op>.cuh with
    NVRTC to one CUBIN for sm_``arch``; needs no GPU and no driver. Returns
    (cubin bytes, {name: lowered name}, build log); raises RuntimeError with
    the log when NVRTC fails."""
    from cupy_backends.cuda.libs import nvrtc

    source = f'#include "fastcolor/device/{op}.cuh"\n'
    prog = nvrtc.createProgram(source, f"{op}.cu", [], [])
    try:
        for name in names:
            nvrtc.addNameExpression(prog, name)
        try:
            nvrtc.compileProgram(prog, compile_options(arch))
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC could not compile {op} ({len(names)} kernels) for sm_{arch}: {exc}\n"
                               f"{nvrtc.getProgramLog(prog)}") from None
        lowered = {name: nvrtc.getLoweredName(prog, name) for name in names}
        return bytes(nvrtc.getCUBIN(prog)), lowered, nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)


def cache_dir():
    """Where compiled kernels are kept (see the module docstring)."""
    if os.environ.get("FASTCOLOR_CACHE_DIR"):
        return os.environ["FASTCOLOR_CACHE_DIR"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastcolor", "kernels")


def nvrtc_version():
    from cupy_backends.cuda.libs import nvrtc

    return "%d.%d" % nvrtc.getVersion()


def _cache_key(op, name, arch):
    h = hashlib.sha256()
    for part in (source_digest(), op, name, " ".join(compile_options(arch)), nvrtc_version()):
        h.update(part.encode() + b"\0")
    return h.hexdigest()


def _read_entry(path):
    """(cubin, lowered name) of a cache file, or None if it is missing or
    damaged (wrong header, wrong digest, truncated)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(_MAGIC) + 32
    if len(data) <= head or not data.startswith(_MAGIC):
        return None
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(_MAGIC):head]:
        return None
    lowered, sep, cubin = payload.partition(b"\0")
    return (cubin, lowered.decode()) if sep and cubin else None


def _write_entry(path, cubin, lowered):
    payload = lowered.encode() + b"\0" + cubin
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)  # atomic: readers see the old file or the whole new one
    except BaseException:
        os.unlink(tmp)
        raise


def cached_cubin(op, name, arch):
    """(cubin, lowered name) from the disk cache, compiled and stored first
    when missing or damaged. A cache directory that cannot be written only
    costs a compile per process."""
    path = os.path.join(cache_dir(), f"sm_{arch}", _cache_key(op, name, arch) + ".cubin")
    entry = _read_entry(path)
    if entry is not None:
        return entry
    cubin, lowered, _ = compile_program(op, [name], arch)
    lowered = lowered[name]
    try:
        _write_entry(path, cubin, lowered)
    except OSError:
        pass
    return cubin, lowered


class _Loaded:
    """Kernels loaded into the CUDA contexts of this process, by (device, op, name)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.functions = {}
        self.modules = []  # kept: unloading a module would invalidate its function

    def function(self, device, op, name):
        key = (device, op, name)
        f = self.functions.get(key)
        if f is not None:
            return f
        with self.lock:
            f = self.functions.get(key)
            if f is None:
                import torch
                from cupy_backends.cuda.api import driver

                major, minor = torch.cuda.get_device_capability(device)
                cubin, lowered = cached_cubin(op, name, major * 10 + minor)
                module = driver.moduleLoadData(cubin)
                self.modules.append(module)
                f = driver.moduleGetFunction(module, lowered)
                self.functions[key] = f
        return f


_LOADED = _Loaded()


def loaded_function(device, op, name):
    """The CUfunction of kernel ``name`` loaded on CUDA device ``device``
    (compiled or read from the disk cache on first use)."""
    return _LOADED.function(device, op, name)

_LAUNCHER_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_uint),
                                  ctypes.POINTER(ctypes.c_uint), ctypes.c_size_t, ctypes.c_void_p, ctypes.c_int,
                                  ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)


def _launch(op, name, grid, block, smem, stream, device, args, nargs, error, error_size):
    """The callback csrc/launch.cpp calls for every launch on the JIT path."""
    try:
        from cupy_backends.cuda.api import driver, runtime

        if driver.ctxGetCurrent() == 0:
            # A thread on which the CUDA runtime has not bound a context yet
            # (torch skips setting a device that is already current): bind the
            # device's primary context, the one torch uses.
            runtime.setDevice(device)
        f = loaded_function(device, op.decode(), name.decode())
        if smem > 48 * 1024:  # dynamic shared memory above 48 KiB must be opted into
            driver.funcSetAttribute(f, driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, smem)
        driver.launchKernel(f, grid[0], grid[1], grid[2], block[0], block[1], block[2], smem, stream or 0,
                            args or 0, 0)
        return 0
    except Exception as exc:  # the C++ side raises it as a torch error
        message = f"{type(exc).__name__}: {exc}".encode()[: max(0, error_size - 1)]
        if error:
            ctypes.memmove(error, message + b"\0", len(message) + 1)
        if os.environ.get("FASTCOLOR_JIT_DEBUG"):
            traceback.print_exc()
        return 1


# The launch function as a C function pointer (csrc/launch_select.h's
# JitLauncher), kept alive for as long as the module.
LAUNCHER = _LAUNCHER_TYPE(_launch)


def unavailable_reason():
    """Why the JIT cannot run here (a sentence), or None when it can: CuPy
    and the CUDA headers must be installed. Cheap: imports nothing."""
    if importlib.util.find_spec("cupy_backends") is None:
        return "CuPy is not installed (pip install fastcolor[cuda], i.e. cupy-cuda13x[ctk])"
    if cuda_include_dir() is None:
        return "the CUDA headers (cuda_fp16.h) were not found (pip install cupy-cuda13x[ctk])"
    return None


def available():
    return unavailable_reason() is None


def install(extension):
    """Hands the JIT's launch function to the extension (fastcolor._C)."""
    extension.set_jit_launcher(ctypes.cast(LAUNCHER, ctypes.c_void_p).value)


def _warm_one(job):
    op, name, arch = job
    cached_cubin(op, name, arch)
    return name


def warm_cache(arch, processes=None):
    """Compiles every kernel of the table for sm_``arch`` into the disk cache
    (those already there are only checked), over ``processes`` processes
    (default: all cores). Returns the number of kernels. Needs no GPU."""
    import concurrent.futures
    import multiprocessing

    jobs = [(op, name, arch) for op, names in kernel_table().items() for name in names]
    with concurrent.futures.ProcessPoolExecutor(processes or os.cpu_count() or 1,
                                                mp_context=multiprocessing.get_context("spawn")) as pool:
        return len(list(pool.map(_warm_one, jobs)))
