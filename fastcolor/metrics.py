"""Colorization metrics (docs/design.md, section 2.10).

* AuC of per-pixel chroma accuracy (Zhang et al., ECCV 2016, Table 1): the
  fraction of pixels with ||ab_pred - ab_true||_2 <= t, averaged over the
  integer thresholds t = 0..150; "rebalanced" weights every pixel by the
  inverse prior of its true bin.
* Colourfulness (Hasler & Suesstrunk 2003).
* PSNR of the RGB result, data range 1.

MetricAccumulator pools these over a whole evaluation set batch by batch.
"""


import torch

from . import ops
from .color.prior import resolve_prior

__all__ = [
    "ab_accuracy_auc",
    "accuracy_histogram",
    "auc_from_histogram",
    "rebalanced_pixel_weights",
    "colourfulness",
    "psnr",
    "MetricAccumulator",
]


def _check_ab(pred_ab, true_ab, pixel_weight=None):
    if pred_ab.dim() != 4 or pred_ab.shape[1] != 2:
        raise ValueError(f"pred_ab must have shape (N, 2, H, W), got {tuple(pred_ab.shape)}")
    if pred_ab.shape != true_ab.shape:
        raise ValueError(f"pred_ab {tuple(pred_ab.shape)} and true_ab {tuple(true_ab.shape)} differ in shape")
    if pred_ab.numel() == 0:
        raise ValueError("no pixels: pred_ab is empty")
    if pixel_weight is not None:
        n, _, h, w = pred_ab.shape
        if pixel_weight.shape != (n, h, w):
            raise ValueError(f"pixel_weight must have shape {(n, h, w)}, got {tuple(pixel_weight.shape)}")


def accuracy_histogram(pred_ab, true_ab, pixel_weight=None, max_threshold=150):
    """Weighted histogram of ceil(||ab_pred - ab_true||_2), clipped at max_threshold + 1.

    A pixel at distance d counts as correct for the thresholds t >= ceil(d), so
    the cumulative sum of this histogram at t is the (weighted) number of
    pixels within t. Bin max_threshold + 1 holds every pixel beyond the last
    threshold. Histograms of different batches add up.

    Returns:
        (max_threshold + 2,) float64 on the CPU.
    """
    _check_ab(pred_ab, true_ab, pixel_weight)
    if isinstance(max_threshold, bool) or not isinstance(max_threshold, int) or max_threshold < 0:
        raise ValueError(f"max_threshold must be a non-negative integer, got {max_threshold!r}")
    # float64: an offset that is exactly an integer distance stays one.
    d = torch.linalg.vector_norm(pred_ab.double() - true_ab.double(), dim=1)
    if not torch.isfinite(d).all():
        raise ValueError("pred_ab or true_ab contains non-finite values (NaN or inf)")
    k = d.ceil_().clamp_(max=max_threshold + 1).long().flatten()
    w = None
    if pixel_weight is not None:
        w = pixel_weight.detach().to(device=d.device, dtype=torch.float64).flatten()
        if not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError("pixel_weight must be finite and non-negative")
    hist = torch.bincount(k, weights=w, minlength=max_threshold + 2)
    return hist.to(dtype=torch.float64, device="cpu")


def auc_from_histogram(hist):
    """AuC = mean over t = 0..T of (weight within t) / (total weight), from a
    (T + 2,) histogram as accuracy_histogram returns (or a sum of them)."""
    total = hist.sum()
    if total <= 0:
        raise ValueError("the pixel weights sum to zero: AuC is undefined")
    return (hist[:-1].cumsum(0) / total).mean().item()


