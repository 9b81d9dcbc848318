"""Colour priors and class-rebalancing weights (Zhang et al., ECCV 2016, section 2.2).

The prior p is the empirical distribution of a dataset's pixels over the bins
of a codebook, smoothed with a Gaussian over the chroma plane. Rare colours
get large rebalancing weights w = ((1 - lambda) p + lambda / Q)^-1, rescaled
so that sum_q p_q w_q = 1, which keeps the loss at the scale of a plain
cross-entropy. fastcolor ships the released ImageNet prior of the 313-bin
Lab codebook.
"""

import importlib.resources

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import ops
from ..data.images import image_stream, rgb_batch
from .codebook import Codebook
from .spaces import color_space

__all__ = ["smooth_prior", "histogram", "estimate_prior", "prior_from_counts", "rebalance_weights",
           "imagenet_prior", "resolve_prior"]


def _distribution(p, what, bins=None):
    """p as a 1-D float64 tensor, checked to be finite and non-negative."""
    p = torch.as_tensor(p).detach().to(torch.float64)
    if p.dim() != 1 or p.numel() == 0:
        raise ValueError(f"{what} must be a non-empty 1-D tensor, got shape {tuple(p.shape)}")
    if bins is not None and p.numel() != bins:
        raise ValueError(f"{what} has {p.numel()} entries but the codebook has {bins} bins")
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError(f"{what} must be finite and non-negative")
    return p


def smooth_prior(p, centres, sigma):
    """Gaussian smoothing of a bin distribution over the chroma plane.

        p~_q = sum_r p_r exp(-|c_q - c_r|^2 / (2 sigma^2)) / Z,

    Z making p~ sum to 1. sigma = 0 only normalises (the sigma -> 0 limit).

    Args:
        p: (Q,) non-negative weights (a distribution or raw counts).
        centres: a Codebook or (Q, 2) bin centres.
        sigma: Gaussian width in chroma units (5 for Lab in the paper).

    Returns:
        (Q,) float64 on p's device, summing to 1.
    """
    c = getattr(centres, "centres", centres)
    c = torch.as_tensor(c).detach().to(torch.float64)
    if c.dim() != 2 or c.shape[1] != 2:
        raise ValueError(f"centres must have shape (Q, 2), got {tuple(c.shape)}")
    p = _distribution(p, "p", bins=c.shape[0])
    sigma = float(sigma)
    if not 0 <= sigma < float("inf"):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    if p.sum() <= 0:
        raise ValueError("p has no mass (all zeros)")
    if sigma > 0:
        c = c.to(p.device)
        # Direct differences, not the matmul expansion: exact zero self-distance,
        # so a tiny sigma leaves the diagonal at exp(0) = 1 (the identity limit).
        d2 = torch.cdist(c, c, compute_mode="donot_use_mm_for_euclid_dist").square()
        p = torch.exp(d2 * (-0.5 / sigma**2)) @ p
    return p / p.sum()


def prior_from_counts(counts, codebook, sigma=None):
    """Prior from a (Q,) pixel histogram over ``codebook`` (e.g. summed
    fastcolor.bin_histogram results): normalised, then smoothed with sigma
    (default codebook.default_sigma; 0 for none). Returns (Q,) float64."""
    counts = _distribution(counts, "counts", bins=len(codebook))
    if counts.sum() <= 0:
        raise ValueError("no pixel was counted: the histogram is all zeros")
    sigma = codebook.default_sigma if sigma is None else sigma
    return smooth_prior(counts / counts.sum(), codebook, sigma)


