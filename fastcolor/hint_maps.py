"""The maps a set of hints makes on the grid of logit pixels (fastcolor.hints
describes the method): each hint's falloff w_k, Euclidean or geodesic
(guided by the lightness), and its share pi_k of each cell.

Distances are in units of the image's shorter side, in displayed-image
geometry; the falloff is 0 beyond CUTOFF radii.
"""

import functools
import math

import torch
import torch.nn.functional as F

__all__ = ["CONTRAST_WINDOW", "CUTOFF", "check_inside", "geodesic_distances", "local_contrast", "point_lightness",
           "seed_cells", "seed_lightness", "weight_maps"]

CUTOFF = 3.0  # w = 0 beyond 3 r
CONTRAST_WINDOW = 5  # local contrast averaged over 5 x 5 cells
GEODESIC_CHUNK = 32  # hints relaxed together in geodesic_distances
SEGMENT_CHUNK = 256  # stroke segments measured together in _polyline_distances


def _grid_geometry(size, grid):
    """Cell centres of a (gh, gw) grid over an (H, W) image, in shorter-side units: (ys (gh,), xs (gw,))."""
    (H, W), (gh, gw) = size, grid
    unit = float(min(H, W))
    ys = (torch.arange(gh, dtype=torch.float32) + 0.5) * (H / gh) / unit
    xs = (torch.arange(gw, dtype=torch.float32) + 0.5) * (W / gw) / unit
    return ys, xs


def _polyline_distances(hints, size, grid):
    """(K, gh, gw) Euclidean distance (shorter-side units) of each cell centre to each hint (a new tensor).
    Steering one image asks for the same distances three times (the seeds, the hints' lightness, the
    falloffs), one after the other: the last one is kept."""
    return _polyline_distances_kept(tuple(hints), tuple(size), tuple(grid)).clone()


