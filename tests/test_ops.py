"""The compiled kernels (C++ CPU and CUDA) against the pure-PyTorch reference,
through torch.ops.fastcolor and through the public fastcolor.ops API."""

import pytest
import torch

import fastcolor
from fastcolor import ops, reference
from conftest import CUDA_DEVICES, DEVICES

pytestmark = pytest.mark.skipif(
    not fastcolor.backend_info()["extension_loaded"], reason="fastcolor._C is not built"
)

# Odd sizes; 16x9 images also give the CPU kernels whole tiles of adjacent
# pixels, read in place, next to tiles that straddle two images.
SIZES = [(3, 7, 5), (2, 16, 9)]
LOGIT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# (rtol, atol) of kernel against reference, for losses/decoded ab (accumulated
# in float32 by both) and for gradients (rounded once to the logits' dtype).
# The soft targets are float32 on every path, so float64 logits agree to the
# precision of float32 targets, not beyond.
VALUE_TOL = {torch.float32: (2e-5, 2e-5), torch.float64: (1e-6, 1e-6),
             torch.float16: (2e-5, 2e-5), torch.bfloat16: (2e-5, 2e-5)}
GRAD_TOL = {torch.float32: (1e-4, 2e-6), torch.float64: (1e-5, 1e-6),
            torch.float16: (2e-3, 1e-5), torch.bfloat16: (1.6e-2, 1e-4)}


def _skip_unsupported(device):
    if device == "cuda" and not fastcolor.ops.backend.use_kernels("cuda"):
        pytest.skip("no CUDA kernels (compiled or JIT) run here")


def rand_ab(gen, n, h, w, scale=60.0, device="cpu"):
    return (torch.randn(n, 2, h, w, generator=gen) * scale).to(device)


def rand_logits(gen, n, q, h, w, dtype=torch.float32, device="cpu", layout="contiguous", scale=3.0):
    if layout == "strided":  # a view with gaps in every dimension
        big = torch.randn(n, q + 3, 2 * h, w + 1, generator=gen) * scale
        return big[:, 1 : q + 1, ::2, 1:].to(device=device, dtype=dtype)
    z = (torch.randn(n, q, h, w, generator=gen) * scale).to(device=device, dtype=dtype)
    if layout == "channels_last":
        z = z.contiguous(memory_format=torch.channels_last)
    return z


def grid_ab(values, device="cpu"):
    """ab of a 1 x len(values) image from a list of (a, b) pairs."""
    t = torch.tensor(values, dtype=torch.float32).T.reshape(1, 2, 1, -1)
    return t.to(device)


# ---------------------------------------------------------------- nearest_bin


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 1, 1), (2, 33, 17)])
@pytest.mark.parametrize("scale", [10.0, 60.0, 1e4])
def test_nearest_bin_matches_reference(device, shape, scale, gen, zhang_centres):
    _skip_unsupported(device)
    ab = rand_ab(gen, *shape, scale=scale, device=device)
    c = zhang_centres.to(device)
    got = torch.ops.fastcolor.nearest_bin(ab, c)
    assert got.dtype == torch.int64 and got.shape == shape
    torch.testing.assert_close(got, reference.nearest_bin(ab, c), rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
def test_nearest_bin_ties_go_to_the_lower_index(device, zhang_centres):
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    # Exact grid points, midpoints between 2 and between 4 bins, and a point
    # equidistant from bins far outside the gamut.
    ab = grid_ab([(0, 0), (5, 0), (5, 5), (-45, 15), (95, -105), (0, 1e3)], device)
    got = ops.nearest_bin(ab, c).flatten().tolist()
    d2 = ((ab[0, :, 0].T[:, None, :] - c[None]) ** 2).sum(-1)
    want = [int(torch.nonzero(row == row.min())[0]) for row in d2]
    assert got == want
    assert got == reference.nearest_bin(ab, c).flatten().tolist()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["channels_last", "strided"])
def test_nearest_bin_any_layout(device, layout, gen, zhang_centres):
    _skip_unsupported(device)
    ab = rand_logits(gen, 2, 2, 9, 6, device=device, layout=layout, scale=50.0)
    c = zhang_centres.to(device)
    torch.testing.assert_close(ops.nearest_bin(ab, c), ops.nearest_bin(ab.contiguous(), c))


