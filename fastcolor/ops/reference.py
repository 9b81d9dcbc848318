"""Pure-PyTorch reference of fastcolor's ops: the specification.

Every C++ and CUDA kernel is tested against these functions, the benchmarks
use them as the eager baseline, and fastcolor.ops falls back to them where no
compiled kernel exists for a device. They are written for clarity: each builds
the dense (N, Q, H, W) intermediates that the fused kernels avoid.

Conventions shared by all implementations
- ab: (N, 2, H, W) float32; centres: (Q, 2) float32.
- Squared distance d_q = (a - ca_q)^2 + (b - cb_q)^2 in float32, saturated at
  the largest float32 (so absurdly large ab still selects bins).
- Bins are ranked by (d_q, q): on equal distance the lower index wins. The k
  nearest bins are the first k in that order.
- A pixel whose ab is not finite selects no bin: nearest_bin gives -1, the soft
  target is NaN, its loss is NaN, and bin_histogram skips it.
- Losses and decoded ab are float32 (float64 for float64 logits); gradients
  take the logits' dtype.
"""

import torch

FLOAT32_MAX = torch.finfo(torch.float32).max


def squared_distances(ab, centres):
    """(N, Q, H, W) squared ab distances from every pixel to every bin centre."""
    a, b = ab[:, 0:1], ab[:, 1:2]
    ca = centres[:, 0].view(1, -1, 1, 1)
    cb = centres[:, 1].view(1, -1, 1, 1)
    return ((a - ca) ** 2 + (b - cb) ** 2).clamp_max(FLOAT32_MAX)


def _finite_pixels(ab):
    return torch.isfinite(ab).all(dim=1)  # (N, H, W)


def _k_nearest(ab, centres, k):
    """Indices (N, k, H, W) and distances of the k nearest bins, ties to the
    lower index."""
    d2 = squared_distances(ab, centres)
    d2 = torch.where(_finite_pixels(ab)[:, None], d2, FLOAT32_MAX)
    # torch.topk breaks ties arbitrarily, so rank by an exact integer key: the
    # bits of a non-negative float32 order like the float, and Q <= 4096.
    q = torch.arange(d2.shape[1], device=d2.device).view(1, -1, 1, 1)
    key = d2.view(torch.int32).to(torch.int64) * 4096 + q
    idx = torch.topk(key, k, dim=1, largest=False).indices
    return idx, torch.gather(d2, 1, idx)


def _soft_weights(dist, sigma):
    """Gaussian weights exp(-(d_j - d_0) / (2 sigma^2)) of the k nearest bins,
    normalised over them. Subtracting the nearest distance keeps every weight
    in (0, 1], so any ab, however far outside the gamut, is stable."""
    e = torch.exp(-(dist - dist[:, :1]) * (0.5 / (sigma * sigma)))
    return e / e.sum(dim=1, keepdim=True)


def nearest_bin(ab, centres):
    """(N, H, W) int64 index of the nearest bin centre; -1 for non-finite ab."""
    d2 = squared_distances(ab, centres)
    idx = torch.argmin(d2, dim=1)  # first minimum: ties to the lower index
    return torch.where(_finite_pixels(ab), idx, -1)


def soft_encode(ab, centres, k=5, sigma=5.0):
    """(N, Q, H, W) float32 soft targets: the k nearest bins with Gaussian
    weights (sum 1 per pixel), zero elsewhere; NaN for non-finite ab."""
    idx, dist = _k_nearest(ab, centres, k)
    w = _soft_weights(dist, sigma)
    n, _, h, wd = ab.shape
    t = ab.new_zeros(n, centres.shape[0], h, wd).scatter_(1, idx, w)
    return torch.where(_finite_pixels(ab)[:, None], t, float("nan"))


def bin_histogram(ab, centres, weight=None):
    """(Q,) float64 count of pixels per nearest bin (or the sum of their
    weight); pixels with non-finite ab are skipped."""
    idx = nearest_bin(ab, centres).flatten()
    w = torch.ones_like(idx, dtype=torch.float64) if weight is None else weight.flatten().double()
    keep = idx >= 0
    return torch.zeros(centres.shape[0], dtype=torch.float64, device=ab.device).index_add_(
        0, idx[keep], w[keep]
    )


