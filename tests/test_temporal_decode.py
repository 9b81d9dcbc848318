"""temporal_decode: the specification on hand-made cases, the public API's
checks, and (where the extension has the op) the kernels against the
reference."""

import math

import pytest
import torch

import fastcolor
from fastcolor import ops, reference
from conftest import DEVICES
from test_kernel_variants import grid_codebook
from test_ops import _skip_unsupported, rand_logits

kernels = pytest.mark.skipif(
    not hasattr(torch.ops.fastcolor, "temporal_decode") or not fastcolor.backend_info()["extension_loaded"],
    reason="fastcolor._C is not built (or predates temporal_decode)",
)
LOGIT_DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def _probs(gen, n, q, h, w):
    return torch.softmax(torch.randn(n, q, h, w, generator=gen) * 2, dim=1)


def test_hand_computed_two_bins():
    # z = (0, log 3): p = (1/4, 3/4); state (1, 0); w = 1/2 -> s = (5/8, 3/8).
    c = torch.tensor([[10.0, 0.0], [0.0, 20.0]])
    z = torch.tensor([0.0, math.log(3)]).view(1, 2, 1, 1)
    state = torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)
    w = torch.full((1, 1, 1, 1), 0.5)
    for t, want in [(1.0, (10 * 5 / 8, 20 * 3 / 8)), (0.5, (10 * 25 / 34, 20 * 9 / 34)), (0.0, (10.0, 0.0))]:
        ab, s = ops.temporal_decode(z, state, w, c, t)
        torch.testing.assert_close(s.flatten(), torch.tensor([5 / 8, 3 / 8]))
        torch.testing.assert_close(ab.flatten(), torch.tensor(want))
    # Gating: max p = 3/4, sharpness 2 -> w = 1/2 * (1/4)^2 = 1/32.
    _, s = ops.temporal_decode(z, state, w, c, 1.0, sharpness=2)
    torch.testing.assert_close(s.flatten(), torch.tensor([1 / 32 + 31 / 32 / 4, 31 / 32 * 3 / 4]))