# ---------------------------------------------------------------- soft_encode


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 2, 3, 5, 7, 10, 16])
@pytest.mark.parametrize("sigma", [1.0, 5.0, 20.0])
def test_soft_encode_matches_reference(device, k, sigma, gen, zhang_centres):
    _skip_unsupported(device)
    ab = rand_ab(gen, 3, 7, 5, device=device)
    c = zhang_centres.to(device)
    got = torch.ops.fastcolor.soft_encode(ab, c, k, sigma)
    want = reference.soft_encode(ab, c, k, sigma)
    assert got.shape == (3, 313, 7, 5) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert torch.equal(got > 0, want > 0)  # the same k bins
    assert ((got > 0).sum(1) <= k).all() and ((got > 0).sum(1) >= 1).all()
    torch.testing.assert_close(got.sum(1), torch.ones(3, 7, 5, device=device))


@pytest.mark.parametrize("device", DEVICES)
def test_soft_encode_is_stable_far_outside_the_gamut(device, zhang_centres):
    _skip_unsupported(device)
    ab = grid_ab([(1e4, -1e4), (-3e5, 0.0), (1e20, 1e20), (0.0, 0.0)], device)
    t = ops.soft_encode(ab, zhang_centres.to(device), k=5, sigma=5.0)
    assert torch.isfinite(t).all()
    torch.testing.assert_close(t.sum(1), torch.ones(1, 1, 4, device=device))
    torch.testing.assert_close(t, reference.soft_encode(ab, zhang_centres.to(device), 5, 5.0))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_soft_encode_ties_select_the_lower_indices(device, k, zhang_centres):
    _skip_unsupported(device)
    # (5, 5) is equidistant from 4 bins, (5, 0) from 2: ties at the k-th place.
    ab = grid_ab([(5, 5), (5, 0), (-5, 45), (0, 0)], device)
    c = zhang_centres.to(device)
    got = ops.soft_encode(ab, c, k=k, sigma=5.0)
    want = reference.soft_encode(ab, c, k, 5.0)
    assert torch.equal(got > 0, want > 0)
    torch.testing.assert_close(got, want)
    # The chosen bins among 4 equidistant ones are the k lowest indices.
    d2 = ((ab[0, :, 0, 0][None] - c) ** 2).sum(-1)
    ties = torch.nonzero(d2 == d2.min()).flatten()
    chosen = [q for q in torch.nonzero(got[0, :, 0, 0] > 0).flatten().tolist() if q in ties]
    assert chosen == ties[: min(k, len(ties))].tolist()


# -------------------------------------------------------------- bin_histogram


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("weight", [None, "bool", "float"])
def test_bin_histogram_matches_reference(device, weight, gen, zhang_centres):
    _skip_unsupported(device)
    ab = rand_ab(gen, 4, 19, 23, scale=40.0, device=device)
    c = zhang_centres.to(device)
    w = None
    if weight == "bool":
        w = torch.rand(4, 19, 23, generator=gen).to(device) > 0.3
    elif weight == "float":
        w = torch.rand(4, 19, 23, generator=gen).to(device)
    got = ops.bin_histogram(ab, c, w)
    want = reference.bin_histogram(ab, c, None if w is None else w.float())
    assert got.dtype == torch.float64 and got.shape == (313,)
    if weight == "float":
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    else:
        assert torch.equal(got, want)
    total = ab[:, 0].numel() if w is None else float(w.float().sum())
    assert abs(float(got.sum()) - total) < 1e-3


# --------------------------------------------------- rebalanced_cross_entropy


