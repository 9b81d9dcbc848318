"""Backend selection: compiled kernels where they exist, else the reference;
importing never fails without the extension."""

import os
import subprocess
import sys
import textwrap

import pytest
import torch

import fastcolor
from fastcolor import ops, reference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_backend_info_is_consistent():
    info = fastcolor.backend_info()
    for key in ("torch", "extension_loaded", "compiled_cpu", "compiled_cuda", "cuda_available", "cpu", "cuda"):
        assert key in info
    assert info["cpu"] == ("kernels" if info["compiled_cpu"] else "reference")
    if not info["cuda_available"]:
        assert info["cuda"] == "unavailable"
    if info["extension_loaded"]:
        assert info["extension_error"] is None and info["built_with_torch"] == torch.__version__


def test_set_backend_switches_to_the_reference(gen, zhang_centres, zhang_weights):
    z = torch.randn(2, 313, 4, 3, generator=gen, requires_grad=True)
    ab = torch.randn(2, 2, 4, 3, generator=gen) * 40
    before = fastcolor.get_backend()
    try:
        fastcolor.set_backend("reference")
        assert fastcolor.backend_info()["cpu"] == "reference"
        loss = ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights)
        assert loss.grad_fn is not None and "fastcolor" not in type(loss.grad_fn).__name__.lower()
        want = reference.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights, 5, 5.0, None, "mean")
        torch.testing.assert_close(loss, want)
    finally:
        fastcolor.set_backend(before)
    with pytest.raises(ValueError, match="backend must be one of"):
        fastcolor.set_backend("triton")


def _run(code, env=None):
    full_env = dict(os.environ, **(env or {}))
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


FALLBACK_SCRIPT = """
    import torch, fastcolor
    from fastcolor import ops, reference
    info = fastcolor.backend_info()
    print(info["extension_loaded"], info["cpu"])
    c = fastcolor.Codebook.zhang313()
    w = fastcolor.rebalance_weights(fastcolor.imagenet_prior())
    g = torch.Generator().manual_seed(1)
    ab = torch.randn(2, 2, 8, 8, generator=g) * 40
    z = torch.randn(2, 313, 2, 2, generator=g, requires_grad=True)
    crit = fastcolor.nn.RebalancedCrossEntropy(c)
    loss = crit(z, ab)
    loss.backward()
    want = reference.rebalanced_cross_entropy(z, ab[..., ::4, ::4], c.centres, w, 5, 5.0, None, "mean")
    assert torch.allclose(loss, want) and torch.isfinite(z.grad).all()
    assert torch.equal(ops.nearest_bin(ab, c), reference.nearest_bin(ab, c.centres))
    assert ops.bin_histogram(ab, c).sum() == 128
    assert torch.allclose(ops.soft_encode(ab, c).sum(1), torch.ones(2, 8, 8))
    out = fastcolor.nn.AnnealedMeanDecoder(c)(z, size=(8, 8))
    assert out.shape == (2, 2, 8, 8)
    try:
        ops.nearest_bin(ab[:, :1], c)
    except ValueError as e:
        print("ValueError", e)
"""


def test_import_and_ops_work_without_the_extension():
    # A None entry in sys.modules makes "from . import _C" raise ImportError,
    # as on a machine where the extension was never built.
    out = _run("import sys; sys.modules['fastcolor._C'] = None\n" + textwrap.dedent(FALLBACK_SCRIPT))
    lines = out.splitlines()
    assert lines[0] == "False reference"
    assert lines[-1].startswith("ValueError nearest_bin: ab must have shape")
    err = _run("import sys; sys.modules['fastcolor._C'] = None\nimport fastcolor\n"
               "print(fastcolor.backend_info()['extension_error'])")
    assert "fastcolor._C" in err and "Error" in err


def test_environment_variable_forces_the_reference():
    out = _run(FALLBACK_SCRIPT, env={"FASTCOLOR_BACKEND": "reference"})
    assert out.splitlines()[0] == f"{fastcolor.backend_info()['extension_loaded']} reference"
