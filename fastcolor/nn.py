"""Layers to drop into a colorization model's training loop.

    codebook = fastcolor.Codebook.zhang313()
    criterion = fastcolor.nn.RebalancedCrossEntropy(codebook, prior="imagenet")
    decoder = fastcolor.nn.AnnealedMeanDecoder(codebook, temperature=0.38)

    logits = model(L)                      # (N, Q, H/4, W/4)
    loss = criterion(logits, ab)           # ab at full resolution (N, 2, H, W)
    ab_pred = decoder(logits, size=ab.shape[-2:])

Both hold the bin centres (and the class weights) as buffers, so .to(device)
and state_dict() carry them.
"""

import torch
from torch import nn

from . import ops
from .color.codebook import Codebook
from .color.prior import rebalance_weights, resolve_prior
from .ops.backend import resolve as resolve_backend

__all__ = ["RebalancedCrossEntropy", "AnnealedMeanDecoder", "has_chroma", "subsample_to"]


def has_chroma(ab, threshold=5.0):
    """(N,) bool: whether an image has any pixel with |a| or |b| above the
    threshold. Zhang et al. give images without chroma zero weight in the loss."""
    if ab.dim() != 4 or ab.shape[1] != 2:
        raise ValueError(f"has_chroma: ab must have shape (N, 2, H, W), got {tuple(ab.shape)}")
    return (ab.abs() > threshold).flatten(1).any(dim=1)


def subsample_to(x, size, name="target"):
    """Every f-th pixel of x (..., H, W) so that it matches size = (h, w), with
    f = H / h = W / w an integer: the strided subsampling of the targets in
    the ECCV16 training network (a 1x1 convolution of stride 4)."""
    h, w = size
    big_h, big_w = x.shape[-2:]
    if (big_h, big_w) == (h, w):
        return x
    if h == 0 or w == 0 or big_h % h or big_w % w or big_h // h != big_w // w:
        raise ValueError(
            f"{name} of spatial size {(big_h, big_w)} cannot be subsampled to the logits' {(h, w)}: "
            "the sizes must differ by the same integer factor in both dimensions"
        )
    f = big_h // h
    return x[..., ::f, ::f]


