"""VideoColorizer: a Colorizer applied to a clip, frame after frame, with temporal filtering.

    from fastcolor.video import VideoColorizer
    video = VideoColorizer.load(temporal="flow")           # the bundled model; or VideoColorizer(colorizer)
    for frame in video.colorize(frames):                   # any iterable of frames (see below)
        frame.rgb                                          # uint8 (3, H, W), the input's size
    video.colorize_file("film.mp4", "film_color.mp4")      # or a folder of frames, in or out

Per batch of ``batch_size`` frames the network runs once (as Colorizer does
for photos: the lightness at full resolution, resized to input_size x
input_size); then, frame by frame in order, the temporal filter
(fastcolor.video.temporal) turns the logits into chroma on the logits' grid,
which is upsampled to the frame's size and joined with its full-resolution
lightness. Only one batch of frames is in memory at a time, whatever the
length of the clip.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import numpy as np
import torch

from ..data.images import to_uint8
from ..data.transforms import resize
from .reader import Frame, open_clip
from .temporal import MODES, make_filter
from .writer import DEFAULT_CODEC, open_writer, plan_output

__all__ = ["ColorizedFrame", "VideoColorizer"]


@dataclasses.dataclass
class ColorizedFrame:
    """One colorized frame: rgb uint8 (3, H, W); index (0-based); pts and name
    from the input (None for plain tensors); cut: a scene cut starts here (flow
    mode); reliable: fraction of the frame where the past was used."""

    rgb: torch.Tensor
    index: int
    pts: int | None = None
    name: str | None = None
    cut: bool = False
    reliable: float = 0.0


def _as_frame(item):
    if isinstance(item, Frame):
        return item
    if isinstance(item, np.ndarray) and item.ndim == 3 and item.shape[-1] == 3:  # (H, W, 3) as decoded
        item = torch.from_numpy(np.ascontiguousarray(item)).permute(2, 0, 1)
    if not isinstance(item, torch.Tensor) or item.dim() != 3 or item.shape[0] != 3:
        got = tuple(item.shape) if hasattr(item, "shape") else type(item).__name__
        raise ValueError(f"a frame must be uint8 (3, H, W) (or a numpy (H, W, 3)), got {got}")
    if item.dtype != torch.uint8:
        raise ValueError(f"a frame must be uint8, got {item.dtype}")
    return Frame(item)


class VideoColorizer:
    """Colorize clips with a fastcolor.inference.Colorizer (a classification model).

    temporal: "none", "ema" or "flow" (fastcolor.video.temporal).
    options: FlowOptions (flow) or EmaOptions (ema); None for the defaults.
    temperature: the annealed-mean temperature of the blended distribution
        (default: the model's).
    batch_size: frames per network batch.
    """

    def __init__(self, colorizer, temporal="flow", options=None, temperature=None, batch_size=8):
        from ..ops.functional import check_temperature

        if colorizer.loss == "l2":
            raise ValueError("video colorization filters the predicted colour distributions; this model "
                             "regresses chroma (loss='l2') and has none: use a classification model")
        if temporal not in MODES:
            raise ValueError(f"unknown temporal mode {temporal!r}; choose one of {', '.join(MODES)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.colorizer, self.temporal, self.options = colorizer, temporal, options
        self.temperature = (colorizer.temperature if temperature is None
                            else check_temperature(temperature, "VideoColorizer"))
        self.batch_size = int(batch_size)
        self.cuts = []  # frame indices where the last colorize() found scene cuts

    @classmethod
    def load(cls, model=None, device="auto", backend=None, **kwargs):
        """A VideoColorizer of the model file or run directory (None: the bundled model)."""
        from ..inference import Colorizer

        return cls(Colorizer.load(model, device=device, backend=backend), **kwargs)

    def __repr__(self):
        return (f"VideoColorizer(temporal={self.temporal!r}, temperature={self.temperature:g}, "
                f"batch_size={self.batch_size}, colorizer={self.colorizer!r})")

    def make_filter(self):
        c = self.colorizer
        return make_filter(self.temporal, c.decoder.centres, self.temperature, c.backend, self.options)

    @torch.inference_mode()
    def _network(self, rgbs):
        """(full-resolution lightness per frame, network inputs (N, 1, S, S), logits (N, Q, h, w))."""
        from ..models import predict_padded

        c = self.colorizer
        space, n = c.color_space, c.input_size
        lights = [space.lightness((rgb.to(c.device).float() / 255)[None]) for rgb in rgbs]
        x = torch.cat([resize(space.normalize_light(light), (n, n)) for light in lights])
        amp = c.autocast and c.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            logits = predict_padded(c.model, x).float()
        if not bool(torch.isfinite(logits).all()):
            raise FloatingPointError(
                f"the network's output holds NaN/inf values (model {c.path or type(c.model).__name__}); "
                "its weights are not usable (a diverged run or a damaged file?)")
        return lights, x, logits

    def colorize(self, frames):
        """Yield a ColorizedFrame per input frame, in order. frames: any iterable
        of uint8 (3, H, W) tensors, numpy (H, W, 3) arrays or
        fastcolor.video.reader.Frame; the frames of one clip (one state runs
        through them: a new call starts a new clip)."""
        filt = self.make_filter()
        self.cuts = []
        space = self.colorizer.color_space
        batch, index = [], 0
        iterator = iter(frames)
        while True:
            batch = [_as_frame(f) for f in _take(iterator, self.batch_size)]
            if not batch:
                return
            lights, x, logits = self._network([f.rgb for f in batch])
            for i, frame in enumerate(batch):
                with torch.inference_mode():
                    step = filt.step(logits[i:i + 1], x[i])
                    light = lights[i]
                    chroma = resize(step.chroma, tuple(light.shape[-2:]))
                    rgb = to_uint8(space.join(light, chroma)[0]).cpu()
                if step.cut:
                    self.cuts.append(index)
                yield ColorizedFrame(rgb, index, frame.pts, frame.name, step.cut, step.reliable)
                index += 1

    def colorize_file(self, source, output, codec=DEFAULT_CODEC, crf=None, fps=None, audio=True, progress=False,
                      plan=None):
        """Colorize a video file or a folder of numbered frames into a video file
        or a folder of PNG frames (fastcolor.video.reader / writer). Returns a
        dict: frames, seconds, frames_per_second, cuts, output. plan: an
        OutputPlan already checked (plan_output(source, output, codec, crf))."""
        plan = plan or plan_output(source, output, codec, crf)
        start = time.perf_counter()
        n = 0
        with open_clip(source, fps=fps, audio=audio and plan.kind == "file") as clip:
            info = clip.info
            with open_writer(plan, info) as writer:
                clip.on_packet = writer.copy_packet
                bar = _progress(progress, info.frames)
                try:
                    for frame in self.colorize(clip.frames()):
                        writer.write(frame.rgb, frame.pts, frame.name)
                        n += 1
                        if bar is not None:
                            bar.update(1)
                finally:
                    if bar is not None:
                        bar.close()
        seconds = time.perf_counter() - start
        return {"output": plan.path, "frames": n, "seconds": seconds, "frames_per_second": n / max(seconds, 1e-9),
                "cuts": list(self.cuts), "width": info.width, "height": info.height, "rate": info.rate,
                "rotation": info.rotation, "audio_streams": len(info.audio) if plan.kind == "file" else 0}


def _take(iterator, n):
    out = []
    for item in iterator:
        out.append(item)
        if len(out) == n:
            break
    return out


def _progress(enabled, total):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="video", unit="frame", disable=None, dynamic_ncols=True)
