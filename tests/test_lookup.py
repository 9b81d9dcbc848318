"""The per-codebook lookup table of the k nearest bins (csrc/include/fastcolor/
lookup.h, docs/lookup.md) must select exactly what the reference's scan of all
bins selects: for every op, every kind of codebook and every k, including
points placed on and within 1e-4 of the bisectors between centres and of the
grid's cell edges, far outside the codebook's range, and non-finite ones.

The kernels are called through torch.ops.fastcolor directly (the functional
layer rejects non-finite ab on the CPU before they reach a kernel)."""

import math

import pytest
import torch

from fastcolor import ops, reference
from fastcolor.color.codebook import Codebook

from conftest import DEVICES

pytestmark = pytest.mark.skipif(
    not ops.backend_info().get("compiled_cpu", False),
    reason="the compiled extension fastcolor._C did not load (nothing to test against the reference)",
)

INFO = ["ga", "gb", "a0", "b0", "inv_wa", "inv_wb", "entries", "mean_list", "max_list", "bytes", "build_ms"]


def info(centres, k):
    return dict(zip(INFO, torch.ops.fastcolor.lookup_info(centres, k)))


def codebooks(gen):
    """name -> (Q, 2) float32 centres: the kinds of codebook the ops meet."""
    zhang = Codebook.zhang313().centres
    side = 12
    cells = torch.randperm(side * side, generator=gen)[:100]
    grid = torch.stack([(cells // side).float() * 10 - 60, (cells % side).float() * 10 - 60], 1)
    clusters = torch.randn(5, 2, generator=gen) * 40
    clustered = clusters[torch.randint(0, 5, (200,), generator=gen)] + torch.randn(200, 2, generator=gen) * 3
    return {
        "zhang313": zhang,
        "lab_random_57": torch.rand(57, 2, generator=gen) * 200 - 100,
        "yuv_32": torch.rand(32, 2, generator=gen) * torch.tensor([0.9, 1.3]) - torch.tensor([0.45, 0.65]),
        "grid_ties_100": grid,  # integer grid: exact distance ties everywhere
        "clustered_200": clustered,
        "thin_line_40": torch.stack([torch.rand(40, generator=gen) * 100, torch.full((40,), 3.0)], 1),
        "bins_4096": torch.rand(4096, 2, generator=gen) * 220 - 110,
        "two_bins": torch.tensor([[0.0, 0.0], [1.0, 1.0]]),
        "duplicates_9": torch.tensor([[1.0, 1.0]] * 4 + [[5.0, -2.0]] * 3 + [[0.0, 0.0]] * 2),
    }


def probe_points(gen, centres, n):
    """ab (1, 2, 1, M) float32: random points over and beyond the codebook's
    range, midpoints of random pairs of centres (on their bisector) and points
    within 1e-4 (and one float step) of it, points on and near the grid's cell
    edges, and points far outside."""
    c = centres.double()
    lo, hi = c.min(0).values, c.max(0).values
    span = float((hi - lo).max()) or 1.0
    pts = [lo + (hi - lo + span) * torch.rand(n, 2, generator=gen, dtype=torch.float64) - span / 2]
    i = torch.randint(0, len(c), (n,), generator=gen)
    j = torch.randint(0, len(c), (n,), generator=gen)
    mid = (c[i] + c[j]) / 2
    normal = c[j] - c[i]
    normal = normal / normal.norm(dim=1, keepdim=True).clamp_min(1e-30)
    along = torch.stack([-normal[:, 1], normal[:, 0]], 1)
    for eps in (0.0, 1e-4, -1e-4, 1e-6 * span, -1e-6 * span):
        pts.append(mid + eps * normal + along * torch.randn(n, 1, generator=gen, dtype=torch.float64) * span * 0.1)
    m = info(centres, 1)
    if m["ga"] > 0:
        ea = m["a0"] + torch.randint(0, int(m["ga"]) + 1, (n,), generator=gen).double() / m["inv_wa"]
        eb = m["b0"] + torch.randint(0, int(m["gb"]) + 1, (n,), generator=gen).double() / m["inv_wb"]
        free_b = lo[1] + (hi[1] - lo[1]) * torch.rand(n, generator=gen, dtype=torch.float64)
        free_a = lo[0] + (hi[0] - lo[0]) * torch.rand(n, generator=gen, dtype=torch.float64)
        for eps in (0.0, 1e-4, -1e-4):
            pts.append(torch.stack([ea + eps, free_b], 1))
            pts.append(torch.stack([free_a, eb + eps], 1))
            pts.append(torch.stack([ea + eps, eb - eps], 1))  # cell corners
    far = torch.tensor([[1e6, 0.0], [-1e6, 3.0], [0.0, -1e7], [3e18, 3e18], [-1e30, 1e30], [1e38, -1e38]],
                       dtype=torch.float64)
    pts.append(far)
    p = torch.cat(pts).float()
    # one float step either side of every point
    p = torch.cat([p, torch.nextafter(p, torch.full_like(p, math.inf)),
                   torch.nextafter(p, torch.full_like(p, -math.inf))])
    return p.t().reshape(1, 2, 1, -1).contiguous()


def test_table_reports(zhang_centres, gen):
    """Build time and size for 32, 313 and 4096 bins (printed; -s shows them),
    and the table's own invariants: every cell list holds at least k bins."""
    for q, c in [(32, torch.rand(32, 2, generator=gen) - 0.5), (313, zhang_centres),
                 (4096, torch.rand(4096, 2, generator=gen) * 220 - 110)]:
        for k in (1, 5, 16):
            m = info(c, k)
            print(f"Q={q} k={k}: grid {int(m['ga'])}x{int(m['gb'])}, mean list {m['mean_list']:.2f}, "
                  f"longest {int(m['max_list'])}, {m['bytes'] / 1024:.1f} KiB, built in {m['build_ms']:.2f} ms")
            assert m["ga"] * m["gb"] > 0
            assert k <= m["mean_list"] <= q and k <= m["max_list"] <= q
    # a codebook with no spread gets no grid: every point takes the full list
    assert info(torch.tensor([[2.0, 2.0]] * 3), 1)["ga"] == 0


@pytest.mark.parametrize("device", DEVICES)
def test_nearest_and_histogram_equal_the_scan(device, gen):
    for name, c in codebooks(gen).items():
        ab = probe_points(gen, c, n=300 if len(c) < 1000 else 60).to(device)
        c = c.to(device)
        want = reference.nearest_bin(ab, c)
        got = torch.ops.fastcolor.nearest_bin(ab, c)
        assert torch.equal(got, want), name
        assert torch.equal(torch.ops.fastcolor.bin_histogram(ab, c, None), reference.bin_histogram(ab, c)), name


@pytest.mark.parametrize("device", DEVICES)
def test_k_nearest_selection_equals_the_scan(device, gen):
    """soft_encode with a wide Gaussian (no weight underflows to 0): its support
    is exactly the reference's k nearest, its values the reference's."""
    for name, c in codebooks(gen).items():
        ab = probe_points(gen, c, n=100 if len(c) < 1000 else 20).to(device)
        c = c.to(device)
        ks = {2, 5, 16, len(c) - 1} if len(c) < 1000 else {16}  # 4096 bins: each table takes a while
        for k in sorted(ks & set(range(1, min(16, len(c)) + 1))):
            sigma = 1e18  # weights near 1: none underflows, so the support is the selection
            got = torch.ops.fastcolor.soft_encode(ab, c, k, sigma)
            want = reference.soft_encode(ab, c, k, sigma)
            assert torch.equal(got != 0, want != 0), (name, k)
            torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
            idx, _ = reference._k_nearest(ab, c, k)
            assert torch.equal((got > 0).sum(1), torch.full_like(idx[:, 0], k)), (name, k)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_loss_equals_reference_on_random_codebooks(device, dtype, gen):
    """The fused loss selects its targets and class weight through the table."""
    for name, c in codebooks(gen).items():
        q = len(c)
        if q > 700:
            continue  # the generic kernel, covered by the selection tests
        ab = probe_points(gen, c, n=60)
        ab = ab[..., torch.isfinite(ab).all(1).flatten()]
        ab = ab[..., (ab.abs() < 1e6).all(1).flatten()].to(device)  # the loss's own rounding, not selection
        c = c.to(device)
        wts = (torch.rand(q, generator=gen) * 3 + 0.1).to(device)
        z = torch.randn(1, q, 1, ab.shape[-1], generator=gen).to(device=device, dtype=dtype)
        spread = float((c.max(0).values - c.min(0).values).max()) or 1.0
        for k in sorted({1, min(5, q), min(16, q)}):
            sigma = 0.1 * spread
            loss, grad = torch.ops.fastcolor.rebalanced_cross_entropy(z, ab, c, wts, None, k, sigma, "none", True)
            zr = z.detach().float().requires_grad_()
            ref = reference.rebalanced_cross_entropy(zr, ab, c, wts, k=k, sigma=sigma, reduction="none")
            (ref_grad,) = torch.autograd.grad(ref.sum(), zr)
            tol = 1e-4 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(loss, ref.detach(), rtol=tol, atol=tol), (name, k)
            torch.testing.assert_close(grad.float(), ref_grad, rtol=tol, atol=tol * float(ref_grad.abs().max()))


@pytest.mark.parametrize("device", DEVICES)
def test_non_finite_and_far_points(device, zhang_centres):
    c = zhang_centres.to(device)
    vals = [math.nan, math.inf, -math.inf, 0.0, 1e30, -3e38]
    pts = torch.tensor([[a, b] for a in vals for b in vals], dtype=torch.float32)
    ab = pts.t().reshape(1, 2, 1, -1).contiguous().to(device)
    got = torch.ops.fastcolor.nearest_bin(ab, c)
    assert torch.equal(got, reference.nearest_bin(ab, c))
    finite = torch.isfinite(ab).all(1)
    assert (got[~finite] == -1).all() and (got[finite] >= 0).all()
    se = torch.ops.fastcolor.soft_encode(ab, c, 5, 5.0)
    torch.testing.assert_close(se, reference.soft_encode(ab, c, 5, 5.0), equal_nan=True)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("q", [2, 32, 64, 65])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_hard_target_loss_with_non_finite_points_and_pixel_weights(device, q, layout, gen):
    """k = 1 on codebooks around the CPU's vector-scan bound (64 bins): odd
    sizes (partial tiles), exact ties (duplicated centres), non-finite ab
    (NaN loss and gradient there, the rest exact), a pixel weight."""
    c = torch.rand(q, 2, generator=gen) * 2 - 1
    c[q // 2] = c[0]  # a duplicated centre: ties to the lower index
    n, h, w = 3, 7, 13
    ab = torch.rand(n, 2, h, w, generator=gen) * 2.4 - 1.2
    ab[0, :, 0, :4] = (c[0] + c[1]).div(2)[:, None]  # on a bisector
    ab[1, 0, 2, 3], ab[2, 1, 5, 7], ab[2, :, 6, 12] = math.nan, math.inf, -math.inf
    pw = torch.rand(n, h, w, generator=gen) + 0.5
    z = torch.randn(n, q, h, w, generator=gen)
    if layout == "channels_last":
        ab, z = ab.contiguous(memory_format=torch.channels_last), z.contiguous(memory_format=torch.channels_last)
    wts = torch.rand(q, generator=gen) + 0.1
    ab, z, c, wts, pw = (t.to(device) for t in (ab, z, c, wts, pw))
    loss, grad = torch.ops.fastcolor.rebalanced_cross_entropy(z, ab, c, wts, pw, 1, 0.05, "none", True)
    bad = ~torch.isfinite(ab).all(1)
    assert loss[bad].isnan().all() and grad.permute(0, 2, 3, 1)[bad].isnan().all()
    good = ab.masked_fill(bad[:, None], 0.0)
    zr = z.detach().clone().requires_grad_()
    ref = reference.rebalanced_cross_entropy(zr, good, c, wts, pixel_weight=pw, k=1, sigma=0.05, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref.sum(), zr)
    torch.testing.assert_close(loss[~bad], ref.detach()[~bad], rtol=1e-5, atol=1e-5)
    keep = (~bad)[:, None].expand_as(grad)
    torch.testing.assert_close(grad[keep], ref_grad[keep], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_table_follows_in_place_changes(device, gen):
    """The cache must never serve a table built for other centres: change the
    centres in place between calls (same tensor, same storage)."""
    c = (torch.rand(50, 2, generator=gen) * 100).to(device)
    ab = probe_points(gen, c, n=100).to(device)
    for _ in range(3):
        assert torch.equal(torch.ops.fastcolor.nearest_bin(ab, c), reference.nearest_bin(ab, c))
        c.mul_(0.5).add_(torch.randn(50, 2, generator=gen).to(device))
    if device == "cpu":  # found by content on the CPU: even a write that bypasses the version counter
        c.data.copy_(torch.rand(50, 2, generator=gen) * 100)
        assert torch.equal(torch.ops.fastcolor.nearest_bin(ab, c), reference.nearest_bin(ab, c))