def ab_accuracy_auc(pred_ab, true_ab, pixel_weight=None, max_threshold=150):
    """Area under the per-pixel chroma accuracy curve.

        acc(t) = sum_p w_p [||ab_pred,p - ab_true,p||_2 <= t] / sum_p w_p,
        AuC = mean of acc(t) over t = 0, 1, ..., max_threshold,

    pooled over all pixels of the batch. A pixel at distance d contributes
    max(0, T + 1 - ceil(d)) / (T + 1), T = max_threshold.

    Args:
        pred_ab, true_ab: (N, 2, H, W) chroma (Lab ab units for the paper's 0..150).
        pixel_weight: optional (N, H, W) non-negative weights, e.g.
            rebalanced_pixel_weights for the "rebalanced" AuC.

    Returns:
        float in [0, 1].
    """
    return auc_from_histogram(accuracy_histogram(pred_ab, true_ab, pixel_weight, max_threshold))


def rebalanced_pixel_weights(true_ab, codebook, prior, normalize=True):
    """Inverse prior of each pixel's true bin: w_p = 1 / prior[nearest_bin(ab_p)].

    Args:
        true_ab: (N, 2, H, W) chroma in the codebook's space.
        codebook: a fastcolor.Codebook.
        prior: (Q,) bin distribution, or "imagenet" for Codebook.zhang313().
        normalize: rescale to mean 1 over the given pixels. AuC is a ratio,
            so the scale does not change it within one call; pass
            normalize=False when streaming batches into a MetricAccumulator,
            so that all batches share one scale.

    Returns:
        (N, H, W) float32 on true_ab's device.
    """
    w = _inverse_prior(true_ab, codebook, prior)
    if normalize:
        w = w / w.mean()
    return w.to(torch.float32)


def _inverse_prior(true_ab, codebook, prior):
    """(N, H, W) float64 1 / prior[nearest_bin(true_ab)]."""
    if true_ab.dim() != 4 or true_ab.shape[1] != 2 or true_ab.numel() == 0:
        raise ValueError(f"true_ab must have shape (N, 2, H, W) with pixels, got {tuple(true_ab.shape)}")
    p = resolve_prior(prior, codebook).to(true_ab.device)
    p_true = p[ops.nearest_bin(true_ab, codebook.to(true_ab.device))]
    if (p_true <= 0).any():
        raise ValueError("a pixel's true bin has zero prior probability (infinite weight); smooth the prior")
    return 1.0 / p_true


def _check_rgb(rgb, name="rgb"):
    if rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.shape[-1] * rgb.shape[-2] == 0:
        raise ValueError(f"{name} must have shape (N, 3, H, W) with pixels, got {tuple(rgb.shape)}")


def colourfulness(rgb):
    """Colourfulness of Hasler & Suesstrunk (2003), per image.

    On the 0..255 scale: rg = R - G, yb = (R + G) / 2 - B, and
        M = sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2),
    with population standard deviations over the pixels. 0 for a gray image.

    Args:
        rgb: (N, 3, H, W) in [0, 1].

    Returns:
        (N,) float64.
    """
    _check_rgb(rgb)
    r, g, b = (255.0 * rgb.double()).flatten(2).unbind(1)
    rg, yb = r - g, 0.5 * (r + g) - b
    std = (rg.var(dim=1, correction=0) + yb.var(dim=1, correction=0)).sqrt()
    mean = (rg.mean(dim=1).square() + yb.mean(dim=1).square()).sqrt()
    return std + 0.3 * mean


def psnr(pred_rgb, true_rgb):
    """Peak signal-to-noise ratio per image, data range 1:
    10 log10(1 / MSE) in dB, MSE over channels and pixels; inf for identical images.

    Args:
        pred_rgb, true_rgb: (N, 3, H, W) in [0, 1].

    Returns:
        (N,) float64.
    """
    _check_rgb(pred_rgb, "pred_rgb")
    if pred_rgb.shape != true_rgb.shape:
        raise ValueError(f"pred_rgb {tuple(pred_rgb.shape)} and true_rgb {tuple(true_rgb.shape)} differ in shape")
    mse = (pred_rgb.double() - true_rgb.double()).square().flatten(1).mean(dim=1)
    return -10.0 * torch.log10(mse)


