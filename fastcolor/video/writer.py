"""Writing a colorized clip: a video file (PyAV, FFmpeg's encoders) or a folder of PNG frames.

    plan = plan_output("film.mp4", "film_color.mp4", codec="libx264", crf=18)   # checks, before any work
    with open_writer(plan, clip.info) as writer:
        clip.on_packet = writer.copy_packet      # audio packets, copied through unchanged
        for frame in colorized:                  # rgb uint8 (3, H, W) and pts
            writer.write(frame.rgb, frame.pts, frame.name)

Nothing is left under the final name until the clip is complete: a video file
is written to a temporary file beside it (fastcolor.atomic), a folder of
frames to a temporary folder beside it, renamed when the last frame is in. A
failure or an interrupt removes the temporary file or folder.

Video files keep the input's time stamps (each frame's pts in the input's
time base), frame rate and size: odd widths or heights, which 4:2:0 chroma
cannot hold, are encoded in 4:4:4 (yuv444p; H.264 High 4:4:4, which some
players, browsers among them, do not play) instead of being cropped or
padded. A rotated input's display matrix is copied to the output, so players
turn it as they turned the input. Frames written to a folder are turned
upright instead (PNG has no rotation tag).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import numpy as np

from ..errors import UsageError

__all__ = ["CRF_RANGES", "DEFAULT_CODEC", "DEFAULT_CRF", "OutputPlan", "VIDEO_FORMATS", "open_writer",
           "plan_output"]

VIDEO_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                 ".avi": "avi"}
DEFAULT_CODEC = "libx264"
DEFAULT_CRF = 18  # x264: visually lossless for most footage
CRF_RANGES = {"libx264": 51, "libx265": 51, "libvpx-vp9": 63, "libaom-av1": 63, "libsvtav1": 63}


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """kind: "file" or "folder"; path; codec and crf (files)."""

    kind: str
    path: Path
    codec: str = DEFAULT_CODEC
    crf: int | None = None


def _is_folder_name(text):
    text = os.fspath(text)
    return text.endswith(("/", os.sep)) or Path(text).is_dir() or not Path(text).suffix


def _check_codec(codec):
    import av

    try:
        c = av.Codec(codec, "w")
    except Exception:  # noqa: BLE001 - PyAV raises several kinds for an unknown name
        raise UsageError(f"unknown video encoder {codec!r} (this FFmpeg has libx264, libx265 (if built), "
                         "libvpx-vp9, mpeg4, ffv1, ...)") from None
    if c.type != "video":
        raise UsageError(f"--codec {codec} is an {c.type} encoder, not a video one")
    return c


def plan_output(source, output, codec=DEFAULT_CODEC, crf=None):
    """The OutputPlan for colorizing source into output, every check done
    before any work (UsageError, one line): a folder (a name ending in /, an
    existing folder or a name without a suffix) must be new or empty; a file
    needs a known video suffix, must not be the input, and its folder must be
    writable; the encoder must exist and take --crf when given."""
    from ..outputs import check_output_file, check_writable_folder

    source, out = Path(source), Path(output)
    if not source.exists():
        raise FileNotFoundError(2, "no such file or folder", str(source))
    if _is_folder_name(output):
        if out.exists() and not out.is_dir():
            raise UsageError(f"the output {out} exists and is not a folder")
        if out.is_dir() and any(out.iterdir()):
            raise UsageError(f"the output folder {out} exists and is not empty: the frames would mix with its "
                             "files (choose a new or empty folder)")
        check_writable_folder(out)
        return OutputPlan("folder", out)
    fmt = VIDEO_FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise UsageError(f"unknown video format {out.suffix!r} for {out}: use "
                         f"{', '.join(VIDEO_FORMATS)}, or a folder (a name ending in /) for PNG frames")
    check_output_file(out, "output video", inputs=[source] if source.is_file() else ())
    c = _check_codec(codec)
    if crf is not None:
        top = CRF_RANGES.get(c.name)
        if top is None:
            raise UsageError(f"--crf applies to {', '.join(CRF_RANGES)}; the encoder {c.name} has no CRF mode")
        if not 0 <= crf <= top:
            raise UsageError(f"--crf must be in 0..{top} for {c.name}, got {crf}")
    elif c.name in CRF_RANGES:
        crf = DEFAULT_CRF
    return OutputPlan("file", out, c.name, crf)


def _pix_fmt(codec, width, height):
    """4:2:0 where the size allows it, else 4:4:4; else the encoder's first format."""
    import av

    names = [f.name for f in (av.Codec(codec, "w").video_formats or [])]
    even = width % 2 == 0 and height % 2 == 0
    for want in (["yuv420p"] if even else []) + ["yuv444p", "rgb24", "bgr0"]:
        if not names or want in names:
            return want
    return names[0]


