"""Reading a clip frame by frame: a video file (PyAV) or a folder of numbered frames.

    with open_clip("film.mp4") as clip:      # or a folder: open_clip("scans/", fps=24)
        clip.info                            # ClipInfo: size, rate, time base, frames, rotation, audio
        for frame in clip.frames():          # Frame: rgb uint8 (3, H, W), pts, name
            ...

A file is demuxed and decoded as a stream: one frame in memory at a time. The
packets of its audio streams are handed, as they come, to ``clip.on_packet``
(the writer copies them through unchanged). A file that is not a video, has no
video stream or stops before its announced end raises ``VideoReadError`` (a
ValueError: one line through the command line's handler).

A folder: its image files (not its sub-folders), ordered by the numbers in
their names (frame2.png before frame10.png), all of one size, at ``fps``
frames per second (24 unless given).
"""

from __future__ import annotations

import dataclasses
import os
import re
from fractions import Fraction
from pathlib import Path

import torch

__all__ = ["ClipInfo", "DEFAULT_FPS", "Frame", "VideoReadError", "frame_files", "open_clip", "parse_fps"]

DEFAULT_FPS = Fraction(24)  # film


class VideoReadError(ValueError):
    """A clip that cannot be read: the message names the path and the reason."""

    def __init__(self, path, reason):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


@dataclasses.dataclass
class ClipInfo:
    """width, height: the stored frame size; rate: frames per second (Fraction,
    None when unknown); time_base: unit of the frames' pts (Fraction);
    frames: the announced frame count (None when unknown); display_matrix: the
    3x3 display matrix (9 ints) of a rotated video, or None; rotation: its
    rotation in degrees (counter-clockwise, as FFmpeg reports it); audio:
    the audio streams to copy (PyAV streams); kind: "file" or "folder"."""

    path: Path
    width: int
    height: int
    rate: Fraction | None
    time_base: Fraction
    frames: int | None
    display_matrix: tuple | None = None
    rotation: int = 0
    audio: list = dataclasses.field(default_factory=list)
    kind: str = "file"


@dataclasses.dataclass
class Frame:
    """One decoded frame: rgb uint8 (3, H, W); pts in info.time_base units
    (None when the file has none); name: the file name of a folder's frame."""

    rgb: torch.Tensor
    pts: int | None = None
    name: str | None = None


def parse_fps(text):
    """'24', '23.976' or '30000/1001' -> a positive Fraction (ValueError otherwise)."""
    try:
        value = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        value = None
    if value is None or value <= 0 or value > 1000:
        raise ValueError(f"the frame rate must be a number of frames per second in (0, 1000] such as 24, "
                         f"23.976 or 30000/1001, got {text!r}")
    if value.denominator > 1001:  # 23.976 -> 2997/125; keep small denominators
        value = value.limit_denominator(1001)
    return value



