"""Codebooks: the quantised chroma bins a colorization network classifies into.

Two kinds (docs/design.md, section 2.2):

* ``Codebook.zhang313()``: the 313 in-gamut bins of Zhang et al. (ECCV 2016), a
  Lab ab grid of step 10 clipped to the sRGB gamut, derived here from that rule.
* ``Codebook.from_images(...)``: the data-driven bins of the Stanford variant,
  the n most frequent cells of an equal grid over the chroma plane of a dataset.

A Codebook holds (Q, 2) float32 centres plus the chroma space ("lab": a*b*,
"yuv": UV) and the grid step; fastcolor.ops accept it wherever centres go.
"""

import functools
import json
import os

import safetensors
import safetensors.torch
import torch
from tqdm.auto import tqdm

from .. import ops
from ..atomic import atomic_path
from ..data.images import image_stream, rgb_batch
from .convert import rgb_to_lab
from .spaces import SPACES, color_space

__all__ = ["Codebook"]

MAX_BINS = ops.MAX_BINS
_FORMAT, _VERSION = "fastcolor.codebook", 2


def _pair(v, what, cast=float):
    try:
        a, b = (cast(t) for t in v)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair of numbers, got {v!r}") from None
    return a, b


@functools.lru_cache(maxsize=1)
def _zhang313_centres(per_edge=33, directions=4096, half_width=10.0):
    """The ab grid points (step 10) whose square of half-width 10 touches the
    convex hull of the sRGB gamut projected onto the ab plane.

    A point g is in the hull H of a point set S dilated by the square B iff
    <g, u> <= h_S(u) + h_B(u) for every unit u, with support functions
    h_S(u) = max_s <s, u> and h_B(u) = half_width (|u_x| + |u_y|). The hull is
    sampled by the surface of the RGB cube (its interior maps inside it); the
    nearest grid point clears the boundary by 0.086, far above the error of
    either the sampling or the 4096 directions.
    """
    t = torch.linspace(0, 1, per_edge, dtype=torch.float64)
    u, v = (g.reshape(-1) for g in torch.meshgrid(t, t, indexing="ij"))
    faces = []
    for axis in range(3):
        for value in (0.0, 1.0):
            chans = [u, v]
            chans.insert(axis, torch.full_like(u, value))
            faces.append(torch.stack(chans))
    rgb = torch.cat(faces, dim=1)[:, :, None]  # (3, P, 1)
    ab = rgb_to_lab(rgb)[1:, :, 0].T  # (P, 2)

    theta = torch.arange(directions, dtype=torch.float64) * (2 * torch.pi / directions)
    dirs = torch.stack([theta.cos(), theta.sin()], dim=1)  # (D, 2)
    support = torch.cat([(c @ ab.T).amax(dim=1) for c in dirs.split(512)])
    support += half_width * dirs.abs().sum(dim=1)

    axis = torch.arange(-120.0, 121.0, 10.0, dtype=torch.float64)
    grid = torch.cartesian_prod(axis, axis)  # sorted by a, then b
    inside = (grid @ dirs.T <= support).all(dim=1)
    return grid[inside].to(torch.float32)


