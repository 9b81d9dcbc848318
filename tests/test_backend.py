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
        want = reference.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights, pixel_weight=None, k=5, sigma=5.0, reduction="mean")
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
    want = reference.rebalanced_cross_entropy(z, ab[..., ::4, ::4], c.centres, w, k=5, sigma=5.0, reduction="mean")
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


# ------------------------------------------------------------ explicit backends


def test_backend_keyword_overrides_the_default_without_changing_it(gen, zhang_centres, zhang_weights, monkeypatch):
    seen = []
    real = fastcolor.ops.backend.use_kernels
    monkeypatch.setattr(fastcolor.ops.backend, "use_kernels",
                        lambda device, backend=None: seen.append(backend) or real(device, backend))
    z = torch.randn(1, 313, 3, 2, generator=gen)
    ab = torch.randn(1, 2, 3, 2, generator=gen) * 30
    before = fastcolor.get_backend()
    ops.annealed_mean(z, zhang_centres, 0.5, backend="reference")
    ops.nearest_bin(ab, zhang_centres, backend="reference")
    ops.soft_encode(ab, zhang_centres, backend="kernels")
    ops.bin_histogram(ab, zhang_centres, backend="reference")
    ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights, backend="reference")
    assert seen == ["reference", "reference", "kernels", "reference", "reference"]
    assert fastcolor.get_backend() == before
    with pytest.raises(ValueError, match="backend must be one of"):
        ops.nearest_bin(ab, zhang_centres, backend="fused")
    with pytest.raises(ValueError, match="backend must be one of"):
        fastcolor.nn.AnnealedMeanDecoder(backend="cuda")


def test_rebalanced_cross_entropy_takes_one_argument_order(gen, zhang_centres, zhang_weights):
    """ops and reference share the schema's order; everything after class_weights is keyword-only."""
    import inspect

    want = ["logits", "ab", "centres", "class_weights", "pixel_weight", "k", "sigma", "reduction"]
    for f in (ops.rebalanced_cross_entropy, reference.rebalanced_cross_entropy):
        params = inspect.signature(f).parameters
        assert [p for p in params if p != "backend"] == want
        assert all(params[p].kind is inspect.Parameter.KEYWORD_ONLY for p in want[4:])
    schema = str(torch.ops.fastcolor.rebalanced_cross_entropy.default._schema) if ops.backend.extension_loaded() \
        else None
    if schema is not None:
        names = [a.name for a in torch.ops.fastcolor.rebalanced_cross_entropy.default._schema.arguments]
        assert names[:len(want)] == want
    z = torch.randn(1, 313, 2, 2, generator=gen)
    ab = torch.randn(1, 2, 2, 2, generator=gen) * 30
    with pytest.raises(TypeError):
        ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights, 5)


@pytest.mark.skipif(not fastcolor.backend_info()["compiled_cpu"], reason="fastcolor._C has no CPU kernels")
def test_two_colorizers_with_different_backends_in_two_threads(monkeypatch):
    """Each Colorizer keeps its backend: with both threads held inside an op at
    the same moment (a barrier in the patched backend choice), the one built
    with backend="reference" runs the reference and the other the kernels."""
    import threading

    from fastcolor.inference import Colorizer
    from fastcolor.models import build_model

    barrier = threading.Barrier(2, timeout=60)
    ran = {}
    real = fastcolor.ops.backend.use_kernels

    def use_kernels(device, backend=None):
        barrier.wait()  # both threads are inside the decode now
        choice = real(device, backend)
        ran[threading.current_thread().name] = choice
        return choice

    torch.manual_seed(0)
    model = build_model("eccv16", 313, width=0.125)
    codebook = fastcolor.Codebook.zhang313()
    image = torch.rand(3, 40, 48, generator=torch.Generator().manual_seed(3))
    colorizers = {name: Colorizer(model, codebook, {"temperature": 0.5}, device="cpu", backend=name)
                  for name in ("kernels", "reference")}
    want = {name: c.colorize(image).chroma for name, c in colorizers.items()}
    before = fastcolor.get_backend()
    monkeypatch.setattr(fastcolor.ops.backend, "use_kernels", use_kernels)
    got, errors = {}, []

    def work(name):
        try:
            got[name] = colorizers[name].colorize(image).chroma
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,), name=n) for n in colorizers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert ran == {"kernels": True, "reference": False}
    for name in colorizers:
        assert torch.equal(got[name], want[name])
    assert fastcolor.get_backend() == before
