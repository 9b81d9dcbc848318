"""Behaviour of the temporal filters (fastcolor.video.temporal) on synthetic clips.

The network is replaced by a stand-in whose prediction is known: bright
regions red, dark regions blue (a peaked distribution around each colour), so
that what the filters do with it can be measured: no state across a scene cut,
no colour trail behind a moving square in flow mode (a trail in ema mode, as
published), a steady colour on a static clip whose per-frame prediction
flickers.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastcolor import Codebook, rgb_to_lab
from fastcolor.inference import Colorizer
from fastcolor.video import EmaOptions, FlowOptions, VideoColorizer, temporal
from fastcolor.video.motion import Motion, histogram_distance, warp

RED, BLUE = (60.0, 40.0), (-10.0, -45.0)
SIZE = 128  # network input: logits on a 32 x 32 grid


class LightToColour(torch.nn.Module):
    """Stand-in network: logits of a Gaussian bump (std 12 ab units) around RED
    where the 4x4-pooled input is bright, BLUE where it is dark; plus Gaussian
    logit noise of std `noise` (a generator of its own: a flickering model)."""

    input_multiple, output_stride = 4, 4

    def __init__(self, noise=0.0, seed=0):
        super().__init__()
        self.register_buffer("centres", Codebook.zhang313().centres.float())
        self.noise = noise
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, x):
        t = torch.sigmoid(F.avg_pool2d(x, 4) * 30)  # (N, 1, h, w): 1 bright, 0 dark
        target = t * torch.tensor(RED).view(1, 2, 1, 1) + (1 - t) * torch.tensor(BLUE).view(1, 2, 1, 1)
        d2 = ((self.centres.view(1, -1, 2, 1, 1) - target[:, None]) ** 2).sum(2)
        logits = -d2 / (2 * 12.0 ** 2)
        if self.noise:
            logits = logits + self.noise * torch.randn(logits.shape, generator=self.gen)
        return logits


def stand_in_colorizer(noise=0.0, seed=0):
    return Colorizer(LightToColour(noise, seed), Codebook.zhang313(), {"input_size": SIZE, "temperature": 0.38},
                     device="cpu")


def _texture(h, w, seed, lo, hi):
    """Smooth random texture in [lo, hi] (something for the optical flow to hold on to)."""
    g = torch.Generator().manual_seed(seed)
    t = F.interpolate(torch.rand(1, 1, h // 8 + 1, w // 8 + 1, generator=g), size=(h, w), mode="bicubic",
                      align_corners=False)[0, 0]
    t = (t - t.min()) / (t.max() - t.min())
    return lo + (hi - lo) * t


def _gray_frames(lights):
    """Gray uint8 (3, H, W) frames of lightness maps in [0, 1]."""
    return [(light.clamp(0, 1) * 255).round().to(torch.uint8)[None].expand(3, -1, -1).clone() for light in lights]


def _ab(frames):
    return [rgb_to_lab(f.rgb.float()[None] / 255)[0, 1:] for f in frames]


def _run(mode, frames, colorizer=None, **options):
    opts = FlowOptions(**options) if mode == "flow" else EmaOptions(**options) if mode == "ema" else None
    video = VideoColorizer(colorizer or stand_in_colorizer(), temporal=mode, options=opts, batch_size=4)
    out = list(video.colorize(frames))
    return out, video


# ------------------------------------------------------------------ a moving square


def square_clip(n=10, h=96, w=128, side=28, speed=5, y0=34, x0=10):
    bg = _texture(h, w, 1, 0.15, 0.35)
    fg = _texture(side, side, 2, 0.75, 0.95)
    lights, boxes = [], []
    for t in range(n):
        light, x = bg.clone(), x0 + speed * t
        light[y0:y0 + side, x:x + side] = fg
        lights.append(light)
        boxes.append((y0, x))
    return _gray_frames(lights), boxes


@pytest.mark.parametrize("flow_size", [64, 32, None])  # half the input (default), the logits' grid, the input
def test_moving_square_leaves_no_trail_in_flow_mode_and_one_in_ema(flow_size):
    frames, boxes = square_clip()
    side, speed = 28, 5
    none, _ = _run("none", frames)
    ema, _ = _run("ema", frames)
    flow, video = _run("flow", frames, flow_size=flow_size)
    assert video.cuts == []
    a_none, a_ema, a_flow = _ab(none), _ab(ema), _ab(flow)
    # The band the square left in the last 3 frames, away from where it is now
    # (one logit cell, 4 input pixels, of margin on both sides).
    t = len(frames) - 1
    (y, x), (_, x_old) = boxes[t], boxes[t - 3]
    band = (slice(y + 4, y + side - 4), slice(x_old + 4, x - 8))
    assert x - 8 - (x_old + 4) >= 3
    trail_ema = (a_ema[t] - a_none[t])[:, band[0], band[1]].norm(dim=0).mean()
    trail_flow = (a_flow[t] - a_none[t])[:, band[0], band[1]].norm(dim=0).mean()
    assert trail_ema > 15, f"ema should smear the square's colour: {trail_ema:.1f}"
    assert trail_flow < 1.5, f"flow left a trail of {trail_flow:.1f} ab units"
    # The square itself keeps its colour in flow mode (red, within the gamut at its lightness).
    inside = (slice(y + 6, y + side - 6), slice(x + 6, x + side - 6))
    assert (a_flow[t] - a_none[t])[:, inside[0], inside[1]].norm(dim=0).mean() < 3
    assert a_none[t][0, inside[0], inside[1]].mean() > 20  # red: a* > 0


def test_a_flickering_model_raises_the_tolerance_to_its_cap_and_still_leaves_no_trail(monkeypatch):
    tolerances, real = [], temporal.flicker_tolerance

    def spy(d2, reliable, options):
        tolerances.append(real(d2, reliable, options))
        return tolerances[-1]

    frames, boxes = square_clip()
    clean, _ = _run("none", frames)  # the stand-in without noise: the colours the frames should have
    noisy = dict(noise=3.0, seed=3)
    none, _ = _run("none", frames, stand_in_colorizer(**noisy))
    ema, _ = _run("ema", frames, stand_in_colorizer(**noisy))
    monkeypatch.setattr(temporal, "flicker_tolerance", spy)
    flow, video = _run("flow", frames, stand_in_colorizer(**noisy))
    assert video.cuts == [] and len(tolerances) == len(frames) - 1
    assert min(tolerances) == FlowOptions().tolerance_max  # the flicker is large: the tolerance at its cap
    t, side = len(frames) - 1, 28
    (y, x), (_, x_old) = boxes[t], boxes[t - 3]
    band = (slice(y + 4, y + side - 4), slice(x_old + 4, x - 8))  # where the square was 3 frames ago
    a_clean, a_none, a_ema, a_flow = _ab(clean), _ab(none), _ab(ema), _ab(flow)

    def error(a):
        return float((a[t] - a_clean[t])[:, band[0], band[1]].norm(dim=0).mean())

    assert error(a_ema) > 15  # ema's trail
    assert error(a_flow) <= error(a_none)  # no trail: the revealed background is at least as right as per frame


def test_flicker_tolerance_is_the_scaled_rms_over_the_reliable_cells_within_its_bounds():
    o = FlowOptions(tolerance=10, tolerance_scale=3, tolerance_max=30)
    reliable = torch.zeros(1, 1, 4, 5)
    reliable[..., :2, :] = 1
    d2 = torch.full((1, 1, 4, 5), 1e4)  # unreliable cells (a trail, say): not counted
    d2[..., 0, :], d2[..., 1, :] = 3.0 ** 2, 5.0 ** 2  # RMS over the reliable cells: sqrt(17)
    assert temporal.flicker_tolerance(d2, reliable, o) == pytest.approx(3 * 17 ** 0.5)
    assert temporal.flicker_tolerance(d2 / 4, reliable, o) == 10  # 3 sqrt(17) / 2 < 10: the floor
    assert temporal.flicker_tolerance(d2 * 16, reliable, o) == 30  # 12 sqrt(17): the cap
    assert temporal.flicker_tolerance(d2, torch.zeros_like(reliable), o) == 10  # nothing reliable: the floor
    assert temporal.flicker_tolerance(d2, reliable, FlowOptions(tolerance=7, tolerance_scale=0)) == 7


# ------------------------------------------------------------------ a scene cut


def test_no_colour_state_crosses_a_scene_cut():
    h, w = 96, 128
    scene_a = [_texture(h, w, 3, 0.7, 0.95)] * 4   # bright: red
    scene_b = [_texture(h, w, 4, 0.1, 0.35)] * 4   # dark: blue
    frames = _gray_frames(scene_a + scene_b)
    none, _ = _run("none", frames)
    flow, video = _run("flow", frames, keep=1.0)  # keep = 1: the past would persist for ever
    ema, _ = _run("ema", frames)
    assert video.cuts == [4]
    assert [f.cut for f in flow] == [False] * 4 + [True] + [False] * 3
    # The first frame of the new scene is decoded from that frame alone.
    assert torch.equal(flow[4].rgb, none[4].rgb)
    a_none, a_ema, a_flow = _ab(none), _ab(ema), _ab(flow)
    for t in range(4, 8):
        assert (a_flow[t] - a_none[t]).norm(dim=0).max() < 1.0, t
    assert (a_ema[4] - a_none[4]).norm(dim=0).mean() > 20  # as published: ema blends the two scenes


def test_a_cut_between_scenes_of_equal_histograms_is_found_by_the_motion():
    """The same picture turned upside down: the histogram test sees nothing,
    the motion test finds (almost) nothing of the old frame in the new one."""
    h, w = 96, 128
    a = _texture(h, w, 5, 0.1, 0.95)
    frames = _gray_frames([a] * 3 + [torch.flip(a, [0, 1])] * 3)
    assert histogram_distance(frames[2][0].numpy(), frames[3][0].numpy()) == 0
    flow, video = _run("flow", frames)
    assert video.cuts == [3]


# ------------------------------------------------------------------ a static clip


def test_static_clip_converges_to_a_steady_colour():
    h, w = 96, 128
    light = _texture(h, w, 6, 0.15, 0.95)
    frames = _gray_frames([light] * 16)
    none, _ = _run("none", frames, stand_in_colorizer(noise=1.0, seed=1))
    flow, video = _run("flow", frames, stand_in_colorizer(noise=1.0, seed=1))
    assert video.cuts == []
    a_none, a_flow = _ab(none), _ab(flow)

    def change(ab):  # mean frame-to-frame change of the last 6 frames
        return torch.stack([(ab[t] - ab[t - 1]).norm(dim=0).mean() for t in range(10, 16)]).mean()

    assert change(a_none) > 3, change(a_none)  # the stand-in flickers
    assert change(a_flow) < 0.4 * change(a_none), (change(a_flow), change(a_none))
    # Steady, and at the colour of the per-frame average (not washed out).
    mean_none = torch.stack(a_none).mean(0)
    assert (a_flow[-1] - mean_none).norm(dim=0).mean() < 6


# ------------------------------------------------------------------ the pieces


def test_warp_follows_the_flow_and_keeps_distributions():
    g = torch.Generator().manual_seed(0)
    state = torch.softmax(torch.randn(1, 7, 10, 12, generator=g), dim=1)
    flow = torch.zeros(10, 12, 2)
    flow[..., 0] = 2.0  # each pixel comes from 2 to its right
    out = warp(state, flow)
    assert torch.allclose(out[..., :, :10], state[..., :, 2:], atol=1e-6)
    assert torch.allclose(out.sum(1), torch.ones(1, 10, 12), atol=1e-5)


def test_motion_never_pulls_revealed_background_from_the_object():
    """Where the square moved away, the background is new: each pixel there is
    either unreliable or pulled from background of the previous frame."""
    frames, boxes = square_clip(n=2)
    prev, cur = (f[0].numpy() for f in frames)
    fb, reliable = Motion().backward_flow(cur, prev)
    (y, x1), (_, x0) = boxes[1], boxes[0]
    ys, xs = np.mgrid[y + 2:y + 26, x0:x1]
    src_x = xs + fb[ys, xs, 0]
    from_square = (src_x >= x0 - 0.5) & (src_x < x0 + 28 + 0.5)
    assert not (reliable[ys, xs] & from_square).any()
    assert reliable[:20].mean() > 0.95  # static background far from the square
    assert abs(np.median(fb[y + 8:y + 20, x1 + 8:x1 + 20, 0]) + 5) < 1  # the square came from 5 px left
    assert histogram_distance(cur, cur) == 0


def test_options_are_checked():
    with pytest.raises(ValueError, match="keep"):
        FlowOptions(keep=1.5)
    with pytest.raises(ValueError, match="tolerance_max"):
        FlowOptions(tolerance=20, tolerance_max=10)
    with pytest.raises(ValueError, match="tolerance_scale"):
        FlowOptions(tolerance_scale=-1)
    with pytest.raises(ValueError, match="decay"):
        EmaOptions(decay=-1)
    with pytest.raises(ValueError, match="temporal"):
        VideoColorizer(stand_in_colorizer(), temporal="median")
    with pytest.raises(ValueError, match="uint8"):
        list(VideoColorizer(stand_in_colorizer()).colorize([torch.zeros(3, 8, 8)]))