def rebalanced_cross_entropy(
    logits, ab, centres, class_weights, *, pixel_weight=None, k=5, sigma=5.0, reduction="mean"
):
    """Class-rebalanced cross-entropy against soft-encoded targets.

    loss_p = -w[nearest(p)] * pixel_weight_p * sum_q t_pq log softmax(z_p)_q,
    with t the soft_encode targets. reduction "none" gives (N, H, W); "sum"
    the sum; "mean" the sum divided by N*H*W. Gradient in z:
    w * pixel_weight * (softmax(z) - t), times d(reduction).
    """
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    t = soft_encode(ab, centres, k, sigma).to(acc)
    logp = torch.log_softmax(logits.to(acc), dim=1)
    nearest = nearest_bin(ab, centres)
    w = class_weights.to(acc)[nearest.clamp_min(0)]
    w = torch.where(nearest >= 0, w, float("nan"))
    if pixel_weight is not None:
        w = w * pixel_weight.to(acc)
    # A bin outside the targets (t = 0) adds nothing, even where its logit is
    # -inf (0 * -inf would be NaN): the kernels never read such a term.
    loss = -torch.where(t > 0, t * logp, 0.0).sum(dim=1) * w
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / loss.numel()


def _inverse_temperature(temperature):
    # Saturated like the kernels' (csrc/include/fastcolor/host.h).
    return min(1.0 / temperature, FLOAT32_MAX) if temperature > 0 else 0.0


def annealed_mean(logits, centres, temperature=0.38):
    """(N, 2, H, W) annealed mean: sum_q softmax(z / T)_q c_q.

    T = 1 is the mean of the predicted distribution, T -> 0 its mode; T = 0
    is the centre of the first largest logit (NaN if any logit is NaN).
    """
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    z = logits.to(acc)
    c = centres.to(acc)
    if temperature == 0:
        idx = torch.argmax(torch.nan_to_num(z, nan=-float("inf")), dim=1)
        out = c[idx].permute(0, 3, 1, 2)
        out = torch.where(torch.isnan(z).any(dim=1, keepdim=True), float("nan"), out)
        # The mode is piecewise constant in the logits: its gradient is zero.
        return _ZeroGradient.apply(out, logits) if logits.requires_grad else out
    # Subtract the max before scaling, as the kernels do: (z - max) / T is <= 0
    # for any T > 0, so even T = 1e-40 (1 / T saturated) gives the mode, not
    # inf - inf = NaN.
    shifted = z - z.amax(dim=1, keepdim=True).detach()  # a constant shift: no gradient through it
    p = torch.softmax(shifted * _inverse_temperature(temperature), dim=1)
    return torch.einsum("nqhw,qc->nchw", p, c)


class _ZeroGradient(torch.autograd.Function):
    """out, whose gradient with respect to logits is zero."""

    @staticmethod
    def forward(ctx, out, logits):
        ctx.save_for_backward(logits)
        return out.clone()

    @staticmethod
    def backward(ctx, grad):
        (logits,) = ctx.saved_tensors
        return None, torch.zeros_like(logits)


def temporal_decode(logits, state, weight, centres, temperature=0.38, sharpness=0.0):
    """One step of temporal filtering in probability space, then the decode.

        p = softmax(z)                        (over the Q bins, per pixel)
        w = weight * (1 - max_q p)^sharpness  (confidence gating; sharpness 0: w = weight)
        new_state = w * state + (1 - w) * p   (rounded to float32)
        ab = sum_q c_q s_q^(1/T) / sum_q s_q^(1/T),  s = new_state

    The decode is the annealed mean of log(new_state): T = 0 gives the centre
    of the first largest state entry. Edge values follow softmax and
    annealed_mean: a NaN logit, a +inf logit or a row of -inf logits makes that
    pixel's p NaN (so its state and ab); a negative or NaN state entry gives NaN
    ab; a state that is zero in every bin (possible only with w = 1) gives NaN
    ab for T > 0 and the first centre for T = 0. Where w = 0 the state is not
    read (new_state = p), so a first frame may pass any state. Inference only.

    Returns ab (N, 2, H, W) float32 and new_state (N, Q, H, W) float32
    (softmax and blend in float64 for float64 logits).
    """
    acc = torch.float64 if logits.dtype == torch.float64 else torch.float32
    p = torch.softmax(logits.to(acc), dim=1)
    w = weight.to(acc)
    if sharpness != 0:
        w = w * (1 - p.amax(dim=1, keepdim=True)) ** sharpness
    # Where w = 0 the state is not used at all (a reset: it may hold anything).
    new_state = torch.where(w == 0, p, w * state.to(acc) + (1 - w) * p).to(torch.float32)
    c = centres.to(torch.float32)
    if temperature == 0:
        # The mode, compared on s itself (two states an ulp apart can share a
        # log); a negative entry, whose log is NaN, makes it NaN as for T > 0.
        return annealed_mean(torch.where(new_state >= 0, new_state, float("nan")), c, 0.0), new_state
    return annealed_mean(new_state.log(), c, temperature), new_state
