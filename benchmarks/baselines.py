"""The fastest pure-PyTorch formulations a user would write (the benchmarks'
"cdist" column): torch.cdist, then argmin (nearest bin), torch.bincount
(histogram, in chunks of pixels so that the distance matrix fits in memory)
or topk, Gaussian, scatter and log_softmax (soft encoding, the loss), and for
the loss with k = 1 argmin and F.cross_entropy (no dense targets at all).

For temporal_decode: softmax, lerp_ toward the state, s ** (1 / T) and the
weighted sum of the centres as a 1x1 convolution (measured on the CPU the
fastest of the forms tried: einsum instead of the convolution, or a
max-shifted softmax of log(s) / T, are slower).

The straightforward PyTorch formulation of the rebalanced loss that the
design document's GPU anchors (docs/design.md section 6) were measured with: cdist -> topk -> Gaussian ->
scatter into dense targets -> log_softmax -> weighted sum. Unlike
fastcolor.ops.reference (the spec) it does not break distance ties by bin index,
which makes it about twice as fast; the benchmarks report both."""

import torch
import torch.nn.functional as F


def plain_rebalanced_cross_entropy(logits, ab, centres, class_weights, k=5, sigma=5.0):
    """Mean over pixels of -w[nearest] * sum_q t_q log softmax(z)_q; logits (N,Q,H,W), ab (N,2,H,W)."""
    q = logits.shape[1]
    x = ab.permute(0, 2, 3, 1).reshape(-1, 2).float()
    d2 = torch.cdist(x, centres).pow(2)
    dk, ik = d2.topk(k, dim=1, largest=False)
    wk = torch.exp(-(dk - dk[:, :1]) / (2 * sigma**2))
    wk = wk / wk.sum(1, keepdim=True)
    t = torch.zeros_like(d2).scatter_(1, ik, wk)
    logp = torch.log_softmax(logits.float().permute(0, 2, 3, 1).reshape(-1, q), dim=1)
    return -(class_weights[ik[:, 0]] * (t * logp).sum(1)).mean()


def hard_rebalanced_cross_entropy(logits, ab, centres, class_weights):
    """The k = 1 (one-hot target) loss as a user writes it: cdist + argmin for
    the target bin, then F.cross_entropy on the (N, Q, H, W) logits, weighted
    by the target bin's class weight; the mean over pixels. With a single
    target bin no dense target is needed, so this beats the soft formulation."""
    n, _, h, w = ab.shape
    idx = torch.cdist(_pixels(ab), centres).argmin(1).view(n, h, w)
    return (class_weights[idx] * F.cross_entropy(logits, idx, reduction="none")).mean()


def _pixels(ab):
    return ab.permute(0, 2, 3, 1).reshape(-1, 2).float()


def cdist_nearest_bin(ab, centres):
    """(N, H, W) index of the nearest centre: cdist then argmin."""
    n, _, h, w = ab.shape
    return torch.cdist(_pixels(ab), centres).argmin(1).view(n, h, w)


def cdist_bin_histogram(ab, centres, chunk=1 << 20):
    """(Q,) counts of nearest bins: cdist + argmin + bincount, chunk pixels at a time."""
    x = _pixels(ab)
    out = torch.zeros(centres.shape[0], dtype=torch.int64, device=ab.device)
    for i in range(0, x.shape[0], chunk):
        out += torch.bincount(torch.cdist(x[i:i + chunk], centres).argmin(1), minlength=centres.shape[0])
    return out


def cdist_soft_encode(ab, centres, k=5, sigma=5.0):
    """(N, Q, H, W) Gaussian soft targets over the k nearest: cdist, topk, scatter."""
    n, _, h, w = ab.shape
    d2 = torch.cdist(_pixels(ab), centres).pow(2)
    dk, ik = d2.topk(k, dim=1, largest=False)
    wk = torch.exp(-(dk - dk[:, :1]) / (2 * sigma**2))
    t = torch.zeros_like(d2).scatter_(1, ik, wk / wk.sum(1, keepdim=True))
    return t.view(n, h, w, -1).permute(0, 3, 1, 2)


def plain_temporal_decode(logits, state, weight, centres, temperature):
    """ab (N, 2, H, W) and the new state of one temporal-filtering step, as a
    user writes it: no max shift before the power (fine at T = 0.38, it
    underflows for tiny T), no sharpness."""
    s = torch.softmax(logits.float(), dim=1).lerp_(state, weight)
    e = s.pow(1.0 / temperature)
    q = centres.shape[0]
    kernel = torch.cat([centres.T, centres.new_ones(1, q)]).view(3, q, 1, 1)
    o = F.conv2d(e, kernel)  # channels: sum c_a e, sum c_b e, sum e
    return o[:, :2] / o[:, 2:], s