@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_weight_zero_is_the_annealed_mean_and_ignores_the_state(backend, gen, zhang_centres):
    z = torch.randn(2, 313, 5, 7, generator=gen) * 3
    state = torch.full_like(z, float("nan"))  # never read where w = 0
    ab, s = ops.temporal_decode(z, state, torch.zeros(2, 1, 5, 7), zhang_centres, 0.38, backend=backend)
    torch.testing.assert_close(s, torch.softmax(z, dim=1), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ab, ops.annealed_mean(z, zhang_centres, 0.38), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_weight_one_keeps_the_state(backend, gen, zhang_centres):
    z = torch.randn(1, 313, 3, 4, generator=gen)
    state = _probs(gen, 1, 313, 3, 4)
    ab, s = ops.temporal_decode(z, state, torch.ones(1, 1, 3, 4), zhang_centres, 0.0, backend=backend)
    assert torch.equal(s, state)
    torch.testing.assert_close(ab, zhang_centres[state.argmax(1)].permute(0, 3, 1, 2))


@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_not_differentiable(backend, gen, zhang_centres):
    z = torch.randn(1, 313, 2, 3, generator=gen, requires_grad=True)
    state = _probs(gen, 1, 313, 2, 3)
    ab, s = ops.temporal_decode(z, state, torch.rand(1, 1, 2, 3, generator=gen), zhang_centres, backend=backend)
    with pytest.raises(RuntimeError, match="inference only"):
        (ab.sum() + s.sum()).backward()
    with torch.no_grad():
        ab, s = ops.temporal_decode(z, state, torch.zeros(1, 1, 2, 3), zhang_centres, backend=backend)
    assert not ab.requires_grad and not s.requires_grad


def test_bad_arguments(zhang_centres):
    z = torch.randn(1, 313, 2, 3)
    s = torch.softmax(z, 1)
    w = torch.zeros(1, 1, 2, 3)
    c = zhang_centres
    cases = [
        ((z, s[:, :5], w, c), "state must have the logits' shape"),
        ((z, s, w[0], c), "weight must have shape"),
        ((z, s, w + 2, c), r"weight must lie in \[0, 1\]"),
        ((z, s, w * float("nan"), c), r"weight must lie in \[0, 1\]"),
        ((z, s.int(), w, c), "state must be a floating-point"),
        ((z[:, :5], s[:, :5], w, c), "5 channels but the codebook has 313"),
        ((z.int(), s, w, c), "logits must be float32"),
        ((z[0], s, w, c), "logits must have shape"),
        ((z, s, w, c[:, :1]), r"centres must have shape \(Q, 2\)"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            ops.temporal_decode(*args)
    for kwargs, message in [({"temperature": -1}, "temperature"), ({"sharpness": float("inf")}, "sharpness")]:
        with pytest.raises(ValueError, match=message):
            ops.temporal_decode(z, s, w, c, **kwargs)


def test_reference_edge_values():
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    inf, nan = float("inf"), float("nan")
    z = torch.tensor([[0.0, 1.0, 2.0], [nan, 0.0, 0.0], [inf, 0.0, 0.0], [-inf, -inf, -inf]]).T.reshape(1, 3, 1, 4)
    state = torch.full_like(z, 1 / 3)
    ab, s = reference.temporal_decode(z, state, torch.full((1, 1, 1, 4), 0.5), c, 0.38)
    assert torch.isfinite(ab[..., 0]).all() and torch.isnan(ab[..., 1:]).all() and torch.isnan(s[..., 1:]).all()
    # A state of zeros kept whole: NaN for T > 0, the first centre for T = 0.
    zeros = torch.zeros(1, 3, 1, 1)
    for t, want in [(0.38, [nan, nan]), (0.0, [1.0, 0.0])]:
        ab, _ = reference.temporal_decode(zeros, zeros, torch.ones(1, 1, 1, 1), c, t)
        torch.testing.assert_close(ab.flatten(), torch.tensor(want), equal_nan=True)


# ------------------------------------------------------------ the kernels


def _inputs(gen, q, dtype, device, layout, n=2, h=5, w=37):
    # 370 pixels by default: several 32- and 64-pixel tiles and a ragged last one.
    """Logits, a state of probabilities (a random layout of its own) and
    weights with exact 0s and 1s among them."""
    z = rand_logits(gen, n, q, h, w, dtype, device, layout)
    state = torch.softmax(torch.randn(n, q, h, w, generator=gen) * 2, dim=1)
    if torch.rand((), generator=gen) < 0.5:
        state = state.contiguous(memory_format=torch.channels_last)
    weight = torch.rand(n, 1, h, w, generator=gen)
    weight[0, 0, 0, :5] = 0.0
    weight[0, 0, 1, :5] = 1.0
    return z, state.to(device), weight.to(device)


def _first_mode(s, c):
    """Centres of the first largest entry of s (N, Q, H, W)."""
    return c[s.argmax(dim=1)].permute(0, 3, 1, 2)


def _check(got, want, c, temperature):
    """got and want: (ab, new_state). The states agree to float32 rounding of
    the softmax; the decode is checked on the kernel's own state (exactly at
    T = 0, where an ulp could move the mode between two near-equal bins), and
    end to end with a tolerance that grows as 1 / T amplifies the ulps of log."""
    ab, s = got
    assert ab.dtype == s.dtype == torch.float32 and s.shape == want[1].shape and ab.shape == want[0].shape
    torch.testing.assert_close(s, want[1], rtol=2e-5, atol=1e-7)
    if temperature == 0:
        torch.testing.assert_close(ab, _first_mode(s, c), rtol=0, atol=0)
        return
    mine = reference.annealed_mean(s.log(), c, temperature)
    atol = 2e-3 + 3e-5 / temperature
    torch.testing.assert_close(ab, mine, rtol=0, atol=atol)
    torch.testing.assert_close(ab, want[0], rtol=0, atol=2 * atol)


@kernels
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOGIT_DTYPES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_kernel_matches_reference(device, dtype, layout, gen, zhang_centres):
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    z, state, weight = _inputs(gen, 313, dtype, device, layout, h=3, w=23)
    for t, sharpness in [(0.0, 0.0), (1e-3, 1.5), (0.38, 0.0), (1.0, 0.0), (3.0, 1.5)]:
        got = torch.ops.fastcolor.temporal_decode(z, state, weight, c, t, sharpness)
        want = reference.temporal_decode(z, state, weight, c, t, sharpness)
        _check(got, want, c, t)
    if layout != "strided":  # the new state is written in the logits' memory format
        assert got[1].stride() == torch.empty_like(z, dtype=torch.float32).stride()


@kernels
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("temperature", [1.0, 0.38, 0.05, 1e-3])
def test_states_far_from_probabilities(device, temperature, gen, zhang_centres):
    """The CPU kernel shifts the softmax by the first logit instead of the max
    and sums s^(1/T) without first finding max s where no term leaves
    float32's range, and takes the exact sweeps where one would; tiles with
    both kinds of pixels (logits 100 above or 200 below the first,
    unnormalised states from 1e-30 to 1e30, exact zeros) must all match the
    reference."""
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    n, h, w = 2, 8, 24  # 192 pixels per image: three full 64-pixel tiles each
    z = torch.randn(n, 313, h, w, generator=gen) * 3
    z[1, 7, 2, 5] += 100.0  # far above the first logit: the kernel's shift by it would overflow
    z[0, 0, 3, 9] -= 200.0  # the first logit far below the others: the same
    state = _probs(gen, n, 313, h, w)
    scale = 10.0 ** torch.randint(-30, 31, (n, 1, h, w), generator=gen).float()
    scale[:, :, ::2] = 1.0  # every other row an ordinary distribution
    state = state * scale
    state[0, :200, 0, 3] = 0.0  # zeros: log 0 = -inf weighs nothing
    weight = torch.rand(n, 1, h, w, generator=gen)
    weight[:, :, 1::4] = 1.0  # the state alone
    z, state, weight = z.to(device), state.to(device), weight.to(device)
    got = torch.ops.fastcolor.temporal_decode(z, state, weight, c, temperature, 0.0)
    want = reference.temporal_decode(z, state, weight, c, temperature, 0.0)
    torch.testing.assert_close(got[1], want[1], rtol=2e-5, atol=0)
    assert torch.isfinite(got[0]).all()
    atol = 2e-3 + 3e-5 / temperature
    torch.testing.assert_close(got[0], reference.annealed_mean(got[1].log(), c, temperature), rtol=0, atol=atol)
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=2 * atol)


@kernels
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("q", [1, 2, 32, 100, 500, 700])  # every CUDA kernel variant (see test_kernel_variants)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_kernel_variants(device, q, layout, gen):
    _skip_unsupported(device)
    if device == "cpu" and q not in (1, 100):
        pytest.skip("the CPU has one kernel for every Q; these sizes reach the CUDA variants")
    c = grid_codebook(gen, q).to(device)
    for dtype in (torch.float32, torch.bfloat16):
        z, state, weight = _inputs(gen, q, dtype, device, layout)
        for t, sharpness in [(0.0, 0.0), (0.38, 2.0)]:
            got = torch.ops.fastcolor.temporal_decode(z, state, weight, c, t, sharpness)
            _check(got, reference.temporal_decode(z, state, weight, c, t, sharpness), c, t)


@kernels
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_mode_ties_go_to_the_first_bin(device, layout, zhang_centres):
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    z = torch.zeros(1, 313, 1, 3, device=device)
    state = torch.zeros(1, 313, 1, 3)
    state[0, [5, 200], 0, 0] = 0.5  # bins held by different warps and lanes
    state[0, [300, 7], 0, 1] = 0.5
    state[0, :, 0, 2] = 1 / 313  # all equal
    state = state.to(device)
    if layout == "channels_last":
        z = z.contiguous(memory_format=torch.channels_last)
    ab, s = ops.temporal_decode(z, state, torch.ones(1, 1, 1, 3, device=device), c, 0.0)
    assert torch.equal(s, state)
    torch.testing.assert_close(ab[0, :, 0].T, c[[5, 7, 0]], rtol=0, atol=0)


@kernels
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_edge_values_match_reference(device, dtype, layout):
    _skip_unsupported(device)
    inf, nan = float("inf"), float("nan")
    c = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]], device=device)
    # One pixel per case: logits, state, weight.
    cases = [
        ([0.0, 1.0, 2.0], [0.2, 0.3, 0.5], 0.5),  # plain
        ([nan, 0.0, 0.0], [0.2, 0.3, 0.5], 0.5),  # NaN logit
        ([inf, 0.0, 0.0], [0.2, 0.3, 0.5], 0.5),  # +inf logit
        ([-inf, -inf, -inf], [0.2, 0.3, 0.5], 0.5),  # no finite logit
        ([-inf, 0.0, 1.0], [0.2, 0.3, 0.5], 0.5),  # one -inf logit: probability 0
        ([0.0, 1.0, 2.0], [nan, 0.3, 0.5], 0.5),  # NaN state
        ([0.0, 1.0, 2.0], [nan, inf, -1.0], 0.0),  # garbage state, weight 0: ignored
        ([0.0, 1.0, 2.0], [-0.5, 0.3, 0.5], 0.5),  # negative state
        ([0.0, 1.0, 2.0], [inf, 0.3, 0.5], 0.5),  # infinite state
        ([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], 1.0),  # a zero state kept whole
        ([0.0, 1.0, 2.0], [0.0, 1.0, 0.0], 1.0),  # one bin only
        ([1e30, -1e30, 0.0], [1e-45, 1e-40, 0.0], 0.5),  # extreme logits, subnormal state
    ]
    z = torch.tensor([k[0] for k in cases], dtype=dtype).T.reshape(1, 3, 1, -1).to(device)
    state = torch.tensor([k[1] for k in cases]).T.reshape(1, 3, 1, -1).to(device)
    weight = torch.tensor([k[2] for k in cases]).reshape(1, 1, 1, -1).to(device)
    if layout == "channels_last":
        z = z.contiguous(memory_format=torch.channels_last)
    for t in [0.0, 1e-3, 0.38, 1.0, 30.0]:
        ab, s = torch.ops.fastcolor.temporal_decode(z, state, weight, c, t, 0.0)
        want_ab, want_s = reference.temporal_decode(z, state, weight, c, t, 0.0)
        torch.testing.assert_close(s, want_s, rtol=1e-5, atol=1e-30, equal_nan=True)
        torch.testing.assert_close(ab, want_ab, rtol=0, atol=1e-3, equal_nan=True, msg=f"T={t}")


