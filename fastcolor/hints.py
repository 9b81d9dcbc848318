"""Colour hints and palettes that act on the predicted colour distribution.

A classification model predicts, at every pixel x, logits z_q(x) over the Q
chroma bins c_q of its codebook. A hint (a point or a stroke with a colour h,
its chroma ab_h) multiplies the class probabilities near it by a kernel
around the hinted colour, raised to a weight w(x) in [0, strength] that falls
off with distance (and, with propagation="edge", across lightness edges):

    p_q(x) <- p_q(x) * exp(-|c_q - ab_h|^2 / 2 s^2) ^ w(x),   renormalised,

done in log space: z_q(x) += w(x) * (-|c_q - ab_h|^2 / 2 s^2). Several hints
add up (their kernels multiply). The annealed mean then decodes at the
temperature T as usual. No retraining: any classification model works; an L2
model has no distribution (ValueError).

    colorizer.colorize("photo.jpg", hints=[(120, 80, "#2e8b57"),
                                           Hint.stroke([(10, 10), (60, 12)], "#cc2222")],
                       palette=Palette.parse("#2e8b57,#cc2222,#e0c8a0"))

Hint colours: sRGB hex ("#RRGGBB"); the chroma used is the hex colour's own
chroma (a*b* of its Lab, or UV of its YUV), at the hex colour's own
lightness. The output keeps the photo's lightness, so a hint sets the hue
and saturation of a region, not its brightness: "#2e8b57" on a bright patch
gives a light green.

Coordinates: pixels of the image as displayed (after EXIF rotation), x to
the right in [0, W), y down in [0, H); pixel (x, y) covers [x, x+1) x [y, y+1).

The weight map lives at the logits' resolution (the network input
input_size x input_size, divided by the network's stride; at most 64 x 64,
bilinearly upsampled beyond that). Distances are measured in units of the
image's shorter side, in displayed-image geometry, so a radius means the same
on any image and aspect ratio:

* ``propagation="gaussian"``: w = strength * exp(-d^2 / 2 r^2), d the
  Euclidean distance to the hint (to the nearest point of a stroke).
* ``propagation="edge"`` (default): the same with d the geodesic distance on
  the grid of logit pixels (8-neighbours), a step costing
  sqrt(step^2 + (edge_sensitivity * dL)^2), dL the difference of lightness
  (normalised to [0, 1]: L*/100 or Y) between the two cells. A hint fills the
  region of similar lightness it lands on and stops at strong edges.

Both cut off at d = 3 r (w = 0 beyond).

Palettes (``Palette``): colours for the whole image, given as hex or taken
from an image (its k most frequent codebook bins).

* ``mode="restrict"``: every output chroma (ColorizeResult.chroma, before
  the conversion to 8-bit sRGB and its gamut clip) lies within ``distance``
  of a palette colour, at any temperature. Per logit pixel, the palette colour j whose
  bins (the bins within ``distance`` of it) hold the most probability (at
  T = 1, after the hints) is chosen, and the annealed mean runs over those
  bins only: a convex combination of points in the disc of radius
  ``distance`` around colour j stays in that disc. The bilinear upsampling
  to full size can leave a pixel between two cells of different colours
  farther than ``distance`` from all of them: such pixels are projected onto
  the nearest colour's disc (project_to_palette). A palette colour with no
  bin within ``distance`` is a ValueError (raise the distance).
* ``mode="bias"``: a global hint: z_q += strength * log sum_j exp(-|c_q - p_j|^2 / 2 s^2).
"""

from __future__ import annotations

import dataclasses
import math
import re

import torch
import torch.nn.functional as F

__all__ = ["Hint", "HintOptions", "Palette", "PROPAGATIONS", "PALETTE_MODES", "parse_color", "as_hints", "check_inside",
           "project_to_palette", "steer_logits", "weight_maps"]

PROPAGATIONS = ("edge", "gaussian")
PALETTE_MODES = ("restrict", "bias")
DEFAULT_STRENGTH = 4.0  # the exponent w at the hint: p * K^4, K of width s, is a kernel of width s/2
DEFAULT_RADIUS = 0.32  # falloff scale r, in units of the image's shorter side (tuned: benchmarks/bench_hints.py)
DEFAULT_EDGE_SENSITIVITY = 1.0  # step cost sqrt(step^2 + dL^2): a 0.3 lightness edge costs 0.3 shorter sides (tuned)
DEFAULT_SIGMA_FACTOR = 2.0  # kernel width s = 2 x codebook.default_sigma (10 a*b* units for zhang313)
DEFAULT_PALETTE_DISTANCE_FACTOR = 3.0  # restrict distance = 3 x default_sigma (15 a*b* units)
DEFAULT_PALETTE_SIZE = 8  # colours taken from a palette image
CUTOFF = 3.0  # w = 0 beyond 3 r
MAX_GRID = 64  # weight maps are computed on at most 64 x 64 cells
MASKED = -1e30  # logit of a bin a palette excludes: exp underflows to exactly 0 at any T