class Codebook:
    """Q chroma bins: (Q, 2) float32 centres in the "lab" (a*b*) or "yuv" (UV) plane.

    Args:
        centres: (Q, 2) bin centres, 1 <= Q <= 4096, finite.
        space: "lab" or "yuv", the chroma plane of the centres.
        grid_step: (axis0, axis1) cell size of the grid the bins come from, in
            chroma units; sets default_sigma.
        name: optional label, e.g. "zhang313".
    """

    def __init__(self, centres, space="lab", grid_step=(10.0, 10.0), name=None):
        c = torch.as_tensor(centres).detach()
        if c.dim() != 2 or c.shape[1] != 2:
            raise ValueError(f"centres must have shape (Q, 2), got {tuple(c.shape)}")
        if not 1 <= c.shape[0] <= MAX_BINS:
            raise ValueError(f"a codebook needs 1 <= Q <= {MAX_BINS} bins, got Q={c.shape[0]}")
        c = c.to(torch.float32).contiguous()
        if not torch.isfinite(c).all():
            raise ValueError("centres contain non-finite values (NaN or inf)")
        if space not in SPACES:
            raise ValueError(f"space must be one of {tuple(SPACES)}, got {space!r}")
        step = _pair(grid_step, "grid_step")
        if not all(0 < s < float("inf") for s in step):
            raise ValueError(f"grid_step must be two positive finite numbers, got {grid_step!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name must be a string or None, got {type(name).__name__}")
        self._centres, self._space, self._grid_step, self._name = c, space, step, name

    centres = property(lambda self: self._centres, doc="(Q, 2) float32 bin centres.")
    space = property(lambda self: self._space, doc='"lab" or "yuv".')
    grid_step = property(lambda self: self._grid_step, doc="(axis0, axis1) cell size.")
    name = property(lambda self: self._name, doc="Label, or None.")
    num_bins = property(lambda self: self._centres.shape[0], doc="Q, the number of bins.")
    device = property(lambda self: self._centres.device, doc="Device of the centres.")

    @property
    def default_sigma(self):
        """Gaussian width for soft encoding and prior smoothing: half the mean
        grid step (5 for the step-10 Lab grid, as in the paper)."""
        return 0.25 * (self._grid_step[0] + self._grid_step[1])

    def __len__(self):
        return self.num_bins

    def __eq__(self, other):
        if not isinstance(other, Codebook):
            return NotImplemented
        return (
            (self.space, self.grid_step, self.name, self.device)
            == (other.space, other.grid_step, other.name, other.device)
            and torch.equal(self.centres, other.centres)
        )

    __hash__ = None  # mutable tensor inside: equal codebooks need not stay equal

    def __repr__(self):
        return (
            f"Codebook(name={self.name!r}, space={self.space!r}, bins={self.num_bins}, "
            f"grid_step={self.grid_step}, device={self.device})"
        )

    def to(self, device):
        """A new Codebook with the centres on ``device``."""
        return Codebook(self._centres.to(device), self.space, self.grid_step, self.name)

    def nearest(self, ab):
        """(N, H, W) int64 index of the nearest bin of (N, 2, H, W) chroma."""
        return ops.nearest_bin(ab, self)

    @classmethod
    def zhang313(cls):
        """The 313 in-gamut Lab bins of Zhang et al., sorted by a then b (the
        order of the released pts_in_hull.npy and ImageNet prior)."""
        return cls(_zhang313_centres().clone(), "lab", (10.0, 10.0), "zhang313")

    @classmethod
    def from_images(cls, images, n=32, space="yuv", extent=None, cells=None, represent="mean", progress=True):
        """Data-driven bins: the n most frequent cells of a chroma grid.

        The chroma plane of ``space`` is split into cells[0] x cells[1] equal
        cells over ``extent`` ((lo0, hi0), (lo1, hi1)); a colour outside falls
        into the nearest edge cell. Pixels are counted per cell, the n most
        frequent cells are kept (ties to the lower cell index) and ordered by
        cell index (axis0-major). Each bin is the mean chroma of its pixels
        (represent="mean") or its cell centre ("centre").

        Args:
            images: an iterable (streamed: a generator is fine) of images as
                fastcolor.data.images.rgb_batch takes them: float tensors
                (N, 3, H, W) / (C, H, W) in [0, 1] used as they are, on their
                device; paths, PIL images, numpy arrays and integer tensors
                read by read_image, alpha composited over white. A lone
                image or batch also works.
            n: number of bins to keep.
            space: "yuv" (default grid: U in [-0.45, 0.45], V in [-0.65, 0.65],
                10 x 10 cells, the Stanford grid) or "lab" (a, b in
                [-110, 110], 22 x 22 cells of step 10).
            progress: show a tqdm bar over the images.
        """
        if space not in SPACES:
            raise ValueError(f"space must be one of {tuple(SPACES)}, got {space!r}")
        if represent not in ("mean", "centre"):
            raise ValueError(f'represent must be "mean" or "centre", got {represent!r}')
        default_extent, default_cells = color_space(space).default_grid
        ranges = [_pair(r, "each extent range") for r in (extent or default_extent)]
        if len(ranges) != 2 or not all(float("-inf") < lo < hi < float("inf") for lo, hi in ranges):
            raise ValueError(f"extent must be ((lo0, hi0), (lo1, hi1)) with lo < hi, got {extent!r}")
        cells = _pair(cells or default_cells, "cells", cast=int)
        if min(cells) < 1:
            raise ValueError(f"cells must be two positive integers, got {cells!r}")
        total_cells = cells[0] * cells[1]
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= min(MAX_BINS, total_cells):
            raise ValueError(f"n must be an integer in [1, {min(MAX_BINS, total_cells)}], got {n!r}")
        lo = torch.tensor([r[0] for r in ranges], dtype=torch.float64)
        step = torch.tensor([(r[1] - r[0]) / c for r, c in zip(ranges, cells)], dtype=torch.float64)

        counts = torch.zeros(total_cells, dtype=torch.float64)
        sums = torch.zeros(2, total_cells, dtype=torch.float64)
        stream, total = image_stream(images)
        to_chroma = color_space(space).chroma
        for item in tqdm(stream, total=total, leave=False, disable=not progress, desc="codebook"):
            chroma = to_chroma(rgb_batch(item)).transpose(0, 1).reshape(2, -1).double()
            cell = ((chroma - lo.to(chroma.device)[:, None]) / step.to(chroma.device)[:, None]).floor_()
            i0, i1 = (cell[a].clamp_(0, cells[a] - 1).long() for a in range(2))
            flat = i0 * cells[1] + i1
            counts += torch.bincount(flat, minlength=total_cells).double().cpu()
            for axis in range(2):
                sums[axis] += torch.bincount(flat, weights=chroma[axis], minlength=total_cells).cpu()

        occupied = int((counts > 0).sum())
        if occupied < n:
            raise ValueError(f"only {occupied} cells contain pixels, fewer than the n={n} bins requested")
        # A stable sort keeps equal counts in cell order: ties go to the lower index.
        keep = torch.sort(counts, descending=True, stable=True).indices[:n].sort().values
        if represent == "mean":
            centres = sums[:, keep] / counts[keep]
        else:
            ij = torch.stack([keep // cells[1], keep % cells[1]]).double()
            centres = lo[:, None] + (ij + 0.5) * step[:, None]
        return cls(centres.T, space, tuple(step.tolist()), f"{space}{n}-data")

    def to_header(self):
        """The JSON-able description of the codebook besides its centres:
        {"name", "space", "grid_step", "bins"}. Every file that holds a
        codebook (codebook files, model files, training checkpoints) stores
        this header next to a "centres" tensor; from_header reverses it."""
        return {"name": self.name, "space": self.space, "grid_step": list(self.grid_step), "bins": self.num_bins}

    @classmethod
    def from_header(cls, header, centres):
        """The Codebook of a to_header() dict and its (Q, 2) centres; ValueError
        naming the problem when they do not fit together."""
        if not isinstance(header, dict):
            raise ValueError(f"a codebook header must be a JSON object, got {type(header).__name__}")
        try:
            space, step, name = header["space"], header["grid_step"], header.get("name")
        except KeyError as exc:
            raise ValueError(f"the codebook header lacks {exc}") from None
        codebook = cls(centres, space, step, name)
        if "bins" in header and header["bins"] != codebook.num_bins:
            raise ValueError(f"the codebook header says {header['bins']} bins but {codebook.num_bins} centres are stored")
        return codebook

    def save(self, path):
        """Write the codebook to a safetensors file, atomically: a temporary file in
        the same directory is renamed over ``path`` only once it is complete."""
        path = os.fspath(path)
        metadata = {"format": _FORMAT, "version": str(_VERSION), "codebook": json.dumps(self.to_header())}
        with atomic_path(path) as tmp:
            safetensors.torch.save_file({"centres": self.centres.cpu().contiguous()}, tmp, metadata=metadata)

    @classmethod
    def load(cls, path):
        """Read a codebook written by save (centres on the CPU). Files of the
        first format (version 1, before the codebook header) load as well."""
        try:
            with safetensors.safe_open(os.fspath(path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("format") != _FORMAT or "centres" not in f.keys():
                    raise ValueError(f"{path} is a safetensors file but not a fastcolor codebook")
                centres = f.get_tensor("centres")
        except safetensors.SafetensorError as exc:
            raise ValueError(f"{path} is not a fastcolor codebook: {exc}") from exc
        try:
            version = int(meta["version"])
            if version > _VERSION:
                raise ValueError(f"codebook format version {version} is newer than this fastcolor ({_VERSION})")
            if version == 1:
                header = {"space": meta["space"], "grid_step": json.loads(meta["grid_step"]),
                          "name": json.loads(meta["name"])}
            else:
                header = json.loads(meta["codebook"])
            return cls.from_header(header, centres)
        except (KeyError, ValueError, TypeError) as exc:
            raise ValueError(f"{path}: damaged codebook file ({exc})") from exc