def histogram(images, codebook, gray_threshold=None, progress=True):
    """Pixel counts of a dataset over the bins of ``codebook``.

    Streams ``images`` (anything Codebook.from_images takes: float batches
    (N, 3, H, W) in [0, 1] stay at float precision; paths, PIL images, arrays
    and integer tensors go through fastcolor.data.images.read_image, alpha
    over white), converts each to the codebook's chroma space on the
    codebook's device and adds up fastcolor.bin_histogram.

    gray_threshold: None counts every image; a number skips each image whose
    chroma never exceeds it (|c0| <= t and |c1| <= t at every pixel, the
    test of fastcolor.nn.has_chroma; the space's ColorSpace.gray_threshold is
    5 for Lab, 0.02 for YUV), as training does.

    Returns (Q,) float64 on the CPU; all zeros when no pixel was counted.
    """
    counts = torch.zeros(len(codebook), dtype=torch.float64)
    to_chroma = color_space(codebook.space).chroma
    stream, total = image_stream(images)
    for item in tqdm(stream, total=total, leave=False, disable=not progress, desc="prior"):
        chroma = to_chroma(rgb_batch(item).to(codebook.device))
        if gray_threshold is not None:
            # the test of fastcolor.nn.has_chroma (which this layer cannot import)
            chroma = chroma[(chroma.abs() > gray_threshold).flatten(1).any(dim=1)]
            if not len(chroma):
                continue
        counts += ops.bin_histogram(chroma, codebook).cpu()
    return counts


def estimate_prior(images, codebook, sigma=None, progress=True, gray_threshold=None):
    """Prior of a dataset: the smoothed distribution of its pixels' nearest bins,

        prior_from_counts(histogram(images, codebook, gray_threshold), codebook, sigma).

    See histogram for the accepted images and gray_threshold (None: every
    image counts). Returns (Q,) float64 on the CPU, summing to 1; ValueError
    when no pixel was counted (no image, or every image gray).
    """
    counts = histogram(images, codebook, gray_threshold, progress)
    if gray_threshold is not None and counts.sum() <= 0:
        raise ValueError(f"no image has chroma above gray_threshold={gray_threshold}: every image counts as gray")
    return prior_from_counts(counts, codebook, sigma)


def rebalance_weights(prior, lam=0.5):
    """Class-rebalancing weights of a prior.

        w_q = ((1 - lam) p_q + lam / Q)^-1, rescaled so that sum_q p_q w_q = 1.

    lam = 1 gives uniform weights (all ones); lam = 0 the inverse prior. The
    paper uses lam = 0.5 (the Stanford variant 0.05 to 0.2).

    Args:
        prior: (Q,) distribution: finite, non-negative, summing to 1.
        lam: mixing weight of the uniform distribution, in [0, 1].

    Returns:
        (Q,) float32 on the prior's device.
    """
    p = _distribution(prior, "prior")
    total = p.sum().item()
    if abs(total - 1) > 1e-3:
        raise ValueError(f"prior must sum to 1 (got {total:.6g}); normalise it first (prior / prior.sum())")
    lam = float(lam)
    if not 0 <= lam <= 1:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    if lam == 0 and (p == 0).any():
        raise ValueError("lam = 0 with an empty bin gives an infinite weight; use lam > 0 or smooth the prior")
    w = 1 / ((1 - lam) * p + lam / p.numel())
    return (w / (p * w).sum()).to(torch.float32)


def imagenet_prior():
    """The released ImageNet prior of Zhang et al.: (313,) float64, already
    smoothed (sigma = 5), aligned with Codebook.zhang313(); max 0.201 at ab = (0, 0)."""
    resource = importlib.resources.files("fastcolor").joinpath("assets", "imagenet_prior_313.npy")
    with resource.open("rb") as f:
        return torch.from_numpy(np.load(f)).to(torch.float64)


def resolve_prior(prior, codebook):
    """A prior argument as a (Q,) float64 tensor on the codebook's device.

    ``prior`` is "imagenet" (only for the zhang313 bins, the ones it was
    estimated on) or a (Q,) tensor/array with one entry per bin.
    """
    if isinstance(prior, str):
        if prior != "imagenet":
            raise ValueError(f'unknown prior {prior!r}: pass "imagenet" or a (Q,) tensor')
        reference = Codebook.zhang313()
        if (codebook.space, len(codebook)) != ("lab", 313) or not torch.equal(
            codebook.centres.cpu(), reference.centres
        ):
            raise ValueError(
                f'the "imagenet" prior is for the 313-bin Lab codebook (Codebook.zhang313()), got {codebook!r}; '
                "estimate a prior for this codebook with fastcolor.estimate_prior"
            )
        return imagenet_prior().to(codebook.device)
    return _distribution(prior, "prior", bins=len(codebook)).to(codebook.device)