def _loss_and_grad(fn, logits, *args, **kwargs):
    z = logits.detach().clone().requires_grad_()
    loss = fn(z, *args, **kwargs)
    g = torch.randn_like(loss) if loss.dim() else torch.tensor(1.7, dtype=loss.dtype, device=loss.device)
    (grad,) = torch.autograd.grad(loss, z, g)
    return loss.detach(), grad, g


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOGIT_DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("size", SIZES)
def test_cross_entropy_matches_reference(device, dtype, reduction, layout, size, gen, zhang_centres, zhang_weights):
    _skip_unsupported(device)
    n, h, w_ = size
    z = rand_logits(gen, n, 313, h, w_, dtype, device, layout)
    ab = rand_ab(gen, n, h, w_, device=device)
    c, w = zhang_centres.to(device), zhang_weights.to(device)
    loss, grad, g = _loss_and_grad(ops.rebalanced_cross_entropy, z, ab, c, w, k=5, sigma=5.0, reduction=reduction)
    z.requires_grad_()
    ref = reference.rebalanced_cross_entropy(z, ab, c, w, pixel_weight=None, k=5, sigma=5.0, reduction=reduction)
    (ref_grad,) = torch.autograd.grad(ref, z, g)
    assert loss.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert grad.dtype == dtype and grad.shape == z.shape
    rtol, atol = VALUE_TOL[dtype]
    torch.testing.assert_close(loss, ref.detach(), rtol=rtol, atol=atol)
    rtol, atol = GRAD_TOL[dtype]
    scale = float(ref_grad.abs().max())
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol * max(scale, 1e-30))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 9, 10, 16])
@pytest.mark.parametrize("scale", [30.0, 1e4])
def test_cross_entropy_any_k_and_out_of_gamut(device, k, scale, gen, zhang_centres, zhang_weights):
    _skip_unsupported(device)
    z = rand_logits(gen, 2, 313, 5, 3, device=device)
    ab = rand_ab(gen, 2, 5, 3, scale=scale, device=device)
    c, w = zhang_centres.to(device), zhang_weights.to(device)
    loss, grad, g = _loss_and_grad(ops.rebalanced_cross_entropy, z, ab, c, w, k=k, sigma=5.0, reduction="none")
    z.requires_grad_()
    ref = reference.rebalanced_cross_entropy(z, ab, c, w, pixel_weight=None, k=k, sigma=5.0, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref, z, g)
    torch.testing.assert_close(loss, ref.detach(), rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=2e-6 * float(ref_grad.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mask", ["bool", "float"])
def test_cross_entropy_pixel_weight(device, mask, gen, zhang_centres, zhang_weights):
    _skip_unsupported(device)
    z = rand_logits(gen, 2, 313, 4, 6, device=device)
    ab = rand_ab(gen, 2, 4, 6, device=device)
    c, w = zhang_centres.to(device), zhang_weights.to(device)
    v = torch.rand(2, 4, 6, generator=gen).to(device)
    v = v > 0.5 if mask == "bool" else v
    v[0] = 0  # Zhang's "no chroma" image: contributes nothing
    loss, grad, g = _loss_and_grad(ops.rebalanced_cross_entropy, z, ab, c, w, reduction="sum", pixel_weight=v)
    z.requires_grad_()
    ref = reference.rebalanced_cross_entropy(z, ab, c, w, pixel_weight=v.float(), k=5, sigma=5.0, reduction="sum")
    (ref_grad,) = torch.autograd.grad(ref, z, g)
    torch.testing.assert_close(loss, ref.detach(), rtol=2e-5, atol=2e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)
    assert torch.equal(grad[0], torch.zeros_like(grad[0]))


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_value_from_first_principles(device, zhang_centres):
    """One pixel exactly on bin q with k = 1: the loss is w_q * (lse - z_q)."""
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    q = 123
    ab = c[q].view(1, 2, 1, 1)
    z = torch.linspace(-2, 2, 313, device=device).view(1, 313, 1, 1)
    w = torch.full((313,), 0.5, device=device)
    loss = ops.rebalanced_cross_entropy(z, ab, c, w, k=1, reduction="sum")
    want = 0.5 * (torch.logsumexp(z.flatten(), 0) - z.flatten()[q])
    torch.testing.assert_close(loss, want)


@pytest.mark.parametrize("device", DEVICES)
def test_cross_entropy_gradcheck(device, gen):
    _skip_unsupported(device)
    c = (torch.randn(24, 2, generator=gen, dtype=torch.float64) * 30).float().to(device)
    w = (torch.rand(24, generator=gen) + 0.2).to(device)
    ab = rand_ab(gen, 2, 3, 2, scale=30.0, device=device)
    v = torch.rand(2, 3, 2, generator=gen).to(device)
    z = torch.randn(2, 24, 3, 2, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    for reduction in ("mean", "sum", "none"):
        f = lambda x: ops.rebalanced_cross_entropy(x, ab, c, w, k=3, reduction=reduction, pixel_weight=v)
        assert torch.autograd.gradcheck(f, (z,), eps=1e-6, atol=1e-7, rtol=1e-5)


def test_cross_entropy_double_backward_is_refused(zhang_centres, zhang_weights, gen):
    z = rand_logits(gen, 1, 313, 2, 2).requires_grad_()
    ab = rand_ab(gen, 1, 2, 2)
    loss = ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights)
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, z, create_graph=True)


def test_cross_entropy_backward_twice_accumulates(zhang_centres, zhang_weights, gen):
    z = rand_logits(gen, 2, 313, 3, 3).requires_grad_()
    ab = rand_ab(gen, 2, 3, 3)
    loss = ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights)
    loss.backward(retain_graph=True)
    first = z.grad.clone()
    loss.backward()
    torch.testing.assert_close(z.grad, 2 * first)