@kernels
@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device, zhang_centres):
    _skip_unsupported(device)
    z = torch.zeros(0, 313, 4, 5, device=device)
    ab, s = torch.ops.fastcolor.temporal_decode(z, z, torch.zeros(0, 1, 4, 5, device=device),
                                                zhang_centres.to(device), 0.38, 0.0)
    assert ab.shape == (0, 2, 4, 5) and s.shape == (0, 313, 4, 5)


@kernels
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_argument_checks(device, zhang_centres):
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    z = torch.zeros(1, 313, 2, 3, device=device)
    w = torch.zeros(1, 1, 2, 3, device=device)
    op = torch.ops.fastcolor.temporal_decode
    with pytest.raises(TypeError, match="state must be float32"):
        op(z, z.double(), w, c, 0.38, 0.0)
    with pytest.raises(ValueError, match="state must have the logits' shape"):
        op(z, z[:, :5], w, c, 0.38, 0.0)
    with pytest.raises(ValueError, match=r"weight must have shape \(N, 1, H, W\)"):
        op(z, z, w[:, :, :1], c, 0.38, 0.0)
    with pytest.raises(TypeError, match="weight must be float32"):
        op(z, z, w.half(), c, 0.38, 0.0)
    with pytest.raises(ValueError, match="temperature"):
        op(z, z, w, c, -1.0, 0.0)
    with pytest.raises(ValueError, match="sharpness"):
        op(z, z, w, c, 0.38, float("nan"))
    with pytest.raises(ValueError, match="5 channels but the codebook has 313"):
        op(z[:, :5], z[:, :5], w, c, 0.38, 0.0)


