"""The hint maps against plain oracles: the edge-aware propagation's geodesic distances against an exact
shortest path (Dijkstra on the same 8-neighbour graph, scipy), for more hints than are relaxed together, on odd
grids and aspect ratios; the hints' lightness (point_lightness) against the same computed sample by sample."""

import math

import numpy as np
import pytest
import torch

from fastcolor.hint_maps import CUTOFF, GEODESIC_CHUNK, geodesic_distances, point_lightness, seed_cells
from fastcolor.hints import Hint, HintOptions

csgraph = pytest.importorskip("scipy.sparse.csgraph", reason="scipy comes with scikit-image, the test oracle")
sparse = pytest.importorskip("scipy.sparse")

NEIGHBOURS = [(oy, ox) for oy in (-1, 0, 1) for ox in (-1, 0, 1) if (oy, ox) != (0, 0)]


def dijkstra(seeds, light, size, sensitivity):
    """(K, gh, gw) float64 exact distances: a source node per hint joined to its seed cells by their seed
    distances, cells joined to their 8 neighbours at sqrt(step^2 + (sensitivity dL)^2)."""
    K, gh, gw = seeds.shape
    H, W = size
    dy, dx = H / gh / min(H, W), W / gw / min(H, W)
    n = gh * gw
    rows, cols, vals = [], [], []
    L = light.double().numpy()
    for y in range(gh):
        for x in range(gw):
            for oy, ox in NEIGHBOURS:
                v, u = y + oy, x + ox
                if 0 <= v < gh and 0 <= u < gw:
                    rows.append(y * gw + x)
                    cols.append(v * gw + u)
                    vals.append(math.sqrt((oy * dy) ** 2 + (ox * dx) ** 2 + (sensitivity * (L[y, x] - L[v, u])) ** 2))
    out = np.empty((K, gh, gw))
    s = seeds.double().numpy().reshape(K, n)
    for k in range(K):
        cells = np.flatnonzero(np.isfinite(s[k]))
        r = rows + [n] * len(cells)
        c = cols + cells.tolist()
        # a seed at distance 0 still needs an edge: scipy drops explicit zeros, so shift every source edge by 1
        v = vals + (s[k, cells] + 1.0).tolist()
        graph = sparse.csr_matrix((v, (r, c)), shape=(n + 1, n + 1))
        out[k] = csgraph.dijkstra(graph, directed=True, indices=n)[:n].reshape(gh, gw) - 1.0
    return out


@pytest.mark.parametrize("grid,size,radius,sensitivity", [
    ((23, 31), (92, 124), 0.32, 1.0),   # more hints than GEODESIC_CHUNK, wider than tall
    ((40, 17), (163, 68), 0.2, 4.0),    # taller than wide, odd image size, strong edges
    ((9, 9), (36, 36), 1.0, 0.0),       # no edge term: the 8-neighbour path length
])
def test_geodesic_distances_are_exact_within_the_cutoff(grid, size, radius, sensitivity):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    g = torch.Generator().manual_seed(seed)
    gh, gw = grid
    K = GEODESIC_CHUNK + 7
    # piecewise-constant lightness with noise: strong edges and small steps
    light = (torch.rand(gh, gw, generator=g) > 0.6).float().cumsum(1) % 2 * 0.5 + 0.1 * torch.rand(gh, gw, generator=g)
    seeds = torch.full((K, gh, gw), float("inf"))
    for k in range(K):
        for _ in range(1 + k % 3):  # one to three seed cells, at small seed distances
            y, x = int(torch.randint(0, gh, (), generator=g)), int(torch.randint(0, gw, (), generator=g))
            seeds[k, y, x] = float(torch.rand((), generator=g)) * 0.02
    options = HintOptions(radius=radius, edge_sensitivity=sensitivity)
    got = geodesic_distances(seeds, light, size, options).double().numpy()
    want = dijkstra(seeds, light, size, sensitivity)
    inside = want <= CUTOFF * radius
    assert inside.sum() > 1000, "the test needs cells within the cutoff"
    np.testing.assert_allclose(got[inside], want[inside], rtol=1e-5, atol=1e-6, err_msg=f"seed {seed}")
    # beyond the cutoff the relaxation may stop early: never below the true distance
    assert (got[~inside] >= want[~inside] * (1 - 1e-5)).all(), f"seed {seed}"


def test_each_hint_is_independent_of_the_others():
    g = torch.Generator().manual_seed(7)
    light = torch.rand(20, 26, generator=g)
    seeds = torch.full((2 * GEODESIC_CHUNK + 3, 20, 26), float("inf"))
    for k in range(seeds.shape[0]):
        seeds[k, k % 20, (3 * k) % 26] = 0.0
    options = HintOptions(radius=0.5)
    together = geodesic_distances(seeds, light, (80, 104), options)
    for k in (0, GEODESIC_CHUNK - 1, GEODESIC_CHUNK, seeds.shape[0] - 1):
        assert torch.equal(together[k], geodesic_distances(seeds[k:k + 1], light, (80, 104), options)[0])


def point_lightness_by_loops(hints, fine, size, grid):
    """point_lightness written out sample by sample and cell by cell."""
    (H, W), (h, w), (gh, gw) = size, tuple(fine.shape), grid
    seeds = seed_cells(hints, size, grid)
    out = torch.full((len(hints), gh, gw), float("nan"))
    for k, hint in enumerate(hints):
        pts = list(hint.points)
        samples = [pts[0]]
        for (x0, y0), (x1, y1) in zip(pts[:-1], pts[1:]):
            n = max(1, math.ceil(max(abs(x1 - x0) * w / W, abs(y1 - y0) * h / H)))
            samples += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
        per_cell = {}
        for x, y in samples:
            fx, fy = min(max(int(x * w / W), 0), w - 1), min(max(int(y * h / H), 0), h - 1)
            cy, cx = min(max(int(y * gh / H), 0), gh - 1), min(max(int(x * gw / W), 0), gw - 1)
            window = [fine[min(max(fy + dy, 0), h - 1), min(max(fx + dx, 0), w - 1)]
                      for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
            per_cell.setdefault((cy, cx), []).append(torch.stack(window).median())
        for (cy, cx), values in per_cell.items():
            if seeds[k, cy, cx]:
                out[k, cy, cx] = torch.stack(values).median()
    return out


@pytest.mark.parametrize("size,fine", [((97, 301), (224, 224)), ((256, 256), (256, 256)), ((300, 41), (128, 96))])
def test_point_lightness_matches_the_loops(size, fine):
    seed = int(torch.randint(0, 2**31 - 1, ()))
    g = torch.Generator().manual_seed(seed)
    H, W = size
    light = (torch.rand(fine, generator=g) * 5).round() / 5  # many ties
    hints = [Hint.stroke((torch.rand(n, 2, generator=g) * torch.tensor([W - 1e-3, H - 1e-3])).tolist(), "#ff0000")
             for n in (1, 2, 7, 60)]
    grid = (min(64, fine[0] // 4), min(64, fine[1] // 4))
    got, want = point_lightness(hints, light, size, grid), point_lightness_by_loops(hints, light, size, grid)
    assert torch.equal(got.isnan(), want.isnan()), f"seed {seed}"
    assert torch.equal(got.nan_to_num(-1), want.nan_to_num(-1)), f"seed {seed}"
    assert (~got.isnan()).sum() >= 60, f"seed {seed}: the strokes should cover many cells"