# -------------------------------------------------------------- annealed_mean


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOGIT_DTYPES)
@pytest.mark.parametrize("temperature", [0.0, 0.1, 0.38, 1.0, 3.0])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
@pytest.mark.parametrize("size", SIZES)
def test_annealed_mean_matches_reference(device, dtype, temperature, layout, size, gen, zhang_centres):
    _skip_unsupported(device)
    n, h, w_ = size
    z = rand_logits(gen, n, 313, h, w_, dtype, device, layout)
    c = zhang_centres.to(device)
    got = ops.annealed_mean(z, c, temperature)
    want = reference.annealed_mean(z, c, temperature)
    assert got.shape == (n, 2, h, w_)
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    # ab is a float32 sum of 313 terms of magnitude up to ~110: rounding
    # differences of order 1e-4 are expected; 1e-3 is 1e-5 of the range.
    atol = 1e-9 if dtype == torch.float64 else 1e-3
    torch.testing.assert_close(got, want, rtol=0, atol=atol)
    if temperature > 0:
        zz = z.detach().clone().requires_grad_()
        zr = z.detach().clone().requires_grad_()
        g = torch.randn(n, 2, h, w_, generator=gen).to(device=device, dtype=got.dtype)
        (grad,) = torch.autograd.grad(ops.annealed_mean(zz, c, temperature), zz, g)
        (ref_grad,) = torch.autograd.grad(reference.annealed_mean(zr, c, temperature), zr, g)
        rtol, atol = GRAD_TOL[dtype]
        torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol * float(ref_grad.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
def test_annealed_mean_limits(device, gen, zhang_centres):
    """T = 0 is the mode; small T approaches it; T = 1 is the plain mean."""
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    z = rand_logits(gen, 2, 313, 4, 4, device=device)
    z.scatter_add_(1, z.argmax(1, keepdim=True), torch.ones(2, 1, 4, 4, device=device))  # margin >= 1
    mode = c[z.argmax(1)].permute(0, 3, 1, 2)
    torch.testing.assert_close(ops.annealed_mean(z, c, 0.0), mode)
    torch.testing.assert_close(ops.annealed_mean(z, c, 1e-2), mode, rtol=0, atol=1e-3)
    mean = torch.einsum("nqhw,qc->nchw", z.softmax(1), c)
    torch.testing.assert_close(ops.annealed_mean(z, c, 1.0), mean, rtol=0, atol=1e-3)
    # Ties in the mode go to the lower index, and the gradient at T = 0 is 0.
    flat = torch.zeros(1, 313, 1, 1, device=device, requires_grad=True)
    torch.testing.assert_close(ops.annealed_mean(flat, c, 0.0).flatten(), c[0])
    (g,) = torch.autograd.grad(ops.annealed_mean(flat, c, 0.0).sum(), flat)
    assert torch.equal(g, torch.zeros_like(g))


@pytest.mark.parametrize("device", DEVICES)
def test_annealed_mean_gradcheck(device, gen):
    _skip_unsupported(device)
    c = (torch.randn(20, 2, generator=gen) * 40).to(device)
    z = torch.randn(2, 20, 3, 2, generator=gen, dtype=torch.float64).to(device).requires_grad_()
    for t in (0.38, 1.0, 2.5):
        assert torch.autograd.gradcheck(lambda x: ops.annealed_mean(x, c, t), (z,), eps=1e-6, atol=1e-6)


def test_annealed_mean_double_backward_is_refused(zhang_centres, gen):
    z = rand_logits(gen, 1, 313, 2, 2).requires_grad_()
    out = ops.annealed_mean(z, zhang_centres).sum()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(out, z, create_graph=True)


# ------------------------------------------------------ non-finite ab, errors


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_ab_semantics_of_the_kernels(device, zhang_centres, zhang_weights):
    """Raw kernels (no API check): -1 index, NaN targets and loss, no count."""
    _skip_unsupported(device)
    c, w = zhang_centres.to(device), zhang_weights.to(device)
    ab = grid_ab([(float("nan"), 0.0), (0.0, float("inf")), (10.0, 10.0)], device)
    idx = torch.ops.fastcolor.nearest_bin(ab, c)
    assert idx.flatten()[:2].tolist() == [-1, -1] and idx.flatten()[2] >= 0
    torch.testing.assert_close(idx, reference.nearest_bin(ab, c))
    t = torch.ops.fastcolor.soft_encode(ab, c, 5, 5.0)
    assert t[0, :, 0, :2].isnan().all() and torch.isfinite(t[0, :, 0, 2]).all()
    assert torch.ops.fastcolor.bin_histogram(ab, c, None).sum() == 1
    z = torch.zeros(1, 313, 1, 3, device=device)
    loss, grad = torch.ops.fastcolor.rebalanced_cross_entropy(z, ab, c, w, None, 5, 5.0, "none", True)
    assert loss.flatten()[:2].isnan().all() and loss.flatten()[2].isfinite()
    assert grad[..., :2].isnan().all() and grad[..., 2].isfinite().all()


def test_non_finite_ab_raises_on_cpu(zhang_centres, zhang_weights):
    ab = grid_ab([(float("nan"), 0.0), (1.0, 2.0)])
    z = torch.zeros(1, 313, 1, 2)
    for call in (
        lambda: ops.nearest_bin(ab, zhang_centres),
        lambda: ops.soft_encode(ab, zhang_centres),
        lambda: ops.bin_histogram(ab, zhang_centres),
        lambda: ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights),
    ):
        with pytest.raises(ValueError, match="non-finite"):
            call()