def _finite(value, what):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return v


def parse_color(value, what="colour"):
    """An sRGB colour as (r, g, b) ints 0..255: "#RRGGBB" (the "#" optional),
    or a sequence of three ints 0..255."""
    if isinstance(value, str):
        m = re.fullmatch(r"#?([0-9a-fA-F]{6})", value.strip())
        if not m:
            raise ValueError(f"{what}: {value!r} is not a colour; write it as #RRGGBB (e.g. #2e8b57)")
        h = m.group(1)
        return tuple(int(h[i:i + 2], 16) for i in (0, 2, 4))
    try:
        rgb = tuple(value)
    except TypeError:
        raise ValueError(f"{what}: {value!r} is not a colour; write it as #RRGGBB or (r, g, b)") from None
    if len(rgb) != 3 or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in rgb):
        raise ValueError(f"{what}: {value!r} is not a colour; (r, g, b) needs three integers 0..255")
    return rgb


def _hex(rgb):
    return "#%02x%02x%02x" % rgb


@dataclasses.dataclass(frozen=True)
class Hint:
    """A colour hint: a point (one (x, y)) or a stroke (a polyline of points)
    with one sRGB colour. strength: the weight at the hint (None = the
    HintOptions' strength)."""

    points: tuple
    color: tuple
    strength: float | None = None

    def __post_init__(self):
        what = f"hint {self.points!r}"
        try:
            points = tuple((_finite(p[0], f"{what}: x"), _finite(p[1], f"{what}: y")) if len(p) == 2
                           else _bad_point(what, p) for p in self.points)
        except TypeError:
            raise ValueError(f"{what}: points must be a list of (x, y) pairs") from None
        if not points:
            raise ValueError("a hint needs at least one point")
        object.__setattr__(self, "points", points)
        object.__setattr__(self, "color", parse_color(self.color, f"hint {self._where()}"))
        if self.strength is not None:
            s = _finite(self.strength, f"hint {self}: strength")
            if s < 0:
                raise ValueError(f"hint {self}: strength must be >= 0, got {s}")
            object.__setattr__(self, "strength", s)

    @classmethod
    def point(cls, x, y, color, strength=None):
        return cls(((x, y),), color, strength)

    @classmethod
    def stroke(cls, points, color, strength=None):
        return cls(tuple(points), color, strength)

    def _where(self):
        if len(self.points) == 1:
            return "%g,%g" % self.points[0]
        return "stroke " + ";".join("%g,%g" % p for p in self.points)

    def __str__(self):
        return f"{self._where()},{_hex(self.color)}"


def _bad_point(what, p):
    raise ValueError(f"{what}: a point must be (x, y), got {p!r}")


def as_hint(value, index=None):
    """A Hint from a Hint, (x, y, colour), {"x", "y", "color"[, "strength"]}
    or {"points": [[x, y], ...], "color"[, "strength"]}."""
    if isinstance(value, Hint):
        return value
    label = "hint" if index is None else f"hint {index}"
    if isinstance(value, dict):
        unknown = set(value) - {"x", "y", "points", "color", "strength"}
        if unknown or "color" not in value or (("points" in value) == ("x" in value or "y" in value)):
            raise ValueError(f"{label} {value!r}: write {{'x': X, 'y': Y, 'color': '#RRGGBB'}} or "
                             "{'points': [[X, Y], ...], 'color': '#RRGGBB'} (optional 'strength')")
        points = value["points"] if "points" in value else [(value.get("x"), value.get("y"))]
        if not isinstance(points, (list, tuple)):
            raise ValueError(f"{label} {value!r}: points must be a list of [x, y] pairs")
        return Hint(tuple(points), value["color"], value.get("strength"))
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return Hint.point(*value)
    raise ValueError(f"{label} {value!r}: a hint is (x, y, '#RRGGBB'), a dict or a fastcolor.hints.Hint")


