"""The hints' effect refined at full resolution (fastcolor.hints describes
the method; HintOptions.full_resolution turns it on for the edge-aware
propagation).

The steered logits are decoded on the logits' grid (4 x 4 input pixels per
cell for the bundled model) and upsampled bilinearly, so a hinted colour
bleeds over a few pixels across the edge of the object it fills. Here the
hints' effect, the upsampled steered chroma minus the upsampled plain one,
is passed through a guided filter (He, Sun & Tang, "Guided Image
Filtering", ECCV 2010) guided by the full-resolution lightness: in every
window the effect is fitted as a linear function of the lightness, so it
follows the lightness edges inside the cells. The filtered effect is then
kept, channel by channel, within the range the upsampled effect takes
within half a cell of the pixel: the filter moves the effect's edge onto the
lightness edge but cannot carry it farther than that (a guided filter alone
leaves a faint halo up to two windows away). Where the effect is 0 nearby
(far from every hint) it stays exactly 0: the output there is the plain
colorization's, and without hints nothing runs.
"""

import torch

import torch.nn.functional as F

__all__ = ["REFINE_CELLS", "REFINE_EPS", "REFINE_RANGE_CELLS", "box_mean", "guided_filter", "refine_chroma"]

REFINE_CELLS = 2.0  # guided-filter window radius, in logit cells (8 pixels at 256 x 256 for the bundled model)
REFINE_EPS = 1e-4  # its regulariser, in squared normalised lightness (a lightness std of 0.01: 1 L* unit)
REFINE_RANGE_CELLS = 0.5  # the result kept within the effect's range over +-half a cell


def box_mean(x, r):
    """(N, C, H, W) mean over the (2r + 1)^2 window around each pixel, the
    window clipped at the border (cumulative sums in float64: O(1) per pixel
    at any r)."""
    out = x.double()
    for dim in (2, 3):
        n = out.shape[dim]
        c = torch.cat([torch.zeros_like(out.narrow(dim, 0, 1)), out.cumsum(dim)], dim)
        i = torch.arange(n, device=x.device)
        hi, lo = (i + r + 1).clamp(max=n), (i - r).clamp(min=0)
        count = (hi - lo).double().reshape([-1 if d == dim else 1 for d in range(4)])
        out = (c.index_select(dim, hi) - c.index_select(dim, lo)) / count
    return out


def guided_filter(guide, x, r, eps):
    """The guided filter of x (N, C, H, W) by guide (N, 1, H, W), window
    radius r pixels, regulariser eps: q = mean(a) guide + mean(b), with
    x ~ a guide + b fitted by least squares in each window. float32 out."""
    if r < 1:
        return x.clone()
    g = guide.double()
    mg, mx = box_mean(g, r), box_mean(x, r)
    a = (box_mean(g * x.double(), r) - mg * mx) / ((box_mean(g * g, r) - mg * mg).clamp_min(0) + eps)
    b = mx - a * mg
    return (box_mean(a, r) * g + box_mean(b, r)).float()


def refine_chroma(plain, steered, guide, cells=REFINE_CELLS, eps=REFINE_EPS):
    """(N, 2, H, W) chroma: up(plain) + clip(guided_filter(guide, d)), d = up(steered) - up(plain),
    clip: into [min, max] of d over the pixels within REFINE_RANGE_CELLS cells.

    plain, steered: (N, 2, gh, gw) the plain and the steered chroma decoded
    on the logit grid; up: the bilinear resize to the guide's size that
    Colorizer applies; guide: (N, 1, H, W) normalised full-resolution
    lightness. The window radius is ``cells`` logit cells, in pixels of the
    guide."""
    from .data.transforms import resize

    (gh, gw), (H, W) = plain.shape[-2:], guide.shape[-2:]
    up = resize(plain, (H, W))
    d = resize(steered, (H, W)) - up
    q = guided_filter(guide, d, int(round(cells * max(H / gh, W / gw))), eps)
    k = 2 * max(1, int(round(REFINE_RANGE_CELLS * max(H / gh, W / gw)))) + 1
    hi, lo = F.max_pool2d(d, k, 1, k // 2), -F.max_pool2d(-d, k, 1, k // 2)
    return up + torch.maximum(torch.minimum(q, hi), lo)
