"""Colour hints and palettes that act on the predicted colour distribution.

A classification model predicts, at every pixel x, logits z_q(x) over the Q
chroma bins c_q of its codebook. Hints (points or strokes, each with a colour
whose chroma is ab_k) steer that distribution: each pixel gets a target
chroma t(x), an average of the hint colours, and a weight W(x) in
[0, sum of the strengths] that falls off with distance from the hints, and
its class probabilities are multiplied by a kernel around the target raised
to that weight:

    p_q(x) <- p_q(x) * exp(-|c_q - t(x)|^2 / 2 s^2) ^ W(x),   renormalised,

done in log space: z_q(x) += W(x) * (-|c_q - t(x)|^2 / 2 s^2). With

    W(x) = sum_k w_k(x),   t(x) = sum_k pi_k(x) rho_k(x) ab_k,

w_k the falloff of hint k (below), pi_k(x) its share of the pixel (the
hints compete for each pixel; weights summing to 1) and rho_k(x) its
shading factor (below; 1 with ``shading=False``). When the shares are
proportional to the falloffs (the Gaussian propagation) this is the product
of one kernel per hint, exp(-|c_q - rho_k ab_k|^2 / 2 s^2) ^ w_k(x). The
annealed mean then decodes at the temperature T as usual. No retraining: any
classification model works; an L2 model has no distribution (ValueError).

Shading (``shading=True``, the default, both propagations): the hinted
chroma follows the lightness as under a change of illumination. Scaling a
surface colour's XYZ by s scales L* + 16, a* and b* by the same s^(1/3)
(and Y', U, V alike), so

    rho_k(x) = (L(x) + 16) / (L_k + 16)   (Lab; Y(x) / Y_k in YUV),

L_k the mean lightness of the hint's seed cells (below), kept in [1/2, 2]:
the hinted cell gets the hint's chroma, a shaded part of the same object a
proportionally weaker one, a lit part a stronger one.

    colorizer.colorize("photo.jpg", hints=[(120, 80, "#2e8b57"),
                                           Hint.stroke([(10, 10), (60, 12)], "#cc2222")],
                       palette=Palette.parse("#2e8b57,#cc2222,#e0c8a0"))

Hint colours: sRGB hex ("#RRGGBB"); the chroma used is the hex colour's own
chroma (a*b* of its Lab, or UV of its YUV), at the hex colour's own
lightness, on the cells the hint lies on (times rho_k elsewhere). The
output keeps the photo's lightness, so a hint sets the hue and saturation
of a region, not its brightness: "#2e8b57" on a bright patch gives a light
green.

Coordinates: pixels of the image as displayed (after EXIF rotation), x to
the right in [0, W), y down in [0, H); pixel (x, y) covers [x, x+1) x [y, y+1).

The maps live at the logits' resolution (the network input input_size x
input_size, divided by the network's stride; at most 64 x 64, bilinearly
upsampled beyond that). Distances are measured in units of the image's
shorter side, in displayed-image geometry, so a radius means the same on any
image and aspect ratio. The falloff is

    w_k(x) = strength_k * exp(-d_k(x)^2 / 2 r^2),   0 beyond d_k = 3 r,

* ``propagation="gaussian"``: d_k the Euclidean distance to the hint (to the
  nearest point of a stroke); the shares pi_k(x) proportional to
  strength_k * exp(-d_k^2 / 2 r^2) (no cutoff): an isotropic falloff that
  knows nothing of the photo.
* ``propagation="edge"`` (default): d_k the geodesic distance on the grid of
  logit pixels (8-neighbours), a step costing sqrt(step^2 + (edge_sensitivity
  * dL)^2), dL the difference of lightness (normalised to [0, 1]: L*/100 or
  Y) between the two cells, so a hint fills the region of similar lightness
  it lands on and stops at strong edges; and the shares also weigh how much
  the pixel looks like the hint's own cells (its seeds: the cells the hint
  point or stroke lies on): pi_k(x) proportional to

      strength_k * exp(-d_k^2 / 2 r^2) * exp(-min_s [(L(x) - L_s)^2 / 2 sl^2 + (C(x) - C_s)^2 / 2 sc^2]),

  the minimum over the hint's seed cells s, L the cell's lightness, C its
  local contrast (the standard deviation of the network input's lightness
  within the cell, averaged over the 5 x 5 cells around it), sl =
  ``lightness_sigma``, sc = ``contrast_sigma`` (0 turns a term off). Where
  several hints reach a pixel, the one whose seeds match its lightness and
  texture wins it, instead of the colours being averaged.

Full resolution (``full_resolution=True``, the default; edge propagation
only): L_s is the lightness where the hint lies, read on the network input
(point_lightness) rather than the seed cell's mean, and the hints' effect
(the steered chroma minus the plain one, both decoded on the grid and
upsampled) is refined at full resolution by a guided filter guided by the
lightness (fastcolor.hint_refine), so a hinted colour stops at the
lightness edges inside the 4 x 4-pixel cells. Without hints nothing changes.

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

from .hint_maps import CUTOFF, check_inside, local_contrast, point_lightness, seed_lightness, weight_maps

__all__ = ["CUTOFF", "Hint", "HintOptions", "Palette", "PROPAGATIONS", "PALETTE_MODES", "parse_color", "as_hints", "check_inside",
           "local_contrast", "project_to_palette", "shading_ratio", "steer_logits", "weight_maps"]

PROPAGATIONS = ("edge", "gaussian")
PALETTE_MODES = ("restrict", "bias")
DEFAULT_STRENGTH = 4.0  # the exponent w at the hint: p * K^4, K of width s, is a kernel of width s/2
# falloff scale r, in units of the image's shorter side. benchmarks/bench_hints.py tuned 0.32 with the
# kernels multiplied, then 0.64 (its grid's largest) with the shares; 0.64 lets a lone hint flood across
# a strong lightness edge (3 r = 1.9 shorter sides), so the default stays 0.32
DEFAULT_RADIUS = 0.32
DEFAULT_EDGE_SENSITIVITY = 1.0  # step cost sqrt(step^2 + dL^2): a 0.3 lightness edge costs 0.3 shorter sides (tuned)
DEFAULT_LIGHTNESS_SIGMA = 0.05  # edge shares: lightness similarity to the hint's cells, in [0, 1] lightness (tuned)
DEFAULT_CONTRAST_SIGMA = 0.02  # edge shares: local-contrast similarity, in [0, 1] lightness std (tuned)
DEFAULT_SIGMA_FACTOR = 2.0  # kernel width s = 2 x codebook.default_sigma (10 a*b* units for zhang313)
DEFAULT_PALETTE_DISTANCE_FACTOR = 3.0  # restrict distance = 3 x default_sigma (15 a*b* units)
DEFAULT_PALETTE_SIZE = 8  # colours taken from a palette image
MAX_GRID = 64  # weight maps are computed on at most 64 x 64 cells
# shading: chroma proportional to lightness + offset (L* + 16 in Lab, Y in YUV), the ratio kept in [1/2, 2]
SHADING_OFFSET = {"lab": 16.0, "yuv": 0.0}
SHADING_RANGE = (0.5, 2.0)
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
    lightness_sigma, contrast_sigma: how sharply the edge-aware shares prefer
        the hint whose cells match a pixel's lightness [0.05] and local
        contrast [0.02] (normalised lightness units; 0: no preference).
        The Gaussian propagation ignores them.
    shading: the hinted chroma follows the lightness, as under a change of
        illumination (shading_ratio) [True]; False: every pixel gets the
        hint's chroma as it is.
    sigma: kernel width s in chroma units [None: 2 x codebook.default_sigma,
        10 a*b* units for zhang313]; the effective width at the hint point
        is s / sqrt(strength).
    full_resolution: the edge propagation reads each hint's lightness at
        its pixels and refines the hints' effect at full resolution along
        the lightness edges (fastcolor.hint_refine) [True].
    """

    propagation: str = "edge"
    strength: float = DEFAULT_STRENGTH
    radius: float = DEFAULT_RADIUS
    edge_sensitivity: float = DEFAULT_EDGE_SENSITIVITY
    lightness_sigma: float = DEFAULT_LIGHTNESS_SIGMA
    contrast_sigma: float = DEFAULT_CONTRAST_SIGMA
    sigma: float | None = None
    shading: bool = True
    full_resolution: bool = True

    def __post_init__(self):
        if self.propagation not in PROPAGATIONS:
            raise ValueError(f"propagation must be one of {PROPAGATIONS}, got {self.propagation!r}")
        for name in ("shading", "full_resolution"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"hint option {name} must be True or False, got {getattr(self, name)!r}")
        for name, positive in (("strength", False), ("radius", True), ("edge_sensitivity", False),
                               ("lightness_sigma", False), ("contrast_sigma", False), ("sigma", True)):
            value = getattr(self, name)
            if value is None and name == "sigma":
                continue
            v = _finite(value, f"hint option {name}")
            if v < 0 or (positive and v == 0):
                raise ValueError(f"hint option {name} must be {'> 0' if positive else '>= 0'}, got {v}")
            object.__setattr__(self, name, v)

    def kernel_sigma(self, codebook):
        return self.sigma if self.sigma is not None else DEFAULT_SIGMA_FACTOR * codebook.default_sigma

    @property
    def refines(self):
        """Whether the hints' effect is refined at full resolution (fastcolor.hint_refine)."""
        return self.propagation == "edge" and self.full_resolution


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


