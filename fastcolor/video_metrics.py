"""Scoring a colorized video against its colour original: steadiness and accuracy.

    report = evaluate_video("clip.mp4", "clip_colorized.mp4")   # files or folders of frames
    print(format_report(report))

Both clips are read as a stream (fastcolor.video.reader): a few frames in
memory whatever the length. Three rows are scored: ``colorized``, ``original``
(the floor of the temporal metrics: a real video moves too) and ``gray``
(the original's lightness with zero chroma: what lightness alone does).

* ``warp_rgb``, ``warp_ab``: warping error (Lai et al., ECCV 2018). For each
  frame t > 0, the backward optical flow f_b (t -> t-1) and the forward flow
  f_f (t-1 -> t) are computed on the ORIGINAL frames (gray levels) with
  OpenCV's Farneback method, not the DIS flow of ``fastcolor video --temporal
  flow``, so that no method is graded by its own flow. A pixel x counts
  (M(x) = 1) when x + f_b(x) lies inside the frame and the flows agree:
  |f_b(x) + f_f(x + f_b(x))|^2 < 0.01 (|f_b(x)|^2 + |f_f(x + f_b(x))|^2) + 0.5.
  E_t = sum_x M(x) |O_t(x) - O_{t-1}(x + f_b(x))|^2 / sum_x M(x), the squared
  norm over RGB in [0, 1] (``warp_rgb``) or over CIE a*b* in Lab units
  (``warp_ab``; L is the same for every colorization of one clip), O_{t-1}
  sampled bilinearly; the mean over the frames with at least one such pixel.
* ``warp_rgb_shots``, ``warp_ab_shots``: the same, within shots: the frame
  pairs across a cut of the ORIGINAL (``cuts``) are left out, for every
  clip alike. Lai et al. score single shots; across a cut the flow between two
  unrelated pictures is meaningless and the "error" is the change of scene
  (a method that resets there pays it in full, one that blends the scenes
  less). A pair (t-1, t) crosses a cut when the original's frame t-1, warped
  along the same flow, misses frame t by more than CUT_RMS = 32 gray levels
  (of 255) RMS over M, or when no pixel passes M. Within a shot the original
  misses by a few gray levels (at most 19 on bikes, which has fast motion and
  motion blur); across the five cuts of bikes by 59 to 107.
* ``cdc``: colour distribution consistency (Liu et al., TCVC): for gaps
  d = 1, 2, 4, the mean over frame pairs (t, t + d) of the mean over the R, G,
  B channels of the Jensen-Shannon divergence (natural log, in [0, ln 2]) of
  the two frames' 256-bin histograms of that channel; cdc = the mean over the
  gaps that have pairs (``cdc_gaps`` gives each).
* ``auc``, ``auc_rebalanced``, ``colourfulness``, ``psnr``: as
  fastcolor.evaluation defines them, pooled over every pixel of every frame
  (colourfulness and PSNR: the mean over frames); the rebalanced AuC weighs a
  pixel by 1 / prior of its true a*b*'s bin of Codebook.zhang313(), the prior
  being that of the original clip's frames (``prior="data"``, one pass: the
  accuracy is counted per bin and weighted at the end) or "imagenet".
* ``fps``: frames / ``elapsed`` seconds when the caller timed the
  colorization (``fastcolor evaluate-video --elapsed``); ``evaluation_fps``:
  this evaluation's own speed.
"""

import argparse
import json
import math
import sys
import time
from collections import deque
from itertools import zip_longest

import cv2
import numpy as np
import torch

from . import metrics, ops
from .color import lab_to_rgb, rgb_to_lab
from .color.codebook import Codebook
from .color.prior import imagenet_prior, prior_from_counts
from .data.images import to_float, to_uint8
from .evaluation import finite_or_none

__all__ = ["CDC_GAPS", "CUT_RMS", "ROWS", "VideoScorer", "build_parser", "channel_histograms", "crosses_cut",
           "evaluate_video", "farneback_flow", "format_report", "jensen_shannon", "main", "occlusion_mask",
           "report_json", "warp_image", "warping_error"]

CDC_GAPS = (1, 2, 4)
ROWS = ("colorized", "original", "gray")
MAX_THRESHOLD = 150  # the AuC's last threshold, as the paper
CUT_RMS = 32.0  # gray levels: the original warped along its flow misses by more across a cut