class MetricAccumulator:
    """Streaming metrics over an evaluation set.

    AuC is pooled over pixels (per-threshold weighted counts are summed over
    batches), colourfulness and PSNR are averaged over images, so the result
    for a set split into batches equals that for the set in one batch.

        acc = MetricAccumulator(codebook, prior)     # for auc_rebalanced
        for batch in loader:
            acc.add(pred_ab, true_ab, pred_rgb, true_rgb)
        acc.result()  # {"auc", "auc_rebalanced", "colourfulness", "colourfulness_true", "psnr", "images", "pixels"}

    Args:
        codebook, prior: optional; when both are given and add() receives no
            pixel_weight_rebalanced, the rebalanced weights are computed as
            rebalanced_pixel_weights(true_ab, codebook, prior, normalize=False)
            (in float64).
        max_threshold: last AuC threshold (150 in the paper).
    """

    def __init__(self, codebook=None, prior=None, max_threshold=150):
        if (codebook is None) != (prior is None):
            raise ValueError("give both codebook and prior (for auc_rebalanced), or neither")
        self.codebook, self.prior, self.max_threshold = codebook, prior, max_threshold
        self.reset()

    def reset(self):
        bins = self.max_threshold + 2
        self._hist = torch.zeros(bins, dtype=torch.float64)
        self._hist_rebalanced = torch.zeros(bins, dtype=torch.float64)
        self._rebalanced_pixels = 0
        self._sums = {"colourfulness": 0.0, "colourfulness_true": 0.0, "psnr": 0.0}
        self._counts = {"colourfulness": 0, "colourfulness_true": 0, "psnr": 0}
        self.images = self.pixels = 0

    def add(self, pred_ab, true_ab, pred_rgb=None, true_rgb=None, pixel_weight_rebalanced=None):
        """Add a batch: ab (N, 2, H, W); optional RGB (N, 3, H', W') in [0, 1];
        optional (N, H, W) rebalanced weights (one scale for all batches)."""
        with torch.no_grad():
            self._hist += accuracy_histogram(pred_ab, true_ab, None, self.max_threshold)
            w = pixel_weight_rebalanced
            if w is None and self.codebook is not None:
                w = _inverse_prior(true_ab, self.codebook, self.prior)
            if w is not None:
                self._hist_rebalanced += accuracy_histogram(pred_ab, true_ab, w, self.max_threshold)
                self._rebalanced_pixels += w.numel()
            n = pred_ab.shape[0]
            for name, rgb in (("colourfulness", pred_rgb), ("colourfulness_true", true_rgb)):
                if rgb is not None:
                    if rgb.shape[0] != n:
                        raise ValueError(f"{n} ab images but {rgb.shape[0]} RGB images")
                    self._sums[name] += colourfulness(rgb).sum().item()
                    self._counts[name] += n
            if pred_rgb is not None and true_rgb is not None:
                self._sums["psnr"] += psnr(pred_rgb, true_rgb).sum().item()
                self._counts["psnr"] += n
            self.images += n
            self.pixels += pred_ab.shape[0] * pred_ab.shape[2] * pred_ab.shape[3]

    def accuracy_curve(self, rebalanced=False):
        """(max_threshold + 1,) float64: acc(t) for t = 0..max_threshold."""
        hist = self._hist_rebalanced if rebalanced else self._hist
        return hist[:-1].cumsum(0) / hist.sum()

    def result(self):
        """Dict of floats: auc, auc_rebalanced (None without weights),
        colourfulness (of the predictions), colourfulness_true, psnr (means
        over images; None where no RGB was given), images, pixels."""
        if self.pixels == 0:
            raise ValueError("no batch was added")
        out = {"auc": auc_from_histogram(self._hist), "auc_rebalanced": None}
        if self._rebalanced_pixels:
            if self._rebalanced_pixels != self.pixels:
                raise ValueError("rebalanced weights were given for some batches only")
            out["auc_rebalanced"] = auc_from_histogram(self._hist_rebalanced)
        for name, total in self._sums.items():
            count = self._counts[name]
            out[name] = total / count if count else None
        out["images"], out["pixels"] = self.images, self.pixels
        return out