class RebalancedCrossEntropy(nn.Module):
    """Class-rebalanced cross-entropy against soft-encoded chroma targets.

    loss = mean over pixels of -w[q*] * v * sum_q t_q log softmax(z)_q, where t
    is the Gaussian soft encoding of the target ab over its k nearest bins, q*
    its nearest bin, w the rebalancing weights and v an optional pixel weight
    (see fastcolor.ops.rebalanced_cross_entropy, which this calls).

    Args:
        codebook: the bins (default: Codebook.zhang313()).
        prior: bin distribution the weights are derived from:
            w = ((1 - lam) p + lam / Q)^-1, normalised so that sum p w = 1.
            "imagenet" (the released ECCV16 prior; zhang313 only), or a (Q,)
            tensor, e.g. from fastcolor.estimate_prior.
        class_weights: (Q,) weights to use as they are, instead of a prior.
        lam: mixing with the uniform distribution (paper: 0.5).
        k, sigma: soft encoding (paper: 5 nearest bins, sigma 5 in Lab); sigma
            defaults to the codebook's default_sigma.
        reduction: "mean", "sum" or "none".
        skip_gray_images: give zero weight to images without chroma (all
            |a|, |b| <= gray_threshold), as the ECCV16 training did.
        backend: "kernels", "reference" or None (the process default; see
            fastcolor.ops.backend); an attribute, so it can be changed later.

    Shapes:
        logits (N, Q, h, w); ab (N, 2, H, W) with H = f h, W = f w for an
        integer f (the targets are subsampled); pixel_weight (N, H, W) or
        (N, h, w), bool or float.
    """

    def __init__(self, codebook=None, prior="imagenet", class_weights=None, lam=0.5, k=5, sigma=None,
                 reduction="mean", skip_gray_images=False, gray_threshold=5.0, backend=None):
        super().__init__()
        codebook = Codebook.zhang313() if codebook is None else codebook
        if class_weights is None:
            if prior is None:
                raise ValueError("RebalancedCrossEntropy: give a prior or class_weights")
            class_weights = rebalance_weights(resolve_prior(prior, codebook), lam)
        elif prior is not None and not (isinstance(prior, str) and prior == "imagenet"):
            raise ValueError("RebalancedCrossEntropy: give a prior or class_weights, not both")
        class_weights = torch.as_tensor(class_weights, dtype=torch.float32)
        if class_weights.shape != (len(codebook),):
            raise ValueError(
                f"RebalancedCrossEntropy: class_weights must have shape ({len(codebook)},), "
                f"got {tuple(class_weights.shape)}"
            )
        self.register_buffer("centres", codebook.centres.detach().clone().cpu())
        self.register_buffer("class_weights", class_weights.detach().clone().cpu())
        self.space = codebook.space
        self.k = int(k)
        self.sigma = float(codebook.default_sigma if sigma is None else sigma)
        self.reduction = reduction
        self.skip_gray_images = bool(skip_gray_images)
        self.gray_threshold = float(gray_threshold)
        self.backend = None if backend is None else resolve_backend(backend)

    def forward(self, logits, ab, pixel_weight=None):
        size = logits.shape[-2:]
        if self.skip_gray_images:
            keep = has_chroma(ab, self.gray_threshold).to(torch.float32)[:, None, None]
            pixel_weight = keep.expand(ab.shape[0], *ab.shape[-2:]) if pixel_weight is None else pixel_weight * keep
        ab = subsample_to(ab, size, "ab")
        if pixel_weight is not None:
            pixel_weight = subsample_to(pixel_weight, size, "pixel_weight")
        return ops.rebalanced_cross_entropy(
            logits, ab, self.centres, self.class_weights, pixel_weight=pixel_weight, k=self.k, sigma=self.sigma,
            reduction=self.reduction, backend=self.backend,
        )

    def extra_repr(self):
        return (f"bins={self.centres.shape[0]}, space={self.space!r}, k={self.k}, sigma={self.sigma:g}, "
                f"reduction={self.reduction!r}, skip_gray_images={self.skip_gray_images}, backend={self.backend!r}")


class AnnealedMeanDecoder(nn.Module):
    """Logits to chroma by the annealed mean: ab = sum_q softmax(z / T)_q c_q.

    T = 1 is the mean of the predicted distribution (desaturated), T -> 0 its
    mode (T = 0 accepted); the paper uses 0.38. With size=(H, W) the result
    is upsampled bilinearly to that size, as for joining with full-resolution
    lightness.

    backend: "kernels", "reference" or None (the process default).

    Shapes: logits (N, Q, h, w) -> (N, 2, h, w), or (N, 2, H, W) with size.
    """

    def __init__(self, codebook=None, temperature=0.38, backend=None):
        super().__init__()
        codebook = Codebook.zhang313() if codebook is None else codebook
        self.register_buffer("centres", codebook.centres.detach().clone().cpu())
        self.space = codebook.space
        self.temperature = float(temperature)
        self.backend = None if backend is None else resolve_backend(backend)

    def forward(self, logits, size=None, temperature=None):
        t = self.temperature if temperature is None else temperature
        ab = ops.annealed_mean(logits, self.centres, t, backend=self.backend)
        if size is not None and tuple(size) != tuple(ab.shape[-2:]):
            ab = nn.functional.interpolate(ab, size=tuple(size), mode="bilinear", align_corners=False)
        return ab

    def extra_repr(self):
        return (f"bins={self.centres.shape[0]}, space={self.space!r}, temperature={self.temperature:g}, "
                f"backend={self.backend!r}")