# ------------------------------------------------------------------ the maths


def jensen_shannon(p, q):
    """Jensen-Shannon divergence (natural log) of histograms along the last
    axis: 0.5 KL(p || m) + 0.5 KL(q || m), m = (p + q) / 2, each normalised
    to sum 1 first; 0 log 0 = 0. In [0, ln 2]. Returns float64 of the leading shape."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    m = 0.5 * (p + q)

    def kl(a):
        ratio = np.divide(a, m, out=np.ones_like(a), where=a > 0)
        return (a * np.log(ratio)).sum(axis=-1)

    return np.maximum(0.5 * kl(p) + 0.5 * kl(q), 0.0)


def channel_histograms(rgb):
    """(3, 256) float64 counts of the values 0..255 of each channel of a uint8 (3, H, W) frame."""
    rgb = torch.as_tensor(rgb)
    if rgb.dtype != torch.uint8 or rgb.dim() != 3 or rgb.shape[0] != 3:
        raise ValueError(f"expected a uint8 (3, H, W) frame, got {rgb.dtype} {tuple(rgb.shape)}")
    offsets = torch.arange(3).view(3, 1) * 256
    counts = torch.bincount((rgb.reshape(3, -1).long() + offsets).flatten(), minlength=3 * 256)
    return counts.view(3, 256).double().numpy()


def farneback_flow(src, dst):
    """Flow f (H, W, 2), x then y, with src(x) ~ dst(x + f(x)), between two
    uint8 (H, W) gray images: OpenCV's Farneback method (3 levels, 15-pixel
    windows, 3 iterations, degree-5 expansions of sigma 1.2). Identical
    images (a repeated frame, as telecined film has) get exactly zero flow,
    where Farneback's polynomial fit leaves up to a tenth of a pixel."""
    if np.array_equal(src, dst):
        return np.zeros((*src.shape, 2), dtype=np.float32)
    return cv2.calcOpticalFlowFarneback(src, dst, None, 0.5, 3, 15, 3, 5, 1.2, 0)


def _sample_grid(flow):
    h, w = flow.shape[:2]
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return gx + flow[..., 0], gy + flow[..., 1]