def shading_ratio(light, hint_light, space):
    """(K, gh, gw) the factor rho_k(x) of hint k's chroma at each cell:
    (L(x) + o) / (L_k + o), kept in SHADING_RANGE. light: (gh, gw) and
    hint_light: (K,) network-input lightness ((L - light_offset) /
    light_scale of the colour space ``space``); o = SHADING_OFFSET (16 for
    L*, 0 for Y). Scaling a colour's XYZ by s scales L* + 16, a* and b* alike
    (by s^(1/3)), and Y', U, V alike; so a shaded part of the hinted object
    gets a proportionally weaker chroma, a lit part a stronger one."""
    offset = SHADING_OFFSET.get(space.name, 0.0)
    lx = light.float() * space.light_scale + space.light_offset + offset
    lk = hint_light.float() * space.light_scale + space.light_offset + offset
    ratio = lx[None] / lk.clamp_min(1e-6)[:, None, None]
    return ratio.clamp(*SHADING_RANGE)


def steer_logits(logits, light, sizes, hints, palette, codebook, options, palette_chroma=None):
    """The logits with hints and a palette applied (a new tensor).

    logits: (N, Q, h, w) float32; light: (N, 1, *) the network input
    (lightness normalised by the colour space: (L - light_offset) /
    light_scale, L*/100 - 0.5 in Lab); sizes: [(H, W)] of each displayed image; hints: a
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
        li = light[i, 0].float().cpu()
        lg = F.interpolate(li[None, None], size=grid, mode="area")[0, 0]
        contrast = local_contrast(li, grid) if options.propagation == "edge" else None
        point_light = point_lightness(image_hints, li, sizes[i], grid) if options.refines else None
        wm, shares = weight_maps(image_hints, lg, sizes[i], options, contrast, point_light)  # (K, gh, gw) each
        targets = _rgb_chroma([hint.color for hint in image_hints], space)  # (K, 2)
        weight = wm.sum(0)[None]  # (1, gh, gw): W
        if options.shading:
            shares = shares * shading_ratio(lg, seed_lightness(image_hints, lg, sizes[i]), space)
        target = torch.einsum("khw,kc->chw", shares, targets)  # (2, gh, gw): t
        if grid != (h, w):
            up = F.interpolate(torch.cat([weight, target])[None], size=(h, w), mode="bilinear", align_corners=False)[0]
            weight, target = up[:1], up[1:]
        sigma = options.kernel_sigma(codebook)
        c = centres.float()
        tt = target.to(device)
        sq = torch.einsum("qc,chw->qhw", c, tt).mul_(-2).add_((c * c).sum(1)[:, None, None]).add_((tt * tt).sum(0)[None])
        z[i] -= sq.clamp_min_(0).mul_(weight.to(device) / (2 * sigma * sigma))
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
