"""The straightforward PyTorch formulation of the rebalanced loss that
The design document's GPU anchors (docs/design.md section 6) were measured with: cdist -> topk -> Gaussian ->
scatter into dense targets -> log_softmax -> weighted sum. Unlike
fastcolor.ops.reference (the spec) it does not break distance ties by bin index,
which makes it about twice as fast; the benchmarks report both."""

import torch


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