def test_errors_name_the_problem(zhang_centres, zhang_weights, gen):
    c, w = zhang_centres, zhang_weights
    z = rand_logits(gen, 2, 313, 4, 4)
    ab = rand_ab(gen, 2, 4, 4)
    cases = [
        (lambda: ops.nearest_bin(ab[:, :1], c), "ab must have shape"),
        (lambda: ops.nearest_bin(ab.long(), c), "floating-point"),
        (lambda: ops.nearest_bin(ab, c[:, :1]), "centres must have shape"),
        (lambda: ops.nearest_bin(ab, torch.zeros(0, 2)), "centres must have shape"),
        (lambda: ops.nearest_bin(ab, c.clone().fill_(float("nan"))), "non-finite"),
        (lambda: ops.soft_encode(ab, c, k=0), "k must be"),
        (lambda: ops.soft_encode(ab, c, k=17), "k must be"),
        (lambda: ops.soft_encode(ab, c[:3], k=4), "k must be"),
        (lambda: ops.soft_encode(ab, c, sigma=0.0), "sigma"),
        (lambda: ops.soft_encode(ab, c, sigma=float("inf")), "sigma"),
        (lambda: ops.bin_histogram(ab, c, torch.ones(2, 4)), "weight must have shape"),
        (lambda: ops.bin_histogram(ab, c, -torch.ones(2, 4, 4)), "non-negative"),
        (lambda: ops.rebalanced_cross_entropy(z[:, :300], ab, c, w), "300 channels but the codebook has 313"),
        (lambda: ops.rebalanced_cross_entropy(z, ab[:, :, :2], c, w), "ab has shape"),
        (lambda: ops.rebalanced_cross_entropy(z.int(), ab, c, w), "logits must be"),
        (lambda: ops.rebalanced_cross_entropy(z[0], ab, c, w), "logits must have shape"),
        (lambda: ops.rebalanced_cross_entropy(z, ab, c, w[:5]), "class_weights must have shape"),
        (lambda: ops.rebalanced_cross_entropy(z, ab, c, -w), "non-negative"),
        (lambda: ops.rebalanced_cross_entropy(z, ab, c, w, reduction="avg"), "reduction"),
        (lambda: ops.rebalanced_cross_entropy(z, ab, c, w, pixel_weight=torch.ones(2, 4)), "pixel_weight has shape"),
        (lambda: ops.annealed_mean(z, c, -1.0), "temperature"),
        (lambda: ops.annealed_mean(z, c, float("nan")), "temperature"),
        (lambda: ops.annealed_mean(z[:, :7], c), "7 channels"),
    ]
    for call, match in cases:
        with pytest.raises(ValueError, match=match):
            call()