def as_hints(values):
    """A list of Hints from an iterable of what as_hint accepts (None = no hints)."""
    if values is None:
        return []
    if isinstance(values, (Hint, dict)) or isinstance(values, str):
        raise ValueError("hints must be a list of hints")
    return [as_hint(v, i) for i, v in enumerate(values)]


@dataclasses.dataclass(frozen=True)
class HintOptions:
    """How hints act (defaults in brackets).

    propagation: "edge" (geodesic distance guided by the lightness; default)
        or "gaussian" (isotropic Euclidean falloff).
    strength: the exponent w at the hint point [4].
    radius: falloff scale r, in units of the image's shorter side [0.32].
    edge_sensitivity: lightness-difference weight of the edge-aware step cost [1].
    sigma: kernel width s in chroma units [None: 2 x codebook.default_sigma,
        10 a*b* units for zhang313]; the effective width at the hint point
        is s / sqrt(strength).
    """

    propagation: str = "edge"
    strength: float = DEFAULT_STRENGTH
    radius: float = DEFAULT_RADIUS
    edge_sensitivity: float = DEFAULT_EDGE_SENSITIVITY
    sigma: float | None = None

    def __post_init__(self):
        if self.propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {self.propagation!r}")
        for name, positive in (("strength", False), ("radius", True), ("edge_sensitivity", False),
                               ("sigma", True)):
            value = getattr(self, name)
            if value is None and name == "sigma":
                continue
            v = _finite(value, f"hint option {name}")
            if v < 0 or (positive and v == 0):
                raise ValueError(f"hint option {name} must be {'> 0' if positive else '>= 0'}, got {v}")
            object.__setattr__(self, name, v)

    def kernel_sigma(self, codebook):
        return self.sigma if self.sigma is not None else DEFAULT_SIGMA_FACTOR * codebook.default_sigma


@dataclasses.dataclass(frozen=True)
class Palette:
    """Colours for the whole image: ``colors`` (hex strings or (r, g, b)), or
    ``image`` (anything fastcolor.data.images.read_image reads) whose k most
    frequent codebook bins become the palette.

    mode: "restrict" (every decoded chroma within ``distance`` of a palette
        colour; default) or "bias" (a global hint of weight ``strength``).
    distance: the restrict radius in chroma units [None: 3 x
        codebook.default_sigma, 15 a*b* units for zhang313].
    strength, sigma: the bias mode's weight [1] and kernel width [None: 2 x
        codebook.default_sigma].
    """

    colors: tuple | None = None
    image: object = None
    k: int = DEFAULT_PALETTE_SIZE
    mode: str = "restrict"
    distance: float | None = None
    strength: float = 1.0
    sigma: float | None = None

    def __post_init__(self):
        if (self.colors is None) == (self.image is None):
            raise ValueError("a palette needs colours or an image (one of the two)")
        if self.colors is not None:
            colors = [self.colors] if isinstance(self.colors, str) else list(self.colors)
            if not colors:
                raise ValueError("a palette needs at least one colour")
            object.__setattr__(self, "colors",
                               tuple(parse_color(c, f"palette colour {i + 1}") for i, c in enumerate(colors)))
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"palette size k must be a positive integer, got {self.k!r}")
        if self.mode not in PALETTE_MODES:
            raise ValueError(f"palette mode must be one of {PALETTE_MODES}, got {self.mode!r}")
        for name in ("distance", "sigma", "strength"):
            value = getattr(self, name)
            if value is None:
                continue
            v = _finite(value, f"palette {name}")
            if v <= 0 if name != "strength" else v < 0:
                raise ValueError(f"palette {name} must be {'> 0' if name != 'strength' else '>= 0'}, got {v}")
            object.__setattr__(self, name, v)

    @classmethod
    def parse(cls, text, **kwargs):
        """"#hex,#hex,..." or the path of an image to take the palette from."""
        from pathlib import Path

        if not isinstance(text, str):
            raise ValueError(f"a palette is '#hex,#hex,...' or an image path, got {text!r}")
        if Path(text).is_file():
            return cls(image=text, **kwargs)
        parts = [p.strip() for p in text.split(",")]
        if not all(re.fullmatch(r"#?[0-9a-fA-F]{6}", p) for p in parts):
            raise ValueError(f"palette {text!r} is neither '#RRGGBB,#RRGGBB,...' nor an existing image file")
        return cls(colors=tuple(parts), **kwargs)

    @classmethod
    def from_image(cls, image, k=DEFAULT_PALETTE_SIZE, **kwargs):
        return cls(image=image, k=k, **kwargs)

    def chroma(self, codebook):
        """(P, 2) float32 palette chroma in the codebook's space."""
        from .color.spaces import color_space
        from .ops import bin_histogram

        space = color_space(codebook.space)
        if self.colors is not None:
            return _rgb_chroma(self.colors, space)
        from .data.images import read_image_float

        rgb, _ = read_image_float(self.image)
        counts = bin_histogram(space.chroma(rgb[None]), codebook.centres)
        k = min(self.k, int((counts > 0).sum()))
        return codebook.centres[counts.topk(k).indices].clone()

    def restrict_distance(self, codebook):
        return self.distance if self.distance is not None else DEFAULT_PALETTE_DISTANCE_FACTOR * codebook.default_sigma

    def kernel_sigma(self, codebook):
        return self.sigma if self.sigma is not None else DEFAULT_SIGMA_FACTOR * codebook.default_sigma