@kernels
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device, gen, zhang_centres):
    _skip_unsupported(device)
    c = zhang_centres.to(device)
    for dtype, layout, t, sharpness in [(torch.float32, "contiguous", 0.38, 0.0),
                                        (torch.bfloat16, "channels_last", 0.0, 1.5)]:
        z, state, weight = _inputs(gen, 313, dtype, device, layout, h=3, w=4)
        torch.library.opcheck(torch.ops.fastcolor.temporal_decode, (z, state, weight, c, t, sharpness))


@kernels
@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compile_fullgraph(device, gen, zhang_centres):
    _skip_unsupported(device)
    c = zhang_centres.to(device)

    def step(z, state, weight):
        ab, s = ops.temporal_decode(z, state, weight, c, 0.38, 1.0)
        return ab * 2, s

    z, state, weight = _inputs(gen, 313, torch.float32, device, "contiguous", h=6, w=5)
    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    for got, want in zip(compiled(z, state, weight), step(z, state, weight)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


@kernels
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_large_new_state_is_recycled_and_fully_written(layout, gen):
    """A new state of 32 MiB or more comes from a small pool of freed ones
    (csrc/cpu/output_pool.h): the next call of that size gets the same
    memory back, already mapped, with every element written again (the old
    contents are poisoned with NaN first), and in the logits' layout."""
    n, q, h, w = 2, 100, 208, 208  # 34.6 MB of float32 state
    c = grid_codebook(gen, q)
    z = rand_logits(gen, n, q, h, w, torch.float32, "cpu", layout)
    state = _probs(gen, n, q, h, w)
    weight = torch.rand(n, 1, h, w, generator=gen)
    first = ops.temporal_decode(z, state, weight, c, 0.38)[1]
    assert first.stride() == z.stride()
    ptr = first.data_ptr()
    first.fill_(float("nan"))
    del first
    ab, second = ops.temporal_decode(z, state, weight, c, 0.38)
    assert second.data_ptr() == ptr and second.stride() == z.stride()
    other = ops.temporal_decode(z, state, weight, c, 0.38)[1]  # while second lives: its own memory
    assert other.data_ptr() != second.data_ptr()
    want_ab, want_state = reference.temporal_decode(z, state, weight, c, 0.38, 0.0)
    torch.testing.assert_close(second, want_state, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(other, want_state, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ab, want_ab, rtol=0, atol=1e-3)