def test_kernel_entry_points_check_their_arguments(zhang_centres, zhang_weights, gen):
    """Callers of torch.ops.fastcolor directly get the C++ checks."""
    c, w = zhang_centres, zhang_weights
    z = rand_logits(gen, 2, 313, 4, 4)
    ab = rand_ab(gen, 2, 4, 4)
    f = torch.ops.fastcolor
    with pytest.raises(ValueError, match="ab must have shape"):
        f.nearest_bin(ab[:, :1], c)
    with pytest.raises(TypeError, match="ab must be float32"):
        f.nearest_bin(ab.double(), c)
    with pytest.raises(TypeError, match="centres must be float32"):
        f.nearest_bin(ab, c.double())
    with pytest.raises(ValueError, match="k must be"):
        f.soft_encode(ab, c, 0, 5.0)
    with pytest.raises(ValueError, match="300 channels"):
        f.rebalanced_cross_entropy(z[:, :300], ab, c, w, None, 5, 5.0, "mean", False)
    with pytest.raises(ValueError, match="reduction must be"):
        f.rebalanced_cross_entropy(z, ab, c, w, None, 5, 5.0, "avg", False)
    with pytest.raises(ValueError, match="does not match the logits"):
        f.rebalanced_cross_entropy(z, ab[:, :, :3], c, w, None, 5, 5.0, "mean", False)
    with pytest.raises(ValueError, match="temperature"):
        f.annealed_mean(z, c, -0.5)


@pytest.mark.parametrize("device", CUDA_DEVICES)
def test_device_mismatch_is_reported(device, zhang_centres, zhang_weights, gen):
    _skip_unsupported(device)
    z = rand_logits(gen, 1, 313, 2, 2, device="cuda")
    ab = rand_ab(gen, 1, 2, 2, device="cuda")
    with pytest.raises(ValueError, match="centres are on cpu"):
        ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights.cuda())
    with pytest.raises(ValueError, match="class_weights are on cpu"):
        ops.rebalanced_cross_entropy(z, ab, zhang_centres.cuda(), zhang_weights)
    with pytest.raises(ValueError, match="is on cpu"):
        ops.rebalanced_cross_entropy(z, ab.cpu(), zhang_centres.cuda(), zhang_weights.cuda())


# ------------------------------------------------------- CUDA against the CPU


@pytest.mark.parametrize("device", CUDA_DEVICES)
@pytest.mark.parametrize("dtype", LOGIT_DTYPES)
def test_cuda_matches_cpu_kernels(device, dtype, gen, zhang_centres, zhang_weights):
    _skip_unsupported(device)
    z = rand_logits(gen, 4, 313, 9, 11, dtype)
    ab = rand_ab(gen, 4, 9, 11)
    c, w = zhang_centres, zhang_weights
    f = torch.ops.fastcolor
    assert torch.equal(f.nearest_bin(ab, c), f.nearest_bin(ab.cuda(), c.cuda()).cpu())
    assert torch.equal(f.bin_histogram(ab, c, None), f.bin_histogram(ab.cuda(), c.cuda(), None).cpu())
    torch.testing.assert_close(f.soft_encode(ab, c, 5, 5.0), f.soft_encode(ab.cuda(), c.cuda(), 5, 5.0).cpu())
    lc, gc = f.rebalanced_cross_entropy(z, ab, c, w, None, 5, 5.0, "none", True)
    lg, gg = f.rebalanced_cross_entropy(z.cuda(), ab.cuda(), c.cuda(), w.cuda(), None, 5, 5.0, "none", True)
    torch.testing.assert_close(lg.cpu(), lc, rtol=2e-5, atol=2e-5)
    rtol, atol = GRAD_TOL[dtype]
    torch.testing.assert_close(gg.cpu(), gc, rtol=rtol, atol=atol * float(gc.abs().max()))
    ac, _ = f.annealed_mean(z, c, 0.38)
    ag, _ = f.annealed_mean(z.cuda(), c.cuda(), 0.38)
    torch.testing.assert_close(ag.cpu(), ac, rtol=0, atol=1e-3 if dtype != torch.float64 else 1e-9)


