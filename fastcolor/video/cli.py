"""``fastcolor video INPUT -o OUTPUT``: colorize a video file or a folder of numbered frames.

    fastcolor video film.mp4 -o film_color.mp4 [--temporal none|ema|flow] [--crf 18] [--codec libx264]
    fastcolor video scans/ -o colour/ --fps 24      (folders of frames in and out)

Runs inside the command line's one error handler (fastcolor.errors): a refused
output, a file that is not a video or breaks half-way, ... end it with one line
on stderr and exit code 2. The output is planned and checked, and the input
opened, before the model is loaded.
"""

import argparse
import sys
from pathlib import Path

from ..ops.backend import BACKENDS
from .reader import fps_argument
from .temporal import MODES
from .writer import DEFAULT_CODEC, DEFAULT_CRF

__all__ = ["build_parser", "main"]


def _temperature(text):
    from ..ops.functional import check_temperature

    try:
        return check_temperature(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"temperature must be a finite number >= 0, got {text!r}") from None


def _count(text, low=1):
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or n < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}")
    return n


def _crf(text):
    return _count(text, 0)


def build_parser():
    p = argparse.ArgumentParser(
        prog="fastcolor video",
        description="Colorize a video (or a folder of numbered frames) without flicker: frames are decoded, "
                    "colorized in batches and encoded as a stream (memory stays flat), the audio is copied "
                    "through unchanged, frame rate, time stamps, size and rotation are kept. The predicted "
                    "colour distributions are filtered over time (--temporal).")
    p.add_argument("input", metavar="INPUT", help="a video file, or a folder of numbered frames (frame0001.png, ...)")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="a video file (.mp4, .mkv, .mov, .webm, .avi), or a folder (a name ending in /, new or "
                        "empty) for PNG frames")
    p.add_argument("--temporal", choices=MODES, default="flow",
                   help="flow: motion-compensated filtering with scene cuts (default); ema: the Stanford "
                        "project's exponential smoothing (colour trails behind moving objects); none: each "
                        "frame on its own (flickers)")
    p.add_argument("--codec", default=DEFAULT_CODEC, metavar="NAME",
                   help=f"FFmpeg video encoder of the output ({DEFAULT_CODEC}; also libx265, libvpx-vp9, ffv1, ...)")
    p.add_argument("--crf", type=_crf, metavar="N",
                   help=f"constant-quality level of x264/x265/VP9/AV1: lower is better and larger "
                        f"(default {DEFAULT_CRF} for those encoders)")
    p.add_argument("--fps", type=fps_argument, metavar="RATE",
                   help="frame rate of a folder of frames: 24 (default), 25, 23.976, 30000/1001, ...")
    p.add_argument("--no-audio", action="store_true", help="leave the audio out (default: copied unchanged)")
    p.add_argument("--model", metavar="PATH",
                   help="model.safetensors or a training run directory (default: the bundled model)")
    p.add_argument("--temperature", "-t", type=_temperature, metavar="T",
                   help="annealed-mean temperature of the filtered distribution (default: the model's)")
    p.add_argument("--batch-size", type=_count, default=8, metavar="N", help="frames per network batch (8)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA when available (default)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="kernels (default, where built) or reference (pure PyTorch) for the decode")
    return p


def main(argv=None):
    """Entry point of ``fastcolor video``; returns 0. Errors propagate to the
    command line's handler (fastcolor.errors.run)."""
    from ..errors import UsageError
    from .colorizer import VideoColorizer
    from .reader import open_clip
    from .writer import plan_output

    args = build_parser().parse_args(argv)
    plan = plan_output(args.input, args.output, args.codec, args.crf)
    if args.fps is not None and not Path(args.input).is_dir():
        raise UsageError("--fps sets the frame rate of a folder of frames; a video file keeps its own")
    with open_clip(args.input, fps=args.fps):  # not a video, no video stream: refused before the model loads
        pass
    try:
        video = VideoColorizer.load(args.model, device=args.device, backend=args.backend, temporal=args.temporal,
                                    temperature=args.temperature, batch_size=args.batch_size)
    except ValueError as exc:
        if "loss='l2'" in str(exc):
            raise UsageError(str(exc)) from None
        raise
    print(f"fastcolor video: {args.input} -> {plan.path} (--temporal {args.temporal})", file=sys.stderr, flush=True)
    report = video.colorize_file(args.input, args.output, fps=args.fps, audio=not args.no_audio, progress=True,
                                 plan=plan)
    cuts = report["cuts"]
    print(f"fastcolor video: wrote {report['output']} ({report['frames']} frames, {report['width']}x"
          f"{report['height']}, {report['frames_per_second']:.2f} frames/s"
          + (f", {len(cuts)} scene cut{'s' if len(cuts) != 1 else ''}" if args.temporal == "flow" else "") + ")")
    return 0
