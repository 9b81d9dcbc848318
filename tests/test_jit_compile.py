"""The JIT's compiler, without a GPU: every kernel instantiation the host code
can launch (fastcolor/device/instances.h) compiles with NVRTC, through CuPy's
binding, to CUBIN for every supported architecture with a clean build log, in
a process that can reach no CUDA toolkit (CUDA_HOME and CUDA_PATH unset, no
/usr/local/cuda on any path): only what pip installs, as on a user's machine.

NVRTC needs no driver, so this runs on any machine with the wheels. It costs
about 36 s of CPU per architecture (123 kernels); the
(op, architecture) programs are spread over the CPU cores, and a passing
result is remembered in the JIT's cache directory under a key of the kernel
sources, NVRTC options and NVRTC version, so an unchanged tree is not
compiled twice on one machine.
"""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARCHS = (75, 80, 86, 89, 90, 100)

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cupy_backends") is None,
                                reason="CuPy is not installed (pip install fastcolor[cuda])")

SCRIPT = """
    import hashlib, json, multiprocessing, os, sys
    from fastcolor.ops import jit

    archs = json.loads(sys.argv[1])
    table = jit.kernel_table()

    def build(job):
        op, arch = job
        try:
            cubin, lowered, log = jit.compile_program(op, table[op], arch)
        except RuntimeError as exc:
            return op, arch, str(exc), 0, 0
        return op, arch, log.strip(), len(cubin) if cubin[:4] == b"\\x7fELF" else -1, len(lowered)

    jobs = sorted(((op, a) for op in table for a in archs), key=lambda j: -len(table[j[0]]))
    key = hashlib.sha256(json.dumps([jobs, [jit.compile_options(a) for a in archs]]).encode())
    key.update(jit.source_digest().encode() + jit.nvrtc_version().encode())
    marker = os.path.join(jit.cache_dir(), "verified", key.hexdigest())
    options = " ".join(jit.compile_options(archs[0]))
    if os.path.exists(marker):
        print(json.dumps({"cached": True, "options": options, "results": []}))
        sys.exit(0)
    with multiprocessing.get_context("fork").Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        results = pool.map(build, jobs, chunksize=1)
    if all(not log and size > 0 and n == len(table[op]) for op, _, log, size, n in results):
        os.makedirs(os.path.dirname(marker), exist_ok=True)
        open(marker, "w").close()
    print(json.dumps({"cached": False, "options": options, "results": results}))
"""


def _toolkit_free_env():
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_HOME", "CUDA_PATH", "CUDA_ROOT")}
    for var in ("PATH", "LD_LIBRARY_PATH", "CPATH", "LIBRARY_PATH"):
        if var in env:
            env[var] = os.pathsep.join(p for p in env[var].split(os.pathsep) if "cuda" not in p.lower()
                                       or "site-packages" in p)
    env["PYTHONPATH"] = ROOT
    return env


def test_every_kernel_compiles_for_every_architecture_without_a_toolkit():
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(SCRIPT), json.dumps(ARCHS)], cwd=ROOT,
                          env=_toolkit_free_env(), capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # The headers came from the pip wheels, never from a system toolkit.
    assert "/usr/local/cuda" not in out["options"]
    assert "site-packages" in out["options"] or "dist-packages" in out["options"]
    if out["cached"]:
        return
    from fastcolor.ops import jit

    table = jit.kernel_table()
    assert sum(len(v) for v in table.values()) >= 100
    results = out["results"]
    assert {(op, arch) for op, arch, *_ in results} == {(op, a) for op in table for a in ARCHS}
    for op, arch, log, size, lowered in results:
        assert log == "", f"{op} for sm_{arch}: {log}"
        assert size > 0, f"{op} for sm_{arch}: no CUBIN"
        assert lowered == len(table[op])