@pytest.mark.parametrize("device", CUDA_DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cuda_loss_never_materialises_dense_targets(device, dtype, gen, zhang_centres, zhang_weights):
    """The forward pass allocates the stored gradient and O(pixels), never
    dense (N, Q, H, W) targets or probabilities."""
    _skip_unsupported(device)
    z = rand_logits(gen, 8, 313, 56, 56, dtype, "cuda").requires_grad_()
    ab = rand_ab(gen, 8, 56, 56, device="cuda")
    c, w = zhang_centres.cuda(), zhang_weights.cuda()
    pixels, logits_bytes = 8 * 56 * 56, z.numel() * z.element_size()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    loss = ops.rebalanced_cross_entropy(z, ab, c, w)
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= logits_bytes + 64 * pixels + (1 << 20)
    # loss.backward() hands the stored gradient on as z.grad (no scaled copy,
    # no clone by autograd): fwd+bwd peaks at the logits plus one gradient plus
    # O(pixels), the target of issue 3.
    loss.backward()
    torch.cuda.synchronize()
    assert torch.cuda.max_memory_allocated() - base <= logits_bytes + 64 * pixels + (1 << 20)
    assert z.grad.shape == z.shape


@pytest.mark.parametrize("scale_by", [None, 2.0])
def test_loss_backward_allocates_one_gradient_on_the_cpu(scale_by, gen, zhang_centres, zhang_weights):
    """Forward + loss.backward() allocate one logits-sized buffer (the stored
    gradient, which becomes z.grad); a grad_output other than 1 costs one more
    (the scaled copy). Counted with the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    z = rand_logits(gen, 2, 313, 24, 20).requires_grad_()
    ab = rand_ab(gen, 2, 24, 20)
    nbytes = z.numel() * z.element_size()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        loss = ops.rebalanced_cross_entropy(z, ab, zhang_centres, zhang_weights)
        (loss if scale_by is None else loss * scale_by).backward()
    # The innermost events that allocated a logits-sized buffer (an op's usage includes its children's).
    big = [e.name for e in prof.events() if e.cpu_memory_usage >= nbytes
           and not any(c.cpu_memory_usage >= nbytes for c in e.cpu_children)]
    assert len(big) == (1 if scale_by is None else 2), big
    assert z.grad.shape == z.shape


# ---------------------------------------------------- opcheck, torch.compile


def _opcheck_samples(device, gen, c, w):
    z = rand_logits(gen, 2, 313, 3, 4, device=device)
    zb = rand_logits(gen, 2, 313, 3, 4, torch.bfloat16, device, "channels_last")
    ab = rand_ab(gen, 2, 3, 4, device=device)
    v = torch.rand(2, 3, 4, generator=gen).to(device)
    f = torch.ops.fastcolor
    yield f.nearest_bin, (ab, c)
    yield f.soft_encode, (ab, c, 5, 5.0)
    yield f.bin_histogram, (ab, c, None)
    yield f.bin_histogram, (ab, c, v)
    for red in ("mean", "sum", "none"):
        yield f.rebalanced_cross_entropy, (z.clone().requires_grad_(), ab, c, w, v, 5, 5.0, red, True)
    yield f.rebalanced_cross_entropy, (zb, ab, c, w, None, 1, 5.0, "mean", False)
    yield f.annealed_mean, (z.clone().requires_grad_(), c, 0.38)
    yield f.annealed_mean, (zb, c, 0.0)
    ab_out, stats = f.annealed_mean(z, c, 0.38)
    yield f.annealed_mean_backward, (torch.randn_like(ab_out), z, c, ab_out, stats, 0.38)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device, gen, zhang_centres, zhang_weights):
    _skip_unsupported(device)
    for op, args in _opcheck_samples(device, gen, zhang_centres.to(device), zhang_weights.to(device)):
        torch.library.opcheck(op, args)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph_through_loss_and_decoder(device, gen, zhang_centres, zhang_weights):
    _skip_unsupported(device)
    c, w = zhang_centres.to(device), zhang_weights.to(device)
    ab = rand_ab(gen, 2, 6, 5, device=device)

    def step(z):
        loss = ops.rebalanced_cross_entropy(z, ab, c, w, k=5, sigma=5.0)
        return loss + 1e-3 * ops.annealed_mean(z, c, 0.38).square().mean()

    z0 = rand_logits(gen, 2, 313, 6, 5, device=device)
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    za, zb = z0.clone().requires_grad_(), z0.clone().requires_grad_()
    out_c, out_e = compiled(za), step(zb)
    out_c.backward()
    out_e.backward()
    torch.testing.assert_close(out_c, out_e)
    torch.testing.assert_close(za.grad, zb.grad)
