"""The JIT's disk cache and its choice of path, without a GPU: a compiled
kernel is stored once and read back; a damaged entry is recompiled, never
used; processes compiling the same kernel at the same time all get a good
entry and leave no temporary file; the key changes with the architecture and
the kernel sources; the FASTCOLOR_CUDA vocabulary is checked."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

import fastcolor
from fastcolor.ops import backend, jit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_cupy = pytest.mark.skipif(importlib.util.find_spec("cupy_backends") is None or not jit.available(),
                                reason="CuPy or the CUDA headers are not installed")
OP, NAME = "nearest_bin", "fastcolor::device::nearest_bin_kernel"  # the quickest kernel to compile


def entries(root):
    return sorted(os.path.join(d, f) for d, _, files in os.walk(root) for f in files)


@needs_cupy
def test_a_damaged_entry_is_recompiled_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCOLOR_CACHE_DIR", str(tmp_path))
    cubin, lowered = jit.cached_cubin(OP, NAME, 75)
    assert cubin[:4] == b"\x7fELF" and lowered.startswith("_Z")
    (path,) = entries(tmp_path)
    assert os.path.basename(os.path.dirname(path)) == "sm_75"
    good = open(path, "rb").read()
    assert jit.cached_cubin(OP, NAME, 75) == (cubin, lowered)  # read back, not recompiled
    for damage in (good[:-100], good[:40], good[:-1] + bytes([good[-1] ^ 1]), b"", b"garbage" * 10):
        with open(path, "wb") as f:
            f.write(damage)
        assert jit.cached_cubin(OP, NAME, 75) == (cubin, lowered)
        assert open(path, "rb").read() == good  # rewritten whole
    assert entries(tmp_path) == [path]


@needs_cupy
def test_the_key_follows_the_architecture_and_the_sources(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTCOLOR_CACHE_DIR", str(tmp_path))
    jit.cached_cubin(OP, NAME, 75)
    jit.cached_cubin(OP, NAME, 80)
    assert [os.path.basename(os.path.dirname(p)) for p in entries(tmp_path)] == ["sm_75", "sm_80"]
    monkeypatch.setattr(jit, "source_digest", lambda: "another version of the kernel headers")
    jit.cached_cubin(OP, NAME, 75)
    assert len(entries(tmp_path)) == 3


@needs_cupy
def test_processes_compiling_the_same_kernel_at_once_all_get_a_good_entry(tmp_path):
    code = textwrap.dedent(f"""
        from fastcolor.ops import jit
        cubin, lowered = jit.cached_cubin({OP!r}, {NAME!r}, 86)
        print(len(cubin), lowered)
    """)
    env = dict(os.environ, FASTCOLOR_CACHE_DIR=str(tmp_path), PYTHONPATH=ROOT)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert len({o for o, _ in outs}) == 1
    (path,) = entries(tmp_path)  # one entry, no temporary file left behind
    assert jit.cached_cubin(OP, NAME, 86)[0][:4] == b"\x7fELF"


@needs_cupy
def test_an_unwritable_cache_costs_a_compile_not_an_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("FASTCOLOR_CACHE_DIR", str(blocker))
    cubin, _ = jit.cached_cubin(OP, NAME, 75)
    assert cubin[:4] == b"\x7fELF"


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.delenv("FASTCOLOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jit.cache_dir() == os.path.join(str(tmp_path), "fastcolor", "kernels")
    monkeypatch.setenv("FASTCOLOR_CACHE_DIR", str(tmp_path / "here"))
    assert jit.cache_dir() == str(tmp_path / "here")


def test_the_kernel_table_is_read_from_the_one_list():
    table = jit.kernel_table()
    assert set(table) >= {"nearest_bin", "soft_encode", "bin_histogram", "annealed_mean",
                          "rebalanced_cross_entropy"}
    for op, names in table.items():
        assert os.path.isfile(os.path.join(jit.kernel_source_dir(), "fastcolor", "device", f"{op}.cuh"))
        assert len(names) == len(set(names)) and all(n.startswith("fastcolor::device::") for n in names)


@pytest.mark.skipif(not fastcolor.backend_info()["extension_loaded"], reason="fastcolor._C is not built")
def test_cuda_path_vocabulary():
    before = backend.backend_info()["cuda_path_requested"]
    try:
        with pytest.raises(ValueError, match="CUDA path must be one of"):
            backend.set_cuda_path("nvcc")
        compiled = backend.compiled_for("cuda")
        assert backend.set_cuda_path("compiled") == ("compiled" if compiled else None)
        assert backend.set_cuda_path("jit") == ("jit" if jit.available() else None)
        assert backend.backend_info()["cuda_path"] == backend.cuda_path()
        assert backend.set_cuda_path("auto") == ("compiled" if compiled else "jit" if jit.available() else None)
    finally:
        backend.set_cuda_path(before)


def test_the_environment_chooses_the_path_and_a_bad_value_is_reported():
    code = ("import fastcolor, json; i = fastcolor.backend_info(); "
            "print(json.dumps([i['cuda_path_requested'], i.get('environment_error')]))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    for value, want in (("jit", "jit"), ("compiled", "compiled"), ("bogus", "auto")):
        env["FASTCOLOR_CUDA"] = value
        out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        requested, error = json.loads(out.stdout.strip().splitlines()[-1])
        assert requested == want
        assert (error is not None) == (value == "bogus")


def test_setup_rejects_an_unknown_cuda_mode():
    env = dict(os.environ, FASTCOLOR_CUDA="nvrtc")
    out = subprocess.run([sys.executable, "setup.py", "--version"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0 and "FASTCOLOR_CUDA must be one of ('auto', 'compiled', 'jit')" in out.stderr


@needs_cupy
def test_the_launch_callback_hands_on_grid_block_stream_and_arguments(monkeypatch):
    """The ctypes callback csrc/launch.cpp calls, called through its C
    prototype with the CUDA driver replaced by a recorder."""
    import ctypes

    from cupy_backends.cuda.api import driver

    calls = []
    monkeypatch.setattr(driver, "ctxGetCurrent", lambda: 1)
    monkeypatch.setattr(driver, "funcSetAttribute", lambda f, attr, value: calls.append(("attr", f, attr, value)))
    monkeypatch.setattr(driver, "launchKernel", lambda *a: calls.append(("launch", *a)))
    monkeypatch.setattr(jit, "loaded_function", lambda device, op, name: ("f", device, op, name))
    grid, block = (ctypes.c_uint * 3)(7, 2, 1), (ctypes.c_uint * 3)(32, 8, 1)
    args = (ctypes.c_void_p * 2)(1234, 5678)
    error = ctypes.create_string_buffer(256)
    rc = jit.LAUNCHER(b"annealed_mean", b"k<float, 8>", grid, block, 50 * 1024, 0xBEEF, 1,
                       ctypes.cast(args, ctypes.c_void_p), 2, ctypes.cast(error, ctypes.c_void_p), 256)
    f = ("f", 1, "annealed_mean", "k<float, 8>")
    assert rc == 0 and error.value == b""
    assert calls == [("attr", f, driver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 50 * 1024),
                     ("launch", f, 7, 2, 1, 32, 8, 1, 50 * 1024, 0xBEEF, ctypes.addressof(args), 0)]

    def fail(*a):
        raise RuntimeError("CUDA_ERROR_INVALID_VALUE")

    monkeypatch.setattr(driver, "launchKernel", fail)
    rc = jit.LAUNCHER(b"nearest_bin", b"k", grid, block, 0, None, 0, None, 0, ctypes.cast(error, ctypes.c_void_p), 256)
    assert rc == 1 and error.value == b"RuntimeError: CUDA_ERROR_INVALID_VALUE"