@functools.lru_cache(maxsize=1)
def _polyline_distances_kept(hints, size, grid):
    H, W = size
    unit = float(min(H, W))
    ys, xs = _grid_geometry(size, grid)
    cells = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 2)  # (G, 2) as (x, y)
    starts, ends, owner = [], [], []
    for k, hint in enumerate(hints):
        pts = [((x + 0.5) / unit, (y + 0.5) / unit) for x, y in hint.points]
        segs = list(zip(pts[:-1], pts[1:])) or [(pts[0], pts[0])]
        for a, b in segs:
            starts.append(a)
            ends.append(b)
            owner.append(k)
    starts, ends, owner = torch.tensor(starts), torch.tensor(ends), torch.tensor(owner)
    out = torch.full((len(hints), cells.shape[0]), float("inf"))
    for i in range(0, len(owner), SEGMENT_CHUNK):  # (segments, cells) a chunk at a time: memory bounded
        a = starts[i:i + SEGMENT_CHUNK, None, :]  # (S, 1, 2)
        ab = ends[i:i + SEGMENT_CHUNK, None, :] - a
        t = (((cells[None] - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)  # (S, G)
        d = (cells[None] - (a + t[..., None] * ab)).norm(dim=-1)
        out.scatter_reduce_(0, owner[i:i + SEGMENT_CHUNK, None].expand_as(d), d, "amin")
    return out.reshape(len(hints), *grid)


_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def geodesic_distances(seeds, light, size, options):
    """(K, gh, gw) geodesic distances on the grid of light (gh, gw) (8
    neighbours, a step costing sqrt(step^2 + (edge_sensitivity dL)^2), steps
    in units of the shorter side of an image of size (H, W)) from seed
    distances (K, gh, gw) (inf: not a seed), one map per hint. Relaxed until
    stable or until every path shorter than the cutoff (CUTOFF
    options.radius) is found: exact up to the cutoff, an upper bound
    beyond."""
    K, gh, gw = seeds.shape
    H, W = size
    dy, dx = H / gh / min(H, W), W / gw / min(H, W)
    lp = F.pad(light[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    costs = []
    for oy, ox in _NEIGHBOURS:
        step2 = (oy * dy) ** 2 + (ox * dx) ** 2
        dl = light - lp[1 + oy:1 + oy + gh, 1 + ox:1 + ox + gw]
        c = torch.sqrt(step2 + (options.edge_sensitivity * dl) ** 2)
        valid = torch.zeros(gh + 2, gw + 2, dtype=torch.bool)
        valid[1:-1, 1:-1] = True
        c = torch.where(valid[1 + oy:1 + oy + gh, 1 + ox:1 + ox + gw], c, float("inf"))
        costs.append(c)
    limit = CUTOFF * options.radius
    steps = min(int(math.ceil(limit / min(dx, dy))) + 1, gh * gw)
    out = torch.empty_like(seeds)
    for start in range(0, K, GEODESIC_CHUNK):  # a few hints at a time: memory bounded at any number of hints
        d = seeds[start:start + GEODESIC_CHUNK].clone()
        padded = torch.full((d.shape[0], gh + 2, gw + 2), float("inf"))
        new, through = torch.empty_like(d), torch.empty_like(d)
        for _ in range(steps):
            padded[:, 1:-1, 1:-1] = d
            new.copy_(d)
            for (oy, ox), cost in zip(_NEIGHBOURS, costs):  # cost: from the neighbour to the cell
                torch.add(padded[:, 1 + oy:1 + oy + gh, 1 + ox:1 + ox + gw], cost, out=through)
                torch.minimum(new, through, out=new)
            if torch.equal(new, d):
                break
            d, new = new, d
        out[start:start + GEODESIC_CHUNK] = d
    return out


def seed_cells(hints, size, grid):
    """(K, gh, gw) bool: each hint's seed cells, the cells of the grid its
    point or stroke passes through (within half a cell diagonal of a cell
    centre; at least the nearest cell)."""
    return _seeds(_polyline_distances(hints, size, grid), size, grid) < float("inf")


def _seeds(d, size, grid):
    """Seed distances from the Euclidean distances d (K, gh, gw): d on the seed cells, inf elsewhere."""
    ys, xs = _grid_geometry(size, grid)
    half_diag = 0.5 * math.hypot(float(ys[1] - ys[0]) if grid[0] > 1 else 0.0,
                                 float(xs[1] - xs[0]) if grid[1] > 1 else 0.0) + 1e-6
    nearest = d <= d.flatten(1).amin(1)[:, None, None]
    return torch.where((d <= half_diag) | nearest, d, float("inf"))


def seed_lightness(hints, light, size):
    """(K,) the mean lightness of each hint's seed cells on the grid of light (gh, gw)."""
    cells = seed_cells(hints, size, tuple(light.shape)).float()
    return (cells * light.float()[None]).flatten(1).sum(1) / cells.flatten(1).sum(1)


def check_inside(hints, size):
    """ValueError naming the first hint with a point outside an (H, W) image."""
    H, W = size
    for i, hint in enumerate(hints):
        for x, y in hint.points:
            if not (0 <= x < W and 0 <= y < H):
                raise ValueError(f"hint {i} ({hint}) lies outside the image: x must be in [0, {W}) and "
                                 f"y in [0, {H}) (pixels of the image as displayed, after EXIF rotation)")


def local_contrast(light, grid):
    """(gh, gw) local contrast of a (h, w) lightness: the standard deviation
    within each grid cell, averaged over the CONTRAST_WINDOW^2 cells around."""
    x = light.float()[None, None]
    mean = F.interpolate(x, size=grid, mode="area")
    sd = (F.interpolate(x * x, size=grid, mode="area") - mean * mean).clamp_min(0).sqrt()
    pad = CONTRAST_WINDOW // 2
    return F.avg_pool2d(F.pad(sd, (pad,) * 4, mode="replicate"), CONTRAST_WINDOW, stride=1)[0, 0]


def point_lightness(hints, fine, size, grid):
    """(K, gh, gw) the lightness of each hint where it lies, read on a finer
    lightness image fine (h, w) (the network input) rather than averaged over
    a grid cell: at every seed cell of hint k (seed_cells), the median over
    the hint's points and stroke samples (one per fine pixel along each
    segment) inside that cell of the 3 x 3 median of fine around them; NaN
    where no sample falls in a seed cell and on the other cells (there the
    cell's own lightness is used). A hint on a small object or near an edge
    so matches the object's lightness, not the cell's mix."""
    (H, W), (h, w), (gh, gw) = size, tuple(fine.shape), grid
    f = F.pad(fine.float()[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    offsets = torch.arange(3)
    seeds = seed_cells(hints, size, grid)
    out = torch.full((len(hints), gh, gw), float("nan"))
    for k, hint in enumerate(hints):
        xy = _stroke_samples(hint.points, (h, w), (H, W))
        fx = (xy[:, 0] * w / W).long().clamp(0, w - 1)
        fy = (xy[:, 1] * h / H).long().clamp(0, h - 1)
        cell = (xy[:, 1] * gh / H).long().clamp(0, gh - 1) * gw + (xy[:, 0] * gw / W).long().clamp(0, gw - 1)
        on_seed = seeds[k].flatten()[cell]
        fx, fy, cell = fx[on_seed], fy[on_seed], cell[on_seed]
        # the 3 x 3 median around each sample only (padded f: pixel (y, x) is f[y + 1, x + 1])
        rows = (fy[:, None] + offsets)[:, :, None].expand(-1, 3, 3)
        cols = (fx[:, None] + offsets)[:, None, :].expand(-1, 3, 3)
        values = f[rows, cols].reshape(-1, 9).median(-1).values
        # the median of each cell's values (the lower middle one, as Tensor.median): sort by value, then
        # stably by cell, and take the middle of each cell's run
        by_value = values.sort(stable=True)
        by_cell = cell[by_value.indices].sort(stable=True)
        ordered = by_value.values[by_cell.indices]
        cells, counts = torch.unique_consecutive(by_cell.values, return_counts=True)
        first = counts.cumsum(0) - counts
        out[k].view(-1)[cells] = ordered[first + (counts - 1) // 2]
    return out


def _stroke_samples(points, fine, size):
    """(S, 2) float64 (x, y): the first point, then along every segment one
    sample per pixel of a (h, w) = fine image it crosses (points in pixels of
    an image of size (H, W)), the segment's end included."""
    pts = torch.tensor(points, dtype=torch.float64)  # (P, 2)
    if len(pts) == 1:
        return pts
    start, step = pts[:-1], pts[1:] - pts[:-1]
    n = torch.maximum(step[:, 0].abs() * fine[1] / size[1], step[:, 1].abs() * fine[0] / size[0])
    n = n.ceil().clamp_min(1).long()
    seg = torch.repeat_interleave(torch.arange(len(n)), n)
    i = torch.arange(len(seg)) - (n.cumsum(0) - n)[seg] + 1  # 1 .. n within each segment
    return torch.cat([pts[:1], start[seg] + step[seg] * i[:, None] / n[seg, None]])


def weight_maps(hints, light, size, options, contrast=None, point_light=None):
    """(w, shares): (K, gh, gw) falloffs w_k in [0, strength_k] and shares
    pi_k (summing to 1 over k wherever some w_k > 0) of hints on a grid.

    light: (gh, gw) lightness normalised to [0, 1] at the grid's resolution;
    contrast: (gh, gw) local contrast (local_contrast), for the edge shares.
    point_light: (K, gh, gw) the lightness the edge shares compare with at
    each hint's seed cells (point_lightness; NaN: the cell's own), or None.
    size: (H, W) of the displayed image the hint coordinates refer to.
    """
    check_inside(hints, size)
    grid = tuple(light.shape)
    d = _polyline_distances(hints, size, grid)
    match = torch.zeros(len(hints), *grid)
    if options.propagation == "edge":
        seeds = _seeds(d, size, grid)
        d = geodesic_distances(seeds, light.float(), size, options)
        match = _seed_mismatch(seeds, light.float(), contrast, options, point_light)
    r = options.radius
    strength = torch.tensor([options.strength if h.strength is None else h.strength for h in hints])[:, None, None]
    fall = -d * d / (2 * r * r)
    w = torch.where(d <= CUTOFF * r, torch.exp(fall), 0.0) * strength
    logits = torch.log(strength) + fall - match  # -inf: no path, or strength 0
    shares = torch.softmax(logits, dim=0).nan_to_num_(0.0)  # a cell no hint reaches: no shares (and w = 0)
    return w, shares


def _seed_mismatch(seeds, light, contrast, options, point_light=None):
    """(K, gh, gw) min over the seed cells s of hint k of
    (L - L_s)^2 / 2 sl^2 + (C - C_s)^2 / 2 sc^2 (0 where both terms are off);
    L_s from point_light where it is given (not NaN)."""
    terms = []
    if options.lightness_sigma > 0:
        terms.append(("light", light, options.lightness_sigma))
    if options.contrast_sigma > 0 and contrast is not None:
        terms.append(("contrast", contrast.float(), options.contrast_sigma))
    out = torch.zeros(seeds.shape)
    if not terms:
        return out
    for k in range(seeds.shape[0]):
        cells = torch.isfinite(seeds[k])
        total = 0.0
        for name, feature, sigma in terms:
            at = feature[cells]
            if name == "light" and point_light is not None:
                at = torch.where(torch.isnan(point_light[k][cells]), at, point_light[k][cells])
            total = total + (feature[None] - at[:, None, None]) ** 2 / (2 * sigma * sigma)
        out[k] = total.amin(0)
    return out
