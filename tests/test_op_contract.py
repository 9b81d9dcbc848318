"""The op contract holds on both backends for every class of input.

Each case runs through fastcolor.ops once with backend="kernels" and once with
backend="reference": either both raise the same error (type and message), or
both return the same result (NaN where the other has NaN, values and
gradients equal within float32 rounding). The classes: ordinary values,
extreme temperatures, logits of -inf / NaN / huge magnitude, empty batches,
gradients asked of every argument, double backward, integer-like k. The
contract itself is written in docs/design.md, section 3.
"""

import numpy as np
import pytest
import torch

import fastcolor
from fastcolor import ops

pytestmark = pytest.mark.skipif(not fastcolor.backend_info()["compiled_cpu"],
                                reason="fastcolor._C has no CPU kernels: there is only one backend here")

BACKENDS = ("kernels", "reference")


def _run(fn):
    """('ok', result) or ('error', (type name, message)) of fn()."""
    try:
        return "ok", fn()
    except (ValueError, TypeError, RuntimeError) as exc:
        return "error", (type(exc).__name__, str(exc))


def _assert_agree(outcomes, atol=1e-4, rtol=1e-4):
    (ka, kr), (ra, rr) = outcomes["kernels"], outcomes["reference"]
    assert ka == ra, f"kernels: {ka} {kr if ka == 'error' else ''} / reference: {ra} {rr if ra == 'error' else ''}"
    if ka == "error":
        assert kr == rr
        return
    kr = kr if isinstance(kr, tuple) else (kr,)
    rr = rr if isinstance(rr, tuple) else (rr,)
    for a, b in zip(kr, rr):
        if a is None or b is None:
            assert a is None and b is None
            continue
        assert a.shape == b.shape and a.dtype == b.dtype
        # float32 sums of hundreds of terms: absolute errors scale with the largest magnitude
        finite = b[torch.isfinite(b)] if b.is_floating_point() else b
        scale = float(finite.abs().max()) if finite.numel() and b.is_floating_point() else 0.0
        torch.testing.assert_close(a, b, atol=max(atol, 2e-5 * scale), rtol=rtol, equal_nan=True)


def _loss_and_grad(backend, z, ab, c, w, **kw):
    z = z.detach().clone().requires_grad_(True)
    loss = ops.rebalanced_cross_entropy(z, ab, c, w, backend=backend, **kw)
    (g,) = torch.autograd.grad(loss.sum(), z)
    return loss.detach(), g


def _decode_and_grad(backend, z, c, t):
    z = z.detach().clone().requires_grad_(True)
    ab = ops.annealed_mean(z, c, t, backend=backend)
    (g,) = torch.autograd.grad(ab.sum(), z)
    return ab.detach(), g


@pytest.fixture
def inputs(gen, zhang_centres, zhang_weights):
    z = torch.randn(2, 313, 5, 3, generator=gen) * 3
    ab = (torch.rand(2, 2, 5, 3, generator=gen) - 0.5) * 160
    return z, ab, zhang_centres, zhang_weights


def test_logits_of_minus_infinity_outside_the_targets(inputs):
    z, ab, c, w = inputs
    z = z.clone()
    # each pixel's farthest bin: never among its k = 5 targets
    far = fastcolor.ops.reference.squared_distances(ab, c).argmax(dim=1)
    z.scatter_(1, far[:, None], -float("inf"))
    outcomes = {b: _run(lambda b=b: _loss_and_grad(b, z, ab, c, w, reduction="none")) for b in BACKENDS}
    _assert_agree(outcomes)
    assert torch.isfinite(outcomes["kernels"][1][0]).all()
    outcomes = {b: _run(lambda b=b: _decode_and_grad(b, z, c, 0.38)) for b in BACKENDS}
    _assert_agree(outcomes)


def test_nan_logits_propagate_on_both(inputs):
    z, ab, c, w = inputs
    z = z.clone()
    z[0, 7, 1, 1] = float("nan")
    for fn in (lambda b: _loss_and_grad(b, z, ab, c, w, reduction="none"),
               lambda b: _decode_and_grad(b, z, c, 0.38),
               lambda b: ops.annealed_mean(z, c, 0.0, backend=b)):
        outcomes = {b: _run(lambda b=b: fn(b)) for b in BACKENDS}
        _assert_agree(outcomes)