def warp_image(image, flow):
    """image(x + flow(x)): float32 (H, W) or (H, W, C) sampled bilinearly (edge values outside)."""
    mx, my = _sample_grid(flow)
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), mx, my, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def occlusion_mask(backward, forward):
    """bool (H, W): the pixels x of frame t whose backward flow (t -> t-1)
    lands inside frame t-1 and agrees with the forward flow there (the test
    of the module docstring)."""
    h, w = backward.shape[:2]
    mx, my = _sample_grid(backward)
    inside = (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
    fwd = warp_image(forward, backward)
    gap = np.square(backward + fwd).sum(-1)
    bound = 0.01 * (np.square(backward).sum(-1) + np.square(fwd).sum(-1)) + 0.5
    return inside & (gap < bound)


def warping_error(current, previous, backward, mask):
    """sum_x M(x) |current(x) - previous(x + backward(x))|^2 / sum_x M(x) over
    (H, W, C) or (H, W) images; None when no pixel is unmasked."""
    count = int(mask.sum())
    if count == 0:
        return None
    current = np.asarray(current, dtype=np.float32)
    diff = np.square(current - warp_image(previous, backward).reshape(current.shape))
    diff = diff.sum(-1) if diff.ndim == 3 else diff
    return float(diff[mask].sum(dtype=np.float64) / count)


def crosses_cut(current, previous, backward, mask):
    """True when the original gray frames (uint8 (H, W)) previous -> current
    cross a cut: previous warped along backward misses current by more than
    CUT_RMS gray levels RMS over the mask, or no pixel passes the mask."""
    e = warping_error(current, previous, backward, mask)
    return e is None or e > CUT_RMS ** 2


# ------------------------------------------------------------ streamed scores


class _Row:
    """The temporal scores of one clip (colorized, original or gray), frame by frame."""

    def __init__(self):
        self.prev = None  # (rgb float (H, W, 3), ab float (H, W, 2)) of the previous frame
        self.warp = {key: [0.0, 0] for key in ("rgb", "ab", "rgb_shots", "ab_shots")}
        self.hists = deque(maxlen=max(CDC_GAPS))
        self.cdc = {d: [0.0, 0] for d in CDC_GAPS}
        self.colourfulness = 0.0

    def add(self, rgb_u8, rgb, ab, backward, mask, cut):
        """cut: the pair (previous frame, this one) crosses a cut of the original."""
        if self.prev is not None and mask is not None:
            for key, cur, prev in (("rgb", rgb, self.prev[0]), ("ab", ab, self.prev[1])):
                e = warping_error(cur, prev, backward, mask)
                if e is not None:
                    for k in (key,) if cut else (key, key + "_shots"):
                        self.warp[k][0] += e
                        self.warp[k][1] += 1
        self.prev = (rgb, ab)
        h = channel_histograms(rgb_u8)
        for d in CDC_GAPS:
            if len(self.hists) >= d:
                self.cdc[d][0] += float(jensen_shannon(self.hists[-d], h).mean())
                self.cdc[d][1] += 1
        self.hists.append(h)

    def result(self, frames):
        mean = lambda s: s[0] / s[1] if s[1] else None  # noqa: E731
        gaps = {str(d): mean(v) for d, v in self.cdc.items()}
        present = [v for v in gaps.values() if v is not None]
        return {"warp_rgb": mean(self.warp["rgb"]), "warp_ab": mean(self.warp["ab"]),
                "warp_rgb_shots": mean(self.warp["rgb_shots"]), "warp_ab_shots": mean(self.warp["ab_shots"]),
                "cdc": sum(present) / len(present) if present else None, "cdc_gaps": gaps,
                "colourfulness": self.colourfulness / frames}


class VideoScorer:
    """The scores of the module docstring, fed one frame pair at a time.

        scorer = VideoScorer()
        for original, colorized in pairs:       # uint8 (3, H, W) RGB frames
            scorer.add(original, colorized)
        scorer.result()

    prior: "data" (the original frames' own prior) or "imagenet".
    """

    def __init__(self, prior="data"):
        if prior not in ("data", "imagenet"):
            raise ValueError(f"prior must be 'data' or 'imagenet', got {prior!r}")
        self.prior = prior
        self.codebook = Codebook.zhang313()
        q = len(self.codebook)
        # Accuracy histograms per true bin: one pass gives the data prior too.
        self.tables = {name: torch.zeros(q * (MAX_THRESHOLD + 2), dtype=torch.float64) for name in ("colorized", "gray")}
        self.psnr = {"colorized": [], "gray": []}
        self.rows = {name: _Row() for name in ROWS}
        self.prev_gray = None
        self.frames = 0
        self.cuts = []  # frames t of the original where a new shot starts (the pair t-1, t crosses a cut)
        self.size = None

    def _count(self, name, pred_ab, true_ab, bins):
        d = torch.linalg.vector_norm(pred_ab.double() - true_ab.double(), dim=1).flatten()
        k = d.ceil_().clamp_(max=MAX_THRESHOLD + 1).long()
        self.tables[name] += torch.bincount(bins * (MAX_THRESHOLD + 2) + k, minlength=self.tables[name].numel()).double()

    def add(self, original, colorized):
        """original, colorized: uint8 (3, H, W) RGB frames of the same size."""
        original, colorized = torch.as_tensor(original), torch.as_tensor(colorized)
        if original.shape != colorized.shape:
            raise ValueError(f"frame {self.frames}: the original is {tuple(original.shape[1:])} (H, W) but the "
                             f"colorized frame is {tuple(colorized.shape[1:])}")
        if original.dtype != torch.uint8 or colorized.dtype != torch.uint8 or original.dim() != 3 or original.shape[0] != 3:
            raise ValueError(f"frames must be uint8 (3, H, W) RGB, got {original.dtype} {tuple(original.shape)}")
        self.size = (int(original.shape[2]), int(original.shape[1]))
        frames = to_float(torch.stack([original, colorized]))
        lab = rgb_to_lab(frames)
        gray = lab_to_rgb(torch.cat([lab[:1, :1], torch.zeros_like(lab[:1, 1:])], dim=1))[0]
        true_ab, pred_ab = lab[:1, 1:], lab[1:, 1:]
        bins = ops.nearest_bin(true_ab, self.codebook).flatten()
        self._count("colorized", pred_ab, true_ab, bins)
        self._count("gray", torch.zeros_like(true_ab), true_ab, bins)
        self.psnr["colorized"].append(float(metrics.psnr(frames[1:], frames[:1])[0]))
        self.psnr["gray"].append(float(metrics.psnr(gray[None], frames[:1])[0]))

        luma = cv2.cvtColor(np.ascontiguousarray(original.permute(1, 2, 0).numpy()), cv2.COLOR_RGB2GRAY)
        backward = mask = None
        cut = False
        if self.prev_gray is not None:
            backward = farneback_flow(luma, self.prev_gray)
            mask = occlusion_mask(backward, farneback_flow(self.prev_gray, luma))
            cut = crosses_cut(luma, self.prev_gray, backward, mask)
            if cut:
                self.cuts.append(self.frames)
        self.prev_gray = luma
        gray_u8 = to_uint8(gray)
        hwc = lambda t: np.ascontiguousarray(t.permute(1, 2, 0).numpy(), dtype=np.float32)  # noqa: E731
        clips = {"colorized": (colorized, frames[1], lab[1, 1:]), "original": (original, frames[0], lab[0, 1:]),
                 "gray": (gray_u8, to_float(gray_u8), torch.zeros_like(lab[0, 1:]))}
        for name, (u8, rgb, ab) in clips.items():
            self.rows[name].add(u8, hwc(rgb), hwc(ab), backward, mask, cut)
            self.rows[name].colourfulness += float(metrics.colourfulness(rgb[None])[0])
        self.frames += 1
        return self

    def _aucs(self, name, prior):
        table = self.tables[name].view(len(self.codebook), MAX_THRESHOLD + 2)
        counted = table.sum(1) > 0
        if (prior[counted] <= 0).any():
            raise ValueError("a pixel's true bin has zero prior probability (infinite weight)")
        weights = torch.where(counted, 1.0 / prior.clamp_min(1e-300), 0.0)
        return {"auc": metrics.auc_from_histogram(table.sum(0)),
                "auc_rebalanced": metrics.auc_from_histogram((table * weights[:, None]).sum(0))}

    def result(self):
        if not self.frames:
            raise ValueError("no frames to score")
        counts = self.tables["colorized"].view(len(self.codebook), -1).sum(1)
        prior = prior_from_counts(counts, self.codebook) if self.prior == "data" else imagenet_prior()
        report = {name: row.result(self.frames) for name, row in self.rows.items()}
        for name in ("colorized", "gray"):
            report[name].update(self._aucs(name, prior.double()))
            report[name]["psnr"] = float(np.mean(self.psnr[name]))
        report.update(frames=self.frames, size=list(self.size), prior=self.prior, flow="farneback",
                      cuts=list(self.cuts))
        return report


def _resized(rgb, max_side):
    h, w = rgb.shape[1:]
    if max_side is None or max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = cv2.resize(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()), size, interpolation=cv2.INTER_AREA)
    return torch.from_numpy(out).permute(2, 0, 1)


