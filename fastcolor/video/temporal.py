"""Temporal filtering of a clip's predicted colour distributions (``--temporal``).

A classification colorizer predicts, per pixel, a distribution p over Q chroma
bins. Decoding each frame on its own (``none``) flickers: p moves a little from
frame to frame and the annealed mean follows. The filters below blend p with
the past in probability space and decode the blend with the annealed mean at
the model's temperature (the temperature applies to the blended distribution),
through fastcolor.ops.temporal_decode.

``none``
    Each frame on its own: the photo path. The baseline.

``ema`` (the Stanford ColorUNet project's smoothing)
    s_t = sum_{i=0..window} a^i p_{t-i} / sum_i a^i with a = exp(-decay): a
    truncated causal window of the last window + 1 = 21 frames with
    decay = 0.2. No motion compensation and no scene cuts, as published: a
    moving object leaves a trail of its colour for about 1 / decay = 5 frames,
    and a cut mixes the two scenes for as long.

``flow`` (the default)
    s_t = w * warp(s_{t-1}) + (1 - w) * p_t,
    w = keep * (r + (1 - r) * exp(-d^2 / (2 tol_t^2))) * (1 - max_q p_t)^sharpness
    with r = 1 where the motion from frame t-1 to t is reliable and 0 where it
    is not (occlusions, flow failures, outside the frame: fastcolor.video.motion),
    and d the distance between the mean colours of warp(s_{t-1}) and p_t. Moving
    objects carry their colour along; where the motion is unreliable the past
    is kept only as far as it has the colour this frame predicts anyway (a
    revealed background does not inherit the colour of the object that covered
    it: no trail; a flickering but static region is still smoothed). The
    tolerance tol_t follows the model's flicker in this frame: tolerance_scale
    times the RMS of d over the reliable cells (there the warped past and this
    frame's prediction are the same surface, so d is flicker), within
    [tolerance, tolerance_max]. keep < 1 makes the state forget (an effective
    memory of about 1 / (1 - keep) frames); sharpness lets a confident frame
    override its past. At a scene cut (the lightness histogram changes by more
    than cut_histogram, or less than cut_reliable of the frame is reliable)
    w = 0 everywhere: the new scene starts afresh.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import torch

from .. import ops
from .motion import Motion, histogram_distance, light_levels, warp

__all__ = ["MODES", "EmaFilter", "EmaOptions", "FlowFilter", "FlowOptions", "NoFilter", "flicker_tolerance",
           "make_filter"]

MODES = ("none", "ema", "flow")


@dataclasses.dataclass(frozen=True)
class FlowOptions:
    """Parameters of the ``flow`` filter (docs/video.md gives the reasons).

    keep: weight of the warped past at a reliable pixel (0..1).
    tolerance, tolerance_scale, tolerance_max: where the motion is unreliable, the past keeps
        keep * exp(-d^2 / (2 tol^2)) with d the distance (chroma units) between the mean colours of the warped
        past and of this frame's prediction: a past of another colour (a trail) is dropped, one of the same colour
        still smooths. tol = tolerance_scale * (RMS of d over the reliable cells: the model's flicker in this
        frame), clamped to [tolerance, tolerance_max]; tolerance_scale 0: tol = tolerance; tolerance 0 and
        tolerance_scale 0: the past is dropped wherever the motion is unreliable.
    sharpness: confidence gating exponent, w *= (1 - max_q p)^sharpness.
    photometric: largest lightness mismatch after warping, in gray levels of 255.
    cut_histogram: lightness-histogram distance (0..1) above which a frame starts a new scene.
    cut_reliable: reliable fraction of the frame below which it starts a new scene.
    preset: OpenCV DIS preset ("ultrafast", "fast", "medium").
    flow_size: the flow is computed on the network input shrunk to at most flow_size x flow_size (area
        averaging): 64, the bundled model's logits grid, where the state lives; None: the input's own size.
    """

    keep: float = 0.9
    tolerance: float = 10.0
    tolerance_scale: float = 3.0
    tolerance_max: float = 30.0
    sharpness: float = 1.0
    photometric: float = 12.0
    cut_histogram: float = 0.3
    cut_reliable: float = 0.2
    preset: str = "fast"
    flow_size: int | None = 64

    def __post_init__(self):
        for name, lo, hi in (("keep", 0, 1), ("cut_histogram", 0, 1), ("cut_reliable", 0, 1)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and lo <= v <= hi):
                raise ValueError(f"FlowOptions.{name} must be a number in [{lo}, {hi}], got {v!r}")
        if self.flow_size is not None and not (isinstance(self.flow_size, int) and self.flow_size >= 8):
            raise ValueError(f"FlowOptions.flow_size must be an integer >= 8 or None, got {self.flow_size!r}")
        for name in ("tolerance", "tolerance_scale", "tolerance_max", "sharpness", "photometric"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 <= v < math.inf):
                raise ValueError(f"FlowOptions.{name} must be a finite number >= 0, got {v!r}")
        if self.tolerance_max < self.tolerance:
            raise ValueError(f"FlowOptions.tolerance_max ({self.tolerance_max!r}) must be at least tolerance "
                             f"({self.tolerance!r})")


@dataclasses.dataclass(frozen=True)
class EmaOptions:
    """Parameters of the ``ema`` filter: weights exp(-decay i), i = 0..window."""

    decay: float = 0.2
    window: int = 20

    def __post_init__(self):
        if not (isinstance(self.decay, (int, float)) and 0 <= self.decay < math.inf):
            raise ValueError(f"EmaOptions.decay must be a finite number >= 0, got {self.decay!r}")
        if not (isinstance(self.window, int) and self.window >= 0):
            raise ValueError(f"EmaOptions.window must be an integer >= 0, got {self.window!r}")


@dataclasses.dataclass
class Step:
    """What a filter did with one frame: chroma (1, 2, h, w) on the logits'
    grid; cut: the frame started a new scene (flow); reliable: the fraction of
    the frame where the past was used (flow; 0 for none, 1 for ema)."""

    chroma: torch.Tensor
    cut: bool = False
    reliable: float = 0.0


class NoFilter:
    """``none``: each frame decoded on its own (the photo path)."""

    mode = "none"

    def __init__(self, centres, temperature, backend=None):
        self.centres, self.temperature, self.backend = centres, temperature, backend

    def step(self, logits, light):
        return Step(ops.annealed_mean(logits, self.centres, self.temperature, backend=self.backend))

    def reset(self):
        pass


class EmaFilter(NoFilter):
    """``ema``: the truncated causal exponential window (module docstring)."""

    mode = "ema"

    def __init__(self, centres, temperature, backend=None, options=None):
        super().__init__(centres, temperature, backend)
        self.options = options or EmaOptions()
        self.past = collections.deque(maxlen=self.options.window)  # p_{t-1}, p_{t-2}, ... newest first

    def reset(self):
        self.past.clear()

    def step(self, logits, light):
        a = math.exp(-self.options.decay)
        # The past part of the window as one distribution h with total weight
        # sum_{i>=1} a^i, so that s = w h + (1 - w) p with w = past / (1 + past).
        past = sum(a ** (i + 1) for i in range(len(self.past)))
        if past > 0:
            h = sum(a ** (i + 1) * q for i, q in enumerate(self.past)) / past
            weight = torch.full_like(logits[:, :1], past / (1 + past), dtype=torch.float32)
        else:
            h, weight = logits, torch.zeros_like(logits[:, :1], dtype=torch.float32)
        ab, _ = ops.temporal_decode(logits, h, weight, self.centres, self.temperature, backend=self.backend)
        if self.options.window:
            self.past.appendleft(torch.softmax(logits.float(), dim=1))
        return Step(ab, reliable=1.0 if past > 0 else 0.0)


class FlowFilter(NoFilter):
    """``flow``: motion-compensated recursive filtering (module docstring)."""

    mode = "flow"

    def __init__(self, centres, temperature, backend=None, options=None):
        super().__init__(centres, temperature, backend)
        self.options = options or FlowOptions()
        self.motion = Motion(self.options.photometric, self.options.preset)
        self.reset()

    def reset(self):
        self.state, self.prev = None, None

    def step(self, logits, light):
        """logits (1, Q, h, w); light: the network input (1, S, S)."""
        o = self.options
        gray = light_levels(light, o.flow_size)
        first = self.state is None
        weight, cut, fraction = torch.zeros_like(logits[:, :1], dtype=torch.float32), first, 0.0
        state = logits if first else self.state
        if not cut and histogram_distance(gray, self.prev) > o.cut_histogram:
            cut = True
        if not cut:
            flow, reliable = self.motion.backward_flow(gray, self.prev)
            fraction = float(reliable.mean())
            if fraction < o.cut_reliable:
                cut = True
            else:
                flow, r = Motion.to_grid(flow, reliable, logits.shape[-2:])
                state = warp(self.state, flow.to(logits.device))
                r = r.to(logits.device)
                fraction = float(r.mean())
                if o.tolerance > 0 or o.tolerance_scale > 0:
                    r = r + (1 - r) * self.agreement(logits, state, r)
                weight = o.keep * r
        if cut:
            fraction = 0.0
        ab, self.state = ops.temporal_decode(logits, state, weight, self.centres, self.temperature,
                                             o.sharpness, backend=self.backend)
        self.prev = gray
        return Step(ab, cut=cut and not first, reliable=fraction)

    def agreement(self, logits, state, reliable):
        """exp(-d^2 / (2 tol^2)) per pixel (1, 1, h, w), d = the distance between
        the mean colours of softmax(logits) and of state; tol from the flicker
        (flicker_tolerance)."""
        c = self.centres.to(logits.device, torch.float32)
        now = ops.annealed_mean(logits, c, 1.0, backend=self.backend)  # T = 1: the plain mean of softmax(logits)
        past = torch.einsum("nqhw,qc->nchw", state, c)
        d2 = (now - past).square_().sum(1, keepdim=True)
        tol = flicker_tolerance(d2, reliable, self.options)
        if tol == 0:
            return torch.zeros_like(d2)
        return d2.mul_(-0.5 / tol ** 2).exp_()


def flicker_tolerance(d2, reliable, options):
    """The tolerance of FlowFilter.agreement for one frame: tolerance_scale x
    the RMS of d over the reliable cells (reliable == 1), clamped to
    [tolerance, tolerance_max]; tolerance when no cell is reliable. d2: the
    squared colour distances, reliable: 0/1, both (1, 1, h, w)."""
    o = options
    if o.tolerance_scale == 0:
        return float(o.tolerance)
    sure = reliable >= 1
    n = int(sure.sum())
    flicker = math.sqrt(float(d2[sure].sum()) / n) if n else 0.0
    return min(max(o.tolerance_scale * flicker, o.tolerance), o.tolerance_max)


def make_filter(mode, centres, temperature, backend=None, options=None):
    """The filter of a --temporal mode; options: FlowOptions (flow) or EmaOptions (ema)."""
    if mode == "none":
        return NoFilter(centres, temperature, backend)
    if mode == "ema":
        return EmaFilter(centres, temperature, backend, options)
    if mode == "flow":
        return FlowFilter(centres, temperature, backend, options)
    raise ValueError(f"unknown temporal mode {mode!r}; choose one of {', '.join(MODES)}")
