"""Every kernel variant against the reference, and outputs that no kernel may
leave unwritten.

The CUDA back end picks a kernel from the layout of the logits and the number
of bins Q (csrc/include/fastcolor/device/*.cuh: a tiled kernel for pixel-adjacent logits with R = 8 or
40 bins per thread, a warp-per-pixel kernel for channels_last with R = 1, 4,
10 or 20 bins per lane, and a generic one for float64 or Q > 640), and the
capacity of its k-nearest list from k (1, 8 or 16). The codebook sizes below
reach each of them; the CPU kernels run the same cases. Centres and ab on a
coarse integer grid make exact distance ties frequent, so the merge of the
per-warp nearest lists must reproduce the reference's lowest-index rule.
"""

import pytest
import torch

import fastcolor
from fastcolor import ops, reference

from conftest import DEVICES
from test_ops import GRAD_TOL, VALUE_TOL, _loss_and_grad, _skip_unsupported, rand_logits

# Q -> kernels reached on CUDA: (pixel-adjacent, channels_last)
BINS = [2, 32, 100, 313, 500, 700]  # tile R8|warp R1, tile R8|R1, R40|R4, R40|R10, R40|R20, generic


def grid_codebook(gen, q):
    """q distinct centres on a step-10 grid (ties in distance are common)."""
    side = max(int((4 * q) ** 0.5) + 2, 4)
    cells = torch.randperm(side * side, generator=gen)[:q]
    a = (cells // side - side // 2).float() * 10
    b = (cells % side - side // 2).float() * 10
    return torch.stack([a, b], 1)


def grid_ab(gen, n, h, w, extent):
    """ab on a step-5 grid: many pixels sit exactly between bins."""
    return (torch.randint(-extent, extent + 1, (n, 2, h, w), generator=gen) * 5).float()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("q", BINS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_variants(device, q, layout, dtype, gen):
    _skip_unsupported(device)
    n, h, w_ = 2, 5, 37  # 370 pixels: several 32-pixel tiles and a ragged last one
    c = grid_codebook(gen, q).to(device)
    weights = (torch.rand(q, generator=gen) * 3 + 0.1).to(device)
    extent = int(c.abs().max()) // 5 + 4
    ab = grid_ab(gen, n, h, w_, extent).to(device)
    z = rand_logits(gen, n, q, h, w_, dtype, device, layout)
    for k in sorted({1, min(5, q), min(16, q)}):
        loss, grad, g = _loss_and_grad(ops.rebalanced_cross_entropy, z, ab, c, weights, k=k, sigma=5.0,
                                       reduction="none")
        zr = z.detach().clone().requires_grad_()
        ref = reference.rebalanced_cross_entropy(zr, ab, c, weights, pixel_weight=None, k=k, sigma=5.0, reduction="none")
        (ref_grad,) = torch.autograd.grad(ref, zr, g)
        torch.testing.assert_close(loss, ref.detach(), rtol=VALUE_TOL[dtype][0], atol=1e-4)
        rtol, atol = GRAD_TOL[dtype]
        torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol * float(ref_grad.abs().max()))


# Gradients of 4 MiB and more leave the CPU kernel through streaming stores
# (csrc/cpu/cpu_common.h, stream_row) into recycled memory: 64-byte-aligned rows (H W a multiple
# of 16), rows that are not (H W odd: plain stores), tiles across images and a
# ragged last tile, float32 and float64, k = 1 and k = 5.
@pytest.mark.parametrize("shape,dtype", [
    ((1, 32, 256, 128), torch.float32),  # exactly 4 MiB, every row aligned
    ((3, 32, 105, 107), torch.float32),  # 4.3 MiB, rows unaligned, ragged last tile
    ((2, 17, 123, 129), torch.float64),  # 4.1 MiB, float64
])
@pytest.mark.parametrize("k", [1, 5])
def test_cross_entropy_streamed_gradient(shape, dtype, k, gen):
    n, q, h, w_ = shape
    assert n * q * h * w_ * (4 if dtype == torch.float32 else 8) >= 4 << 20
    c = grid_codebook(gen, q)
    weights = torch.rand(q, generator=gen) * 3 + 0.1
    ab = grid_ab(gen, n, h, w_, int(c.abs().max()) // 5 + 4)
    z = torch.randn(n, q, h, w_, generator=gen, dtype=dtype) * 3
    # Gradients of 4 MiB and more are also recycled (csrc/cpu/output_pool.h):
    # poison one, free it, and the next call must write every element again.
    first = _loss_and_grad(ops.rebalanced_cross_entropy, z, ab, c, weights, k=k, sigma=5.0, reduction="none")[1]
    first.fill_(float("nan"))
    del first
    loss, grad, g = _loss_and_grad(ops.rebalanced_cross_entropy, z, ab, c, weights, k=k, sigma=5.0, reduction="none")
    zr = z.detach().clone().requires_grad_()
    ref = reference.rebalanced_cross_entropy(zr, ab, c, weights, pixel_weight=None, k=k, sigma=5.0, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref, zr, g)
    torch.testing.assert_close(loss, ref.detach().to(loss.dtype), rtol=VALUE_TOL[dtype][0], atol=1e-4)
    rtol, atol = GRAD_TOL[dtype]
    torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol * float(ref_grad.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("q", BINS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_annealed_mean_variants(device, q, layout, dtype, gen):
    _skip_unsupported(device)
    n, h, w_ = 2, 5, 37
    c = grid_codebook(gen, q).to(device)
    z = rand_logits(gen, n, q, h, w_, dtype, device, layout)
    z[0, :, 0, 0] = 1.0  # all bins equal: T = 0 must pick bin 0
    for t in [0.0, 0.38, 2.0]:
        got = ops.annealed_mean(z, c, t)
        want = reference.annealed_mean(z, c, t)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-3)
        if t > 0:
            zz = z.detach().clone().requires_grad_()
            zr = z.detach().clone().requires_grad_()
            g = torch.randn(n, 2, h, w_, generator=gen).to(device)
            (grad,) = torch.autograd.grad(ops.annealed_mean(zz, c, t), zz, g)
            (ref_grad,) = torch.autograd.grad(reference.annealed_mean(zr, c, t), zr, g)
            # grad_q = p_q / T * (g . c_q - g . ab): the difference of two sums of
            # terms up to ~|g| 100 cancels, so float32 agrees to ~1e-7 of those
            # terms, i.e. a few 1e-6 of the largest gradient (seen: 2.7e-6 at Q = 500).
            rtol, atol = GRAD_TOL[dtype]
            atol = max(atol, 1e-5)
            torch.testing.assert_close(grad, ref_grad, rtol=rtol, atol=atol * float(ref_grad.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("q", [2, 313, 700])
def test_ab_ops_variants(device, q, gen):
    _skip_unsupported(device)
    c = grid_codebook(gen, q).to(device)
    extent = int(c.abs().max()) // 5 + 4
    ab = grid_ab(gen, 3, 7, 33, extent).to(device)
    assert torch.equal(ops.nearest_bin(ab, c), reference.nearest_bin(ab, c))
    torch.testing.assert_close(ops.bin_histogram(ab, c), reference.bin_histogram(ab, c), rtol=0, atol=0)
    k = min(5, q)
    torch.testing.assert_close(ops.soft_encode(ab, c, k, 5.0), reference.soft_encode(ab, c, k, 5.0),
                               rtol=1e-5, atol=1e-6)


# ------------------------------------------------ poisoned outputs

@pytest.fixture
def poisoned_memory():
    """Every tensor the ops allocate without initialising starts as NaN (or the
    largest integer): PyTorch fills uninitialised memory when deterministic
    algorithms are on. An element a kernel forgets to write then fails the
    comparison with the reference instead of passing by luck on zeroed memory."""
    before = (torch.are_deterministic_algorithms_enabled(),
              torch.utils.deterministic.fill_uninitialized_memory)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(before[0])
    torch.utils.deterministic.fill_uninitialized_memory = before[1]


def test_poisoning_is_active(poisoned_memory):
    assert torch.isnan(torch.empty(16)).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("q", [32, 313, 700])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided"])
def test_no_output_element_is_left_unwritten(device, q, layout, gen, poisoned_memory):
    _skip_unsupported(device)
    n, h, w_ = 3, 7, 15  # 315 pixels: a ragged last tile
    c = grid_codebook(gen, q).to(device)
    weights = (torch.rand(q, generator=gen) + 0.5).to(device)
    ab = (torch.randn(n, 2, h, w_, generator=gen) * 40).to(device)
    z = rand_logits(gen, n, q, h, w_, torch.float32, device, layout)
    if device == "cuda":
        # Recycled blocks of the caching allocator are poisoned too.
        junk = torch.full((4 * z.numel(),), float("nan"), device=device)
        del junk
    with torch.no_grad():
        for reduction in ["none", "sum"]:
            loss, grad = torch.ops.fastcolor.rebalanced_cross_entropy(z, ab, c, weights, None, 5, 5.0,
                                                                      reduction, True)
            ref = reference.rebalanced_cross_entropy(z, ab, c, weights, pixel_weight=None, k=5, sigma=5.0, reduction=reduction)
            assert torch.isfinite(loss).all() and torch.isfinite(grad).all()
            torch.testing.assert_close(loss, ref, rtol=2e-5, atol=1e-4)
        decoded, stats = torch.ops.fastcolor.annealed_mean(z, c, 0.38)
        assert torch.isfinite(decoded).all() and torch.isfinite(stats).all()
        torch.testing.assert_close(decoded, reference.annealed_mean(z, c, 0.38), rtol=0, atol=1e-3)
        g = torch.randn(n, 2, h, w_, generator=gen).to(device)
        back = torch.ops.fastcolor.annealed_mean_backward(g, z, c, decoded, stats, 0.38)
        assert torch.isfinite(back).all()
        idx = ops.nearest_bin(ab, c)
        assert (idx >= 0).all() and torch.equal(idx, reference.nearest_bin(ab, c))
        soft = ops.soft_encode(ab, c, 5, 5.0)
        assert torch.isfinite(soft).all()
        torch.testing.assert_close(soft, reference.soft_encode(ab, c, 5, 5.0), rtol=1e-5, atol=1e-6)