def evaluate_video(original, colorized, prior="data", max_side=None, elapsed=None, fps=None, progress=False):
    """The report of the module docstring for two clips (video files or
    folders of frames, read with fastcolor.video.reader.open_clip; fps: the
    rate of a folder). max_side: score both at most this many pixels on their
    longer side (INTER_AREA), default their size. elapsed: seconds the
    colorization took, reported as ``fps``. ValueError when the clips differ
    in size or length (fastcolor.video.reader.VideoReadError for unreadable ones)."""
    from tqdm.auto import tqdm

    from .video.reader import open_clip

    if max_side is not None and (isinstance(max_side, bool) or int(max_side) != max_side or max_side < 8):
        raise ValueError(f"max_side must be an integer >= 8, got {max_side!r}")
    if elapsed is not None and not (float(elapsed) > 0 and math.isfinite(float(elapsed))):
        raise ValueError(f"elapsed must be a positive number of seconds, got {elapsed!r}")
    scorer = VideoScorer(prior)
    start = time.perf_counter()
    with open_clip(original, fps, audio=False) as a, open_clip(colorized, fps, audio=False) as b:
        total = a.info.frames
        pairs = zip_longest(a.frames(), b.frames())
        for fa, fb in tqdm(pairs, total=total, desc="evaluate", unit="frame", disable=None if progress else True):
            if fa is None or fb is None:
                longer, shorter = (original, colorized) if fb is None else (colorized, original)
                raise ValueError(f"{shorter} has {scorer.frames} frames but {longer} has more: "
                                 "the clips must have the same frames")
            scorer.add(_resized(fa.rgb, max_side), _resized(fb.rgb, max_side))
    report = scorer.result()
    took = time.perf_counter() - start
    report.update(original_path=str(original), colorized_path=str(colorized), max_side=max_side,
                  fps=report["frames"] / float(elapsed) if elapsed else None,
                  evaluation_fps=report["frames"] / took if took > 0 else None)
    return report