@pytest.mark.parametrize("temperature", [0.0, 1e-40, 1e-30, 1e-3, 0.38, 1.0, 1e30])
def test_temperatures_from_zero_to_huge(inputs, temperature):
    z, _, c, _ = inputs
    outcomes = {b: _run(lambda b=b: _decode_and_grad(b, z, c, temperature)) for b in BACKENDS}
    assert outcomes["kernels"][0] == outcomes["reference"][0] == "ok"
    (ab, grad), (ab_ref, grad_ref) = outcomes["kernels"][1], outcomes["reference"][1]
    torch.testing.assert_close(ab, ab_ref, atol=2e-3, rtol=0)
    # d ab / d z = softmax / T (c - ab): at small T large, and where one bin
    # holds all the probability, c - ab is a rounding error of ab (a few ulp of
    # |c| <= 128) magnified by 1 / T.
    scale = max(1.0, float(grad_ref.abs().max()))
    ulps = 4 * torch.finfo(torch.float32).eps * 128 / max(temperature, 1e-30) if temperature > 0 else 0.0
    torch.testing.assert_close(grad, grad_ref, atol=1e-4 * scale + min(ulps, 1.0), rtol=0)
    assert torch.isfinite(ab).all() and torch.isfinite(grad).all()
    if temperature < 1e-20:  # the mode
        mode = c[z.argmax(dim=1)].permute(0, 3, 1, 2)
        torch.testing.assert_close(ab, mode)
        if temperature == 0:
            assert (grad == 0).all()


