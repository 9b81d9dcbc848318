"""Video colorization that does not flicker (``fastcolor video``; docs/video.md).

    from fastcolor.video import VideoColorizer
    video = VideoColorizer.load(temporal="flow")        # the bundled model
    video.colorize_file("film.mp4", "film_color.mp4")   # streamed: decode, colorize in batches, encode
    for frame in video.colorize(frames): ...            # or frame by frame: ColorizedFrame.rgb (3, H, W)

One job per module:

  reader.py      a clip in: a video file (PyAV) or a folder of numbered frames
  writer.py      a clip out: a video file (audio copied, time stamps kept) or PNG frames; the output plan
  motion.py      DIS optical flow, its forward-backward check, warping, scene cuts
  temporal.py    the --temporal filters (none, ema, flow) over the predicted distributions
  colorizer.py   VideoColorizer: the network in batches, the filter frame by frame
  cli.py         the ``fastcolor video`` command
"""

from .colorizer import ColorizedFrame, VideoColorizer
from .reader import ClipInfo, Frame, VideoReadError, open_clip
from .temporal import MODES, EmaOptions, FlowOptions
from .writer import OutputPlan, open_writer, plan_output

__all__ = ["ClipInfo", "ColorizedFrame", "EmaOptions", "FlowOptions", "Frame", "MODES", "OutputPlan",
           "VideoColorizer", "VideoReadError", "open_clip", "open_writer", "plan_output"]
