"""Scoring colorizations of photos: the numbers ``fastcolor evaluate`` prints.

    report = evaluate(model="run", data="photos/val")       # a folder of photos
    prior = photo_prior([true_rgb])                          # (313,) prior of the photos
    score(pred_rgb, true_rgb, prior)                         # one batch, (N, 3, H, W) in [0, 1]

Every number is computed from RGB images in [0, 1], the prediction being the
RGB a user gets (after the gamut clip), and measured on CIE Lab a*b*
(fastcolor.rgb_to_lab) whatever the model's colour space, so models in Lab
and YUV and the paper's numbers compare (docs/design.md, section 2.10):

* ``auc``: area under the per-pixel a*b* accuracy curve (Zhang et al.,
  ECCV 2016, Table 1). acc(t) = the fraction of pixels with
  ||ab_pred - ab_true||_2 <= t; auc = the mean of acc(t) over the integer
  thresholds t = 0, 1, ..., 150, pooled over every pixel of the set. In [0, 1].
* ``auc_rebalanced``: the same with every pixel weighted by 1 / prior[q],
  q its true a*b*'s nearest bin of Codebook.zhang313() (the 313 Lab bins of
  the paper) and ``prior`` a (313,) distribution over those bins: the prior
  of the scored photos themselves (``photo_prior``: bin_histogram of their
  true a*b*, normalised and smoothed with sigma = 5, as prior_from_counts)
  or the released ImageNet prior ("imagenet"). Rare, saturated colours
  count more. Not the training validation's weighting over a training codebook.
* ``colourfulness``: Hasler and Suesstrunk (2003), the mean over images of
  sqrt(std_rg^2 + std_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), with
  rg = R - G, yb = (R + G) / 2 - B on the 0..255 scale, of the predictions;
  ``colourfulness_true``: the same of the true photos.
* ``psnr``: the mean over images of 10 log10(1 / MSE), MSE over the RGB
  channels and pixels, data range 1 (inf for an exact image: printed as
  "inf", null in ``report_json``, as JSON has no infinity).

``evaluate`` resizes every photo so that its shorter side is ``size`` and
crops the centre size x size (``square_crop``), stores it as uint8,
colorizes it, and reports rows "model", "gray" (ab = 0: the photo's
lightness with zero chroma) and "ground_truth" (colourfulness only).
"""

import math

import torch

from . import metrics
from .color import rgb_to_lab
from .color.codebook import Codebook
from .color.prior import estimate_prior, imagenet_prior
from .data.images import find_images, read_image, to_float, to_uint8
from .data.transforms import centre_crop, resize

__all__ = ["COLUMNS", "Scorer", "evaluate", "format_table", "photo_prior", "report_json", "score", "square_crop"]

SCORES = ("auc", "auc_rebalanced", "colourfulness", "colourfulness_true", "psnr")
COLUMNS = (("auc", "AuC %"), ("auc_rebalanced", "rebal. AuC %"), ("colourfulness", "colourfulness"),
           ("psnr", "PSNR dB"))


def square_crop(rgb, size):
    """uint8 or float (3, H, W) -> float (1, 3, size, size) in [0, 1]: the shorter
    side resized to size (bilinear, antialiased; the longer to max(size,
    round(side * scale))), then the centre crop, clamped to [0, 1]."""
    x = to_float(rgb)[None]
    h, w = x.shape[-2:]
    scale = size / min(h, w)
    x = resize(x, (max(size, round(h * scale)), max(size, round(w * scale))))
    return centre_crop(x, size).clamp(0, 1)


def photo_prior(rgb_batches, progress=False):
    """(313,) float64 prior of photos over Codebook.zhang313(): the histogram of
    their true a*b* (nearest bin per pixel), normalised and smoothed with
    sigma = 5 (prior_from_counts). rgb_batches: an iterable of (N, 3, H, W)
    float RGB in [0, 1] (or a lone batch); every image counts, gray ones too."""
    return estimate_prior(rgb_batches, Codebook.zhang313(), progress=progress)


class Scorer:
    """The scores of the module docstring, pooled over batches: the result for
    a set split into batches equals score() of the whole set in one batch.

    prior: (313,) distribution over Codebook.zhang313() for auc_rebalanced
    (photo_prior(...)), or "imagenet".
    """

    def __init__(self, prior):
        self._acc = metrics.MetricAccumulator(Codebook.zhang313(), prior)

    def add(self, pred_rgb, true_rgb, pred_ab=None):
        """Add a batch: pred_rgb, true_rgb (N, 3, H, W) float in [0, 1].
        pred_ab: the a*b* the AuC is measured on, default rgb_to_lab(pred_rgb);
        the gray baseline passes zeros (exactly ab = 0). Returns self."""
        true_ab = rgb_to_lab(true_rgb)[:, 1:]
        if pred_ab is None:
            pred_ab = rgb_to_lab(pred_rgb)[:, 1:]
        self._acc.add(pred_ab, true_ab, pred_rgb, true_rgb)
        return self

    def result(self):
        """{"auc", "auc_rebalanced", "colourfulness", "colourfulness_true", "psnr"}: floats."""
        numbers = self._acc.result()
        return {k: numbers[k] for k in SCORES}


