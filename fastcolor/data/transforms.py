"""The one resize of fastcolor, and the crops built on it.

``resize`` is bilinear (``F.interpolate(mode="bilinear", align_corners=False,
antialias=True)``: antialiased where it shrinks); inference, ``ImageFolder``,
evaluation and the training statistics all call it, each with its own rule
for the target size:

* ``fit_within(x, max_side)``: shrink so that max(H, W) <= max_side;
* ``centre_crop(x, size)``: the centred (h, w) window;
* ``ImageFolder`` upscales small images so the short side reaches the crop
  size (ceil), evaluation resizes the short side to its size and crops the
  centre (fastcolor.evaluation.square_crop).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["centre_crop", "fit_within", "resize"]


def resize(x, size):
    """Bilinear resize of an image (C, H, W) or batch (N, C, H, W) to size = (h, w),
    antialiased where it shrinks.

    float in -> float out (same dtype, not clamped: every output is a convex
    combination of input pixels, so ranges such as [0, 1] are kept up to
    rounding). uint8 in -> uint8 out: computed in float32 on the 0..255
    scale, then rounded and clamped to 0..255. An input already of that size
    is returned as it is (no copy).
    """
    size = tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if x.dim() not in (3, 4):
        raise ValueError(f"resize: expected (C, H, W) or (N, C, H, W), got {tuple(x.shape)}")
    batch = x if x.dim() == 4 else x[None]
    if x.dtype == torch.uint8:
        out = F.interpolate(batch.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
        out = out.round().clamp(0, 255).to(torch.uint8)
    else:
        out = F.interpolate(batch, size=size, mode="bilinear", align_corners=False, antialias=True)
    return out if x.dim() == 4 else out[0]


def fit_within(x, max_side):
    """Shrink (C, H, W) / (N, C, H, W) so that max(H, W) <= max_side, aspect kept:
    scale s = max_side / max(H, W), size (max(1, round(H s)), max(1, round(W s))).

    Images that already fit (or max_side None) are returned as they are.
    uint8 stays uint8 (see resize); float images, taken to be in [0, 1], are
    clamped to [0, 1] after the resize.
    """
    h, w = x.shape[-2:]
    if max_side is None or max(h, w) <= max_side:
        return x
    s = max_side / max(h, w)
    out = resize(x, (max(1, round(h * s)), max(1, round(w * s))))
    return out if out.dtype == torch.uint8 else out.clamp_(0, 1)


def centre_crop(x, size):
    """The centred window of size = (h, w) (or one int for a square) of (..., H, W):
    top = (H - h) // 2, left = (W - w) // 2; a view, not a copy."""
    h, w = (size, size) if isinstance(size, int) else size
    big_h, big_w = x.shape[-2:]
    if h > big_h or w > big_w:
        raise ValueError(f"centre_crop: a {h}x{w} crop does not fit in {big_h}x{big_w}")
    top, left = (big_h - h) // 2, (big_w - w) // 2
    return x[..., top:top + h, left:left + w]
