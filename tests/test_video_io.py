"""Video in and out (fastcolor.video.reader / writer, ``fastcolor video``): sizes,
time stamps, frame rate, rotation and audio kept; folders of frames in and
out; a bad input gives one error line and leaves no output behind.

The clips are tiny (a few frames of a few dozen pixels) and the model is the
tiny untrained network of conftest.model_file (input size 64)."""

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fastcolor.cli import main
from fastcolor.inference import Colorizer
from fastcolor.video import VideoColorizer, open_clip

RATE = Fraction(30000, 1001)


def _frames(n, h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return [np.roll(base, 2 * i, axis=1) for i in range(n)]


def make_clip(path, n=8, h=21, w=35, rotation=None, audio=True, faststart=False, fmt=None):
    """A clip of n frames (odd sizes by default) at 29.97 fps with an AAC
    audio track; returns the frames' pts."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format=fmt, options=options) as out:
        v = out.add_stream("libx264", rate=RATE)
        v.width, v.height = w, h
        v.pix_fmt = "yuv444p" if (w % 2 or h % 2) else "yuv420p"
        v.options = {"crf": "10"}
        if rotation is not None:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = out.add_stream("aac", rate=8000)
            a.layout = "mono"
        pts = []
        for i, arr in enumerate(_frames(n, h, w)):
            frame = av.VideoFrame.from_ndarray(arr, format="rgb24")
            frame.pts = i * 1001  # time base 1/30000
            frame.time_base = Fraction(1, 30000)
            pts.append(frame.pts)
            for p in v.encode(frame):
                out.mux(p)
        for p in v.encode():
            out.mux(p)
        if a is not None:
            t = np.arange(1024 * 8) / 8000
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            for i in range(8):
                af = av.AudioFrame.from_ndarray(samples[:, i * 1024:(i + 1) * 1024].copy(), format="fltp",
                                                layout="mono")
                af.sample_rate, af.pts = 8000, i * 1024
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode():
                out.mux(p)
    return pts


def _probe(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = list(c.decode(v))
        info = {"size": (frames[0].width, frames[0].height), "pts_s": [float(f.pts * f.time_base) for f in frames],
                "rate": v.average_rate, "rotation": frames[0].rotation, "n": len(frames)}
    with av.open(str(path)) as c:
        info["audio"] = [(p.pts, bytes(p)) for p in c.demux(c.streams.audio) if p.size] if c.streams.audio else []
    return info


@pytest.fixture(scope="module")
def video(model_file):
    return VideoColorizer(Colorizer.load(model_file, device="cpu"), temporal="flow", batch_size=3)


@pytest.mark.parametrize("size", [(21, 35), (16, 24)])
def test_size_time_stamps_rate_and_audio_are_kept(tmp_path, video, size):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, h=size[0], w=size[1])
    report = video.colorize_file(src, dst)
    a, b = _probe(src), _probe(dst)
    assert report["frames"] == a["n"] == b["n"] == 8
    assert b["size"] == a["size"] == (size[1], size[0])
    assert b["pts_s"] == pytest.approx(a["pts_s"], abs=1e-4)
    assert b["rate"] == a["rate"] == RATE
    assert b["audio"] and b["audio"] == a["audio"]  # packets copied byte for byte, same time stamps
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]  # no temporary file left


def test_rotation_is_carried_to_the_output(tmp_path, video):
    src, dst = tmp_path / "in.mov", tmp_path / "out.mp4"
    make_clip(src, rotation=90, audio=False)
    video.colorize_file(src, dst)
    assert _probe(src)["rotation"] == _probe(dst)["rotation"] == 90
    with open_clip(dst) as clip:
        assert clip.info.rotation == 90 and clip.info.display_matrix is not None


def test_folders_of_frames_in_and_out(tmp_path, video):
    frames = tmp_path / "scans"
    frames.mkdir()
    for i, arr in enumerate(_frames(5, 19, 27)):
        Image.fromarray(arr).save(frames / f"reel{i + 8}.png")  # 8, 9, 10, 11, 12: numeric order
    out = tmp_path / "colour"
    assert main(["video", str(frames), "-o", str(out) + "/", "--model", str(video.colorizer.path),
                 "--device", "cpu"]) == 0
    assert sorted(os.listdir(out), key=lambda n: int(n[4:-4])) == [f"reel{i}.png" for i in range(8, 13)]
    assert Image.open(out / "reel8.png").size == (27, 19)
    mp4 = tmp_path / "reel.mp4"
    assert main(["video", str(frames), "-o", str(mp4), "--fps", "25", "--model", str(video.colorizer.path),
                 "--device", "cpu", "--temporal", "ema"]) == 0
    info = _probe(mp4)
    assert info["n"] == 5 and info["rate"] == 25 and info["pts_s"] == pytest.approx([0, .04, .08, .12, .16])


def test_a_video_to_frames_turns_them_upright(tmp_path, video):
    src = tmp_path / "in.mp4"
    make_clip(src, n=3, rotation=90, audio=False)
    video.colorize_file(src, tmp_path / "frames/")
    names = sorted(os.listdir(tmp_path / "frames"))
    assert names == ["frame_000001.png", "frame_000002.png", "frame_000003.png"]
    assert Image.open(tmp_path / "frames" / names[0]).size == (21, 35)  # 35 x 21 turned by 90 degrees


def _one_error_line(code, err):
    """Exit code 2 and one error line (besides the status line 'fastcolor video: IN -> OUT' of a run that
    started, which the progress bar follows)."""
    lines = [line for line in err.strip().splitlines() if line.strip() and " -> " not in line]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_bad_inputs_give_one_line_and_leave_no_output(tmp_path, model_file, capsys):
    good = tmp_path / "good.mp4"
    make_clip(good, audio=False)
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("these are not the frames you are looking for\n" * 50)
    audio_only = tmp_path / "sound.m4a"
    with av.open(str(audio_only), "w") as out:
        a = out.add_stream("aac", rate=8000)
        a.layout = "mono"
        for i in range(4):
            af = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            af.sample_rate, af.pts = 8000, i * 1024
            for p in a.encode(af):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    whole = tmp_path / "whole.mp4"
    make_clip(whole, n=40, h=64, w=64, audio=False, faststart=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.55)])

    out = tmp_path / "out" / "result.mp4"
    out.parent.mkdir()
    out.write_bytes(b"the previous good result")
    cases = {
        "not a video": (not_video, "not a video"),
        "no video stream": (audio_only, "no video stream"),
        "truncated half-way": (cut, "truncated"),
        "missing": (tmp_path / "nope.mp4", "no such file"),
    }
    for label, (src, words) in cases.items():
        code = main(["video", str(src), "-o", str(out), "--model", str(model_file), "--device", "cpu"])
        line = _one_error_line(code, capsys.readouterr().err)
        assert words in line and "fastcolor video: error:" in line, (label, line)
        assert out.read_bytes() == b"the previous good result", label
        assert os.listdir(out.parent) == ["result.mp4"], (label, os.listdir(out.parent))
    refused = {
        "unknown suffix": ["-o", str(tmp_path / "x.gif")],
        "crf of an encoder without one": ["-o", str(tmp_path / "x.mkv"), "--codec", "ffv1", "--crf", "3"],
        "unknown encoder": ["-o", str(tmp_path / "x.mkv"), "--codec", "no-such-codec"],
        "output is the input": ["-o", str(good)],
        "fps of a file": ["-o", str(tmp_path / "x.mp4"), "--fps", "25"],
        "non-empty output folder": ["-o", str(out.parent) + "/"],
    }
    for label, extra in refused.items():
        code = main(["video", str(good), *extra, "--model", str(model_file), "--device", "cpu"])
        _one_error_line(code, capsys.readouterr().err)
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "good.mp4", "notes.mp4", "out", "sound.m4a", "whole.mp4"]


def test_a_failure_half_way_removes_the_partial_output(tmp_path, video, monkeypatch):
    src, dst = tmp_path / "in.mp4", tmp_path / "out.mp4"
    make_clip(src, n=8, audio=False)
    real = VideoColorizer._network
    calls = []

    def failing(self, rgbs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, rgbs)

    monkeypatch.setattr(VideoColorizer, "_network", failing)
    with pytest.raises(OSError):
        video.colorize_file(src, dst)
    calls.clear()
    with pytest.raises(OSError):
        video.colorize_file(src, tmp_path / "frames/")
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_open_clip_reports_the_clip(tmp_path):
    src = tmp_path / "in.mkv"
    make_clip(src, n=4, audio=True, fmt="matroska")
    with open_clip(src) as clip:
        assert (clip.info.width, clip.info.height) == (35, 21)
        assert clip.info.rate == RATE and len(clip.info.audio) == 1
        frames = list(clip.frames())
    assert len(frames) == 4 and frames[0].rgb.shape == (3, 21, 35)
    Path(tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        open_clip(tmp_path / "empty")