def score(pred_rgb, true_rgb, prior, pred_ab=None):
    """The scores of pred_rgb against true_rgb, (N, 3, H, W) float RGB in [0, 1],
    pooled over the batch: {"auc", "auc_rebalanced", "colourfulness",
    "colourfulness_true", "psnr"} as defined in the module docstring. prior:
    (313,) over Codebook.zhang313() (photo_prior) or "imagenet"."""
    return Scorer(prior).add(pred_rgb, true_rgb, pred_ab).result()


def evaluate(model=None, data=None, temperature=None, max_images=None, size=256, prior="data",
             batch_size=8, device="auto", backend=None, progress=True, on_skip=None):
    """Scores of a model over the photos of a folder (see the module docstring).

    model: a Colorizer, or a model path for Colorizer.load (None: the bundled
    model). data: anything find_images takes. Every photo is read
    (read_image, alpha ignored), square_crop'ped to size x size and kept as
    uint8. prior="data" (default) scores auc_rebalanced with photo_prior of
    these crops; "imagenet" with the released ImageNet prior, as the paper did.

    Unreadable files are left out, listed in the result's "skipped" and
    passed to on_skip(path, exception) when given (the CLI prints them).

    Returns a dict: {"model": {auc, auc_rebalanced, colourfulness, psnr},
    "gray": {...}, "ground_truth": {"colourfulness"}, "images": n,
    "skipped": [[path, reason], ...], "size", "prior", "temperature",
    "model_path", "space"}.
    """
    from tqdm.auto import tqdm

    from .inference import Colorizer

    if prior not in ("data", "imagenet"):
        raise ValueError(f"prior must be 'data' or 'imagenet', got {prior!r}")
    colorizer = model if isinstance(model, Colorizer) else Colorizer.load(model, device=device, backend=backend)
    paths = find_images([data])
    if max_images is not None:
        paths = paths[:max_images]
    if not paths:
        raise ValueError(f"no images found in {data}")

    # Pass 1: read and crop every photo.
    photos, skipped = [], []
    for path in tqdm(paths, desc="read", unit="img", disable=None if progress else True):
        try:
            rgb, _ = read_image(path)
        except (OSError, ValueError) as exc:
            if on_skip is not None:
                on_skip(path, exc)
            skipped.append([str(path), str(exc)])
            continue
        photos.append(to_uint8(square_crop(rgb, size))[0])  # keep memory at one byte a value
    if not photos:
        raise ValueError(f"none of the {len(paths)} images in {data} could be read")
    p = photo_prior(to_float(photo)[None] for photo in photos) if prior == "data" else imagenet_prior()

    # Pass 2: colorize and score.
    scorers = {"model": Scorer(p), "gray": Scorer(p)}
    for start in tqdm(range(0, len(photos), batch_size), desc="evaluate", unit="batch",
                      disable=None if progress else True):
        batch = photos[start:start + batch_size]
        results = colorizer.colorize_batch(batch, batch_size=len(batch), temperature=temperature)
        true_rgb = to_float(torch.stack(batch))
        pred_rgb = to_float(torch.stack([r.rgb for r in results]))
        gray_rgb = to_float(torch.stack([r.gray_rgb() for r in results]))
        scorers["model"].add(pred_rgb, true_rgb)
        scorers["gray"].add(gray_rgb, true_rgb, pred_ab=torch.zeros_like(pred_rgb[:, :2]))
    numbers = {name: s.result() for name, s in scorers.items()}
    report = {name: {k: numbers[name][k] for k, _ in COLUMNS} for name in scorers}
    report["ground_truth"] = {"colourfulness": numbers["model"]["colourfulness_true"]}
    report.update(images=len(photos), skipped=skipped, size=size, prior=prior,
                  temperature=colorizer.temperature if temperature is None else float(temperature),
                  model_path=str(colorizer.path) if colorizer.path else None, space=colorizer.space)
    return report


def format_table(report):
    """The evaluate report as a text table (AuC in percent, as in the paper)."""
    def cell(row, key):
        v = row.get(key)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{100 * v:.2f}" if key.startswith("auc") else f"{v:.2f}"

    header = ["", *(title for _, title in COLUMNS)]
    rows = [[name, *(cell(report[name], key) for key, _ in COLUMNS)]
            for name in ("model", "gray", "ground_truth")]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def finite_or_none(obj):
    """obj with every float that is not finite replaced by None (for strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def report_json(report):
    """The evaluate report as JSON text (strict JSON: a number that is not
    finite, such as the PSNR of photos reproduced exactly, is null)."""
    import json

    return json.dumps(finite_or_none(report), indent=2, allow_nan=False) + "\n"