@pytest.mark.parametrize("shape", [(0, 313, 4, 4), (2, 313, 0, 4), (2, 313, 4, 0)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_empty_batches(shape, reduction, zhang_centres, zhang_weights):
    n, _, h, w = shape
    z = torch.zeros(shape)
    ab = torch.zeros(n, 2, h, w)
    outcomes = {b: _run(lambda b=b: _loss_and_grad(b, z, ab, zhang_centres, zhang_weights, reduction=reduction))
                for b in BACKENDS}
    _assert_agree(outcomes)
    assert outcomes["kernels"][1][1].shape == shape
    outcomes = {b: _run(lambda b=b: _decode_and_grad(b, z, zhang_centres, 0.38)) for b in BACKENDS}
    _assert_agree(outcomes)
    for op in (lambda b: ops.nearest_bin(ab, zhang_centres, backend=b),
               lambda b: ops.soft_encode(ab, zhang_centres, backend=b),
               lambda b: ops.bin_histogram(ab, zhang_centres, backend=b)):
        _assert_agree({b: _run(lambda b=b: op(b)) for b in BACKENDS})


@pytest.mark.parametrize("argument", ["ab", "centres", "class_weights", "pixel_weight"])
def test_gradients_of_other_arguments_are_refused_alike(inputs, argument):
    z, ab, c, w = inputs
    args = {"ab": ab.clone(), "centres": c.clone(), "class_weights": w.clone(),
            "pixel_weight": torch.ones(2, 5, 3)}
    args[argument].requires_grad_(True)

    def loss(backend):
        return ops.rebalanced_cross_entropy(z.clone().requires_grad_(), args["ab"], args["centres"],
                                            args["class_weights"], pixel_weight=args["pixel_weight"],
                                            backend=backend)

    outcomes = {b: _run(lambda b=b: loss(b)) for b in BACKENDS}
    _assert_agree(outcomes)
    kind, (name, message) = outcomes["kernels"]
    assert kind == "error" and name == "ValueError" and f"{argument} requires grad" in message
    with torch.no_grad():  # no gradient asked: fine
        _assert_agree({b: _run(lambda b=b: loss(b)) for b in BACKENDS})


def test_gradients_refused_for_the_other_ops(inputs):
    z, ab, c, _ = inputs
    ab_g, c_g = ab.clone().requires_grad_(True), c.clone().requires_grad_(True)
    cases = [lambda b: ops.soft_encode(ab_g, c, backend=b), lambda b: ops.soft_encode(ab, c_g, backend=b),
             lambda b: ops.bin_histogram(ab, c, torch.ones(2, 5, 3, requires_grad=True), backend=b),
             lambda b: ops.annealed_mean(z, c_g, backend=b)]
    for case in cases:
        outcomes = {b: _run(lambda b=b: case(b)) for b in BACKENDS}
        _assert_agree(outcomes)
        assert outcomes["kernels"][0] == "error"
    # nearest_bin's output is an index: a gradient-carrying ab is harmless there.
    _assert_agree({b: _run(lambda b=b: ops.nearest_bin(ab_g, c, backend=b)) for b in BACKENDS})


def test_double_backward_is_refused_alike(inputs):
    z, ab, c, w = inputs

    def twice(backend, op):
        zz = z.clone().requires_grad_(True)
        out = ops.rebalanced_cross_entropy(zz, ab, c, w, backend=backend) if op == "loss" \
            else ops.annealed_mean(zz, c, 0.5, backend=backend).sum()
        (g,) = torch.autograd.grad(out, zz, create_graph=True)
        return g

    for op in ("loss", "decode"):
        outcomes = {b: _run(lambda b=b: twice(b, op)) for b in BACKENDS}
        _assert_agree(outcomes)
        assert outcomes["kernels"][0] == "error" and "first-order" in outcomes["kernels"][1][1]


@pytest.mark.parametrize("k", [np.int64(5), np.int32(3), torch.tensor(2)])
def test_integer_like_k(inputs, k):
    z, ab, c, w = inputs
    _assert_agree({b: _run(lambda b=b: ops.soft_encode(ab, c, k, backend=b)) for b in BACKENDS})
    _assert_agree({b: _run(lambda b=b: _loss_and_grad(b, z, ab, c, w, k=k)) for b in BACKENDS})
    assert _run(lambda: ops.soft_encode(ab, c, k))[0] == "ok"


def test_messages_name_the_argument_at_fault(inputs):
    z, ab, c, w = inputs
    with pytest.raises(ValueError, match="logits must have shape"):
        ops.annealed_mean([1, 2], c)
    with pytest.raises(ValueError, match="temperature must be"):
        ops.annealed_mean(z, c, "warm")
    with pytest.raises(ValueError, match="k must be an integer"):
        ops.soft_encode(ab, c, 2.5)
    with pytest.raises(ValueError, match="sigma must be"):
        ops.soft_encode(ab, c, 5, "wide")
    with pytest.raises(ValueError, match="ab is on meta but the logits are on cpu"):
        ops.rebalanced_cross_entropy(z, ab.to("meta"), c, w)


def test_float16_mean_gradient_survives_a_gradient_scaler(gen, zhang_centres, zhang_weights):
    """With float16 logits and reduction="mean", 1 / (N H W) must not be folded
    into a float16 gradient before the scaler's factor (it underflowed: half of
    the entries were 0 at 64x64 pixels). The kernels now match eager autograd."""
    z = torch.randn(1, 313, 64, 64, generator=gen) * 3
    ab = (torch.rand(1, 2, 64, 64, generator=gen) - 0.5) * 160

    def grad(dtype, backend):
        zz = z.to(dtype).detach().requires_grad_(True)
        loss = ops.rebalanced_cross_entropy(zz, ab, zhang_centres, zhang_weights, backend=backend)
        (loss * 1024.0).backward()  # what torch.amp.GradScaler does
        return zz.grad.float() / 1024.0

    exact = grad(torch.float32, "reference")
    nonzero = exact != 0
    for backend in BACKENDS:
        g = grad(torch.float16, backend)
        lost = ((g == 0) & nonzero).float().mean().item()
        error = ((g - exact).norm() / exact.norm()).item()
        assert lost < 0.05 and error < 2e-3, (backend, lost, error)


@pytest.mark.parametrize("value", [1e38, -3e38, 1e7, -1e7, 0.0])
def test_loss_of_equal_logits_is_log_q_whatever_their_size(value, gen, zhang_centres, zhang_weights):
    """A logsumexp is shift-invariant: logits all equal to any finite value give
    the uniform distribution, -sum t log(1/Q) = log Q per pixel (times w)."""
    ab = (torch.rand(2, 2, 3, 4, generator=gen) - 0.5) * 160
    z = torch.full((2, 313, 3, 4), value)
    w = zhang_weights[ops.nearest_bin(ab, zhang_centres)]
    for backend in BACKENDS:
        loss = ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights, reduction="none", backend=backend)
        torch.testing.assert_close(loss, w * float(np.log(313)), rtol=1e-5, atol=0)


@pytest.mark.parametrize("offset", [1e3, 1e5, 1e7, -1e7])
def test_loss_error_does_not_grow_with_an_offset(offset, gen, zhang_centres, zhang_weights):
    """The float32 kernels against the float64 reference of the same float32
    logits, offset by a constant: the error stays at float32 rounding of the
    loss (it grew like |offset| * eps with lse * sum t - sum t z)."""
    ab = (torch.rand(2, 2, 4, 4, generator=gen) - 0.5) * 160
    z = torch.randn(2, 313, 4, 4, generator=gen) * 3 + offset
    exact = ops.rebalanced_cross_entropy(z.double(), ab, zhang_centres, zhang_weights, reduction="none",
                                         backend="reference")
    for backend in BACKENDS:
        loss = ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights, reduction="none", backend=backend)
        assert (loss >= 0).all()
        torch.testing.assert_close(loss.double(), exact, rtol=1e-5, atol=1e-5)
