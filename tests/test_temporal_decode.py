"""temporal_decode: the specification on hand-made cases, the public API's
checks, and (where the extension has the op) the kernels against the
reference."""

import math

import pytest
import torch

from fastcolor import ops, reference


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