# ------------------------------------------------------------------ reports

COLUMNS = (("warp_rgb", "warp RGB", "{:.5f}"), ("warp_ab", "warp ab", "{:.3f}"),
           ("warp_ab_shots", "warp ab in shots", "{:.3f}"), ("cdc", "CDC", "{:.5f}"),
           ("auc", "AuC %", "{:.2f}"), ("auc_rebalanced", "rebal. AuC %", "{:.2f}"),
           ("colourfulness", "colourfulness", "{:.2f}"), ("psnr", "PSNR dB", "{:.2f}"))


def format_report(report):
    """The report as a text table (AuC in percent), then the frame count and speeds."""
    def cell(row, key, fmt):
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return fmt.format(100 * v if key.startswith("auc") else v)

    header = ["", *(title for _, title, _ in COLUMNS)]
    rows = [[name, *(cell(report[name], key, fmt) for key, _, fmt in COLUMNS)] for name in ROWS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    w, h = report["size"]
    tail = f"{report['frames']} frames, {w}x{h}, flow: Farneback on the original, prior: {report['prior']}"
    tail += f", cuts of the original before frames {report['cuts']}" if report.get("cuts") else ", no cut"
    if report.get("fps"):
        tail += f", colorization {report['fps']:.2f} frames/s"
    if report.get("evaluation_fps"):
        tail += f", evaluation {report['evaluation_fps']:.1f} frames/s"
    return "\n".join([*lines, tail])


def report_json(report):
    """The report as strict JSON text (a number that is not finite is null)."""
    return json.dumps(finite_or_none(report), indent=2, allow_nan=False) + "\n"


# ------------------------------------------------------------ command line


def _positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got {text!r}")
        return value
    return parse


def build_parser():
    from .video.reader import fps_argument  # (the reader needs PyAV: imported when used)

    p = argparse.ArgumentParser(
        prog="fastcolor evaluate-video",
        description="Score a colorized video against its colour original: warping error (RGB and a*b*, "
                    "Farneback flow of the original), colour distribution consistency, AuC, rebalanced AuC, "
                    "colourfulness and PSNR, for the colorization, the original (the floor) and its gray "
                    "version. Both are read as a stream.")
    p.add_argument("original", help="the colour original: a video file or a folder of frames")
    p.add_argument("colorized", help="its colorization: a video file or a folder of frames, same size and frames")
    p.add_argument("--json", nargs="?", const="-", default=None, metavar="PATH",
                   help="print the report as JSON instead of a table (or write it to PATH)")
    p.add_argument("--prior", choices=("data", "imagenet"), default="data",
                   help="prior of the rebalanced AuC: the original's own (default) or the ImageNet one")
    p.add_argument("--max-side", type=_positive(int), default=None, metavar="PX",
                   help="score at most PX pixels on the longer side (default: the clips' size)")
    p.add_argument("--elapsed", type=_positive(float), default=None, metavar="SECONDS",
                   help="seconds the colorization took: reported as frames/s")
    p.add_argument("--fps", type=fps_argument, default=None, help="frame rate of folders of frames (24)")
    return p


def main(argv=None):
    """``fastcolor evaluate-video``: runs inside fastcolor.errors.run (one error line, exit code 2)."""
    from .atomic import write_bytes_atomic
    from .outputs import check_output_file

    args = build_parser().parse_args(argv)
    if args.json not in (None, "-"):  # checked before the evaluation, not after it
        check_output_file(args.json, "JSON file", inputs=[args.original, args.colorized])
    report = evaluate_video(args.original, args.colorized, args.prior, args.max_side, args.elapsed, args.fps,
                            progress=True)
    if args.json is None:
        print(format_report(report))
    elif args.json == "-":
        sys.stdout.write(report_json(report))
    else:
        write_bytes_atomic(args.json, report_json(report).encode())
    return 0