class FileWriter:
    """Encodes frames into an open PyAV output container (see open_writer)."""

    def __init__(self, container, plan, info):
        import av

        self.container, self.info, self.plan = container, info, plan
        rate = info.rate or Fraction(25)
        vs = self.stream = container.add_stream(plan.codec, rate=rate)
        vs.width, vs.height = info.width, info.height
        vs.pix_fmt = _pix_fmt(plan.codec, info.width, info.height)
        vs.time_base = info.time_base
        vs.codec_context.time_base = info.time_base
        options = {}
        if plan.crf is not None:
            options["crf"] = str(plan.crf)
            if plan.codec == "libvpx-vp9":
                options["b:v"] = "0"  # constant quality
        vs.options = options
        if info.display_matrix is not None:
            vs.set_display_matrix(list(info.display_matrix))
        self.audio = {}
        for s in info.audio:
            self.audio[s.index] = container.add_stream_from_template(s)
        try:
            container.start_encoding()
        except (av.FFmpegError, ValueError) as exc:
            what = ", ".join(s.codec_context.name for s in info.audio) or plan.codec
            raise UsageError(f"{plan.path}: the {Path(plan.path).suffix} format cannot hold this clip's "
                             f"streams ({what}; FFmpeg: {str(exc).strip()}); try .mkv") from None
        self.ticks = 1 / (rate * info.time_base)  # time-base units per frame
        self.last = None
        self.count = 0

    def write(self, rgb, pts=None, name=None):
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()), format="rgb24")
        if pts is None:
            pts = round(self.count * self.ticks)
        if self.last is not None and pts <= self.last:
            pts = self.last + 1  # encoders need strictly increasing time stamps
        frame.pts, frame.time_base = pts, self.info.time_base
        self.last, self.count = pts, self.count + 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def copy_packet(self, packet):
        out = self.audio.get(packet.stream.index)
        if out is not None:
            packet.stream = out
            self.container.mux(packet)

    def finish(self):
        for packet in self.stream.encode(None):
            self.container.mux(packet)


class FolderWriter:
    """Writes each frame as a PNG into a folder (see open_writer)."""

    def __init__(self, folder, info):
        self.folder, self.info, self.count = Path(folder), info, 0
        self.turns = (info.rotation // 90) % 4 if info.rotation % 90 == 0 else 0

    def write(self, rgb, pts=None, name=None):
        from PIL import Image

        self.count += 1
        arr = rgb.permute(1, 2, 0).numpy()
        if self.turns:
            arr = np.rot90(arr, self.turns)
        name = Path(name).stem + ".png" if name else f"frame_{self.count:06d}.png"
        Image.fromarray(np.ascontiguousarray(arr)).save(self.folder / name)

    def copy_packet(self, packet):
        pass  # no audio in a folder of frames

    def finish(self):
        pass


@contextmanager
def open_writer(plan, info):
    """A FileWriter or FolderWriter for plan (an OutputPlan) and the input's
    ClipInfo; the output appears under its final name only when the block ends
    without an error (module docstring)."""
    from ..atomic import atomic_path, temp_prefix

    if plan.kind == "folder":
        final = plan.path
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = tempfile.mkdtemp(dir=final.parent, prefix=temp_prefix(final))
        try:
            writer = FolderWriter(tmp, info)
            yield writer
            writer.finish()
            os.chmod(tmp, 0o755)
            if final.is_dir() and not any(final.iterdir()):
                final.rmdir()
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return
    import av

    with atomic_path(plan.path, suffix=plan.path.suffix) as tmp:
        container = av.open(tmp, "w", format=VIDEO_FORMATS[plan.path.suffix.lower()])
        try:
            writer = FileWriter(container, plan, info)
            yield writer
            writer.finish()
        finally:
            container.close()