def _rgb_chroma(colors, space):
    rgb = torch.tensor(colors, dtype=torch.float32).t()[None, :, :, None] / 255.0  # (1, 3, P, 1)
    return space.chroma(rgb)[0, :, :, 0].t().contiguous()  # (P, 2)


# ------------------------------------------------------------------ weight maps


def _grid_geometry(size, grid):
    """Cell centres of a (gh, gw) grid over an (H, W) image, in shorter-side units: (ys (gh,), xs (gw,))."""
    (H, W), (gh, gw) = size, grid
    unit = float(min(H, W))
    ys = (torch.arange(gh, dtype=torch.float32) + 0.5) * (H / gh) / unit
    xs = (torch.arange(gw, dtype=torch.float32) + 0.5) * (W / gw) / unit
    return ys, xs


def _polyline_distances(hints, size, grid):
    """(K, gh, gw) Euclidean distance (shorter-side units) of each cell centre to each hint."""
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
    a = torch.tensor(starts)[:, None, :]  # (S, 1, 2)
    ab = torch.tensor(ends)[:, None, :] - a
    t = (((cells[None] - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)  # (S, G)
    d = (cells[None] - (a + t[..., None] * ab)).norm(dim=-1)
    out = torch.full((len(hints), d.shape[1]), float("inf"))
    out.scatter_reduce_(0, torch.tensor(owner)[:, None].expand_as(d), d, "amin")
    return out.reshape(len(hints), *grid)


_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def _geodesic(seeds, light, size, options):
    """Geodesic distances from seed distances (K, gh, gw) (inf = not a seed),
    step cost sqrt(step^2 + (edge_sensitivity dL)^2), relaxed until stable or
    until every path shorter than the cutoff is found."""
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
    costs = torch.stack(costs)[:, None]  # (8, 1, gh, gw): the cost from the neighbour to the cell
    limit = CUTOFF * options.radius
    steps = min(int(math.ceil(limit / min(dx, dy))) + 1, gh * gw)
    d = seeds
    for _ in range(steps):
        dp = F.pad(d[None], (1, 1, 1, 1), value=float("inf"))[0]
        nb = torch.stack([dp[:, 1 + oy:1 + oy + gh, 1 + ox:1 + ox + gw] for oy, ox in _NEIGHBOURS])
        new = torch.minimum(d, (nb + costs).amin(0))
        if torch.equal(new, d):
            break
        d = new
    return d


def check_inside(hints, size):
    """ValueError naming the first hint with a point outside an (H, W) image."""
    H, W = size
    for i, hint in enumerate(hints):
        for x, y in hint.points:
            if not (0 <= x < W and 0 <= y < H):
                raise ValueError(f"hint {i} ({hint}) lies outside the image: x must be in [0, {W}) and "
                                 f"y in [0, {H}) (pixels of the image as displayed, after EXIF rotation)")


def weight_maps(hints, light, size, options):
    """(K, gh, gw) weights w_k in [0, strength_k] of hints on a grid.

    light: (gh, gw) lightness normalised to [0, 1] at the grid's resolution.
    size: (H, W) of the displayed image the hint coordinates refer to.
    """
    check_inside(hints, size)
    grid = tuple(light.shape)
    d = _polyline_distances(hints, size, grid)
    if options.propagation == "edge":
        ys, xs = _grid_geometry(size, grid)
        half_diag = 0.5 * math.hypot(float(ys[1] - ys[0]) if grid[0] > 1 else 0.0,
                                     float(xs[1] - xs[0]) if grid[1] > 1 else 0.0) + 1e-6
        seeds = torch.where(d <= half_diag, d, float("inf"))
        d = _geodesic(seeds, light.float(), size, options)
    r = options.radius
    w = torch.exp(-d * d / (2 * r * r))
    w = torch.where(d <= CUTOFF * r, w, 0.0)
    strength = torch.tensor([options.strength if h.strength is None else h.strength for h in hints])
    return w * strength[:, None, None]


# ------------------------------------------------------------------ steering the logits


def _log_kernel(centres, targets, sigma):
    """(P, Q) -|c_q - t_p|^2 / 2 s^2."""
    return -torch.cdist(targets.double(), centres.double()).pow(2).float() / (2 * sigma * sigma)


def project_to_palette(chroma, targets, distance):
    """(N, 2, H, W) chroma moved, where farther than distance from every
    palette colour, onto the circle of radius distance around the nearest one
    (the bilinear upsampling between cells that chose different palette
    colours is where this happens); a new tensor."""
    t = targets.to(chroma.device, chroma.dtype)
    diff = chroma[:, None] - t[None, :, :, None, None]  # (N, P, 2, H, W)
    d = diff.norm(dim=2)  # (N, P, H, W)
    nearest = d.argmin(dim=1, keepdim=True)
    dn = d.gather(1, nearest)[:, 0]  # (N, H, W)
    centre = t[nearest[:, 0]].permute(0, 3, 1, 2)  # (N, 2, H, W)
    # a hair inside, so that float rounding keeps the projected point within the distance
    scale = (distance * (1 - 1e-6) / dn.clamp_min(1e-30)).clamp(max=1.0)[:, None]
    return torch.where((dn > distance)[:, None], centre + (chroma - centre) * scale, chroma)


def steer_logits(logits, light, sizes, hints, palette, codebook, options, palette_chroma=None):
    """The logits with hints and a palette applied (a new tensor).

    logits: (N, Q, h, w) float32; light: (N, 1, *) network-input lightness
    normalised to [0, 1]; sizes: [(H, W)] of each displayed image; hints: a
    list (per image) of lists of Hints; palette: a Palette or None.
    """
    from .color.spaces import color_space

    n, q, h, w = logits.shape
    device = logits.device
    centres = codebook.centres.to(device)
    z = logits.clone()
    space = color_space(codebook.space)
    grid = (min(h, MAX_GRID), min(w, MAX_GRID))
    for i, image_hints in enumerate(hints):
        if not image_hints:
            continue
        lg = F.interpolate(light[i:i + 1].float().cpu(), size=grid, mode="area")[0, 0]
        wm = weight_maps(image_hints, lg, sizes[i], options)  # (K, gh, gw)
        if grid != (h, w):
            wm = F.interpolate(wm[None], size=(h, w), mode="bilinear", align_corners=False)[0]
        targets = _rgb_chroma([hint.color for hint in image_hints], space).to(device)
        lk = _log_kernel(centres, targets, options.kernel_sigma(codebook))  # (K, Q)
        z[i] += torch.einsum("khw,kq->qhw", wm.to(device), lk)
    if palette is not None:
        targets = (palette.chroma(codebook) if palette_chroma is None else palette_chroma).to(device)
        if palette.mode == "bias":
            lk = _log_kernel(centres, targets, palette.kernel_sigma(codebook))
            z += palette.strength * torch.logsumexp(lk, dim=0)[None, :, None, None]
        else:
            dist = palette.restrict_distance(codebook)
            member = torch.cdist(targets.double(), centres.double()) <= dist  # (P, Q)
            empty = (~member.any(1)).nonzero().flatten().tolist()
            if empty:
                p = empty[0]
                nearest = float(torch.cdist(targets[p:p + 1].double(), centres.double()).min())
                raise ValueError(f"palette colour {p + 1} has no codebook bin within distance {dist:g} (the "
                                 f"nearest is at {nearest:.3g}): raise the palette distance")
            mass = torch.einsum("pq,nqhw->nphw", member.to(z.dtype), torch.softmax(z, dim=1))
            choice = mass.argmax(dim=1)  # (N, h, w)
            allowed = member[choice].permute(0, 3, 1, 2)  # (N, Q, h, w)
            z = torch.where(allowed, z, MASKED)
    return z