def fps_argument(text):
    """parse_fps for argparse (type=fps_argument): a bad rate is a usage error."""
    import argparse

    try:
        return parse_fps(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None

def _natural_key(name):
    return [int(part) if part.isdigit() else part.casefold() for part in re.split(r"(\d+)", name)]


def frame_files(folder):
    """The image files of folder (not of its sub-folders), in frame order."""
    from ..data.images import IMAGE_EXTENSIONS

    names = [e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")
             and Path(e.name).suffix.lower() in IMAGE_EXTENSIONS]
    return [Path(folder) / n for n in sorted(names, key=_natural_key)]


class FolderClip:
    """A folder of numbered frames (module docstring)."""

    def __init__(self, path, fps=None):
        from ..data.images import load_image

        self.path = Path(path)
        self.files = frame_files(self.path)
        if not self.files:
            raise VideoReadError(path, "no image files in this folder (a clip folder holds numbered frames: "
                                       "frame0001.png, frame0002.png, ...)")
        rgb, _ = load_image(self.files[0])
        rate = DEFAULT_FPS if fps is None else parse_fps(fps)
        self.info = ClipInfo(self.path, rgb.shape[-1], rgb.shape[-2], rate, 1 / rate, len(self.files),
                             kind="folder")
        self.on_packet = None

    def frames(self):
        from ..data.images import load_image

        size = (self.info.height, self.info.width)
        for i, path in enumerate(self.files):
            rgb, _ = load_image(path)  # an unreadable frame raises ImageReadError, naming it
            if tuple(rgb.shape[-2:]) != size:
                raise VideoReadError(path, f"is {rgb.shape[-1]}x{rgb.shape[-2]} but the clip's first frame "
                                           f"{self.files[0].name} is {size[1]}x{size[0]}: all frames must "
                                           "have one size")
            yield Frame(rgb, i, path.name)

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _ffmpeg_reason(exc):
    return str(getattr(exc, "strerror", None) or exc).strip().rstrip(".")


class FileClip:
    """A video file, decoded with PyAV (module docstring)."""

    def __init__(self, path, audio=True):
        import av

        self.path = Path(path)
        try:
            self.container = av.open(str(path), "r")
        except av.FFmpegError as exc:
            raise VideoReadError(path, f"not a video file, or a damaged one (FFmpeg: {_ffmpeg_reason(exc)})") \
                from None
        try:
            self._open(audio)
        except BaseException:
            self.container.close()
            raise

    def _open(self, audio):
        import av

        c = self.container
        if not c.streams.video:
            what = ", ".join(sorted({s.type for s in c.streams})) or "no streams"
            raise VideoReadError(self.path, f"has no video stream ({what})")
        self.stream = vs = c.streams.video[0]
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        if not cc.width or not cc.height:
            raise VideoReadError(self.path, "its video stream has no frame size (not a decodable video)")
        rate = vs.average_rate or vs.guessed_rate
        self.audio = [s for s in c.streams.audio] if audio else []
        self.info = ClipInfo(self.path, cc.width, cc.height, Fraction(rate) if rate else None,
                             Fraction(vs.time_base), vs.frames or None, audio=self.audio)
        self.on_packet = None
        self._pending = []  # packets demuxed before the first frame (given to on_packet later)
        self._decoded = self._decode()
        try:
            self._first = next(self._decoded)
        except StopIteration:
            raise VideoReadError(self.path, "its video stream holds no decodable frame") from None
        side = {str(sd.type).split(".")[-1].upper(): sd for sd in (self._first.side_data or [])}
        matrix = side.get("DISPLAYMATRIX")
        if matrix is not None:
            import numpy as np

            values = tuple(int(v) for v in np.frombuffer(bytes(matrix), dtype="<i4")[:9])
            self.info.display_matrix = values
            self.info.rotation = int(round(self._first.rotation)) % 360
        del av

    def _decode(self):
        import av

        vs = self.stream
        try:
            for packet in self.container.demux(vs, *self.audio):
                if packet.stream is vs:
                    yield from packet.decode()
                elif packet.dts is not None:
                    if self.on_packet is None:
                        self._pending.append(packet)
                    else:
                        self.on_packet(packet)
        except av.FFmpegError as exc:
            raise VideoReadError(self.path, f"damaged (FFmpeg: {_ffmpeg_reason(exc)})") from None

    def frames(self):
        """Frames in presentation order; raises VideoReadError when the file ends
        before the frame count or duration its header announces (truncated)."""
        for packet in self._pending:
            if self.on_packet is not None:
                self.on_packet(packet)
        self._pending = []
        n, last = 0, None
        frame = self._first
        while frame is not None:
            rgb = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
            yield Frame(rgb, frame.pts)
            n, last = n + 1, frame.pts
            self._first = None
            frame = next(self._decoded, None)
        self._check_complete(n, last)

    def _check_complete(self, n, last):
        # Some slack (2%, and a few frames) for headers that count a dropped
        # leading frame or round the duration; a file cut short misses more.
        info, vs = self.info, self.stream
        if info.frames and n < 0.98 * info.frames - 1:
            raise VideoReadError(self.path, f"truncated or damaged: it ends after {n} of its {info.frames} frames")
        duration = vs.duration
        if duration and last is not None and info.rate:
            ticks = 1 / (info.rate * info.time_base)  # time-base units per frame
            shown = last - (vs.start_time or 0)
            if shown < 0.98 * duration - 3 * ticks:
                raise VideoReadError(self.path, f"truncated or damaged: it ends at {float(shown * info.time_base):.2f} s "
                                                f"of {float(duration * info.time_base):.2f} s")

    def close(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_clip(path, fps=None, audio=True):
    """A FileClip (a video file) or a FolderClip (a folder of frames; fps: its
    frame rate, default 24); VideoReadError / FileNotFoundError otherwise."""
    path = Path(path)
    if path.is_dir():
        return FolderClip(path, fps)
    if not path.exists():
        raise FileNotFoundError(2, "no such file or folder", str(path))
    return FileClip(path, audio=audio)
