"""The ``fastcolor`` command line.

    fastcolor colorize photos/ old.jpg "scans/*.png" -o out/ [--compare] [--confidence]
    fastcolor evaluate --data photos/val [--model run] [--json metrics.json]
    fastcolor data --out photos          (fastcolor.data.photoset: build the training photo set)
    fastcolor train --data photos --out run   (fastcolor.train)

Exit codes: 0 success, 1 when some images could not be read or written (each
named on one line of stderr, the others still done), 2 on usage errors or a
missing model.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from . import __version__
from .atomic import write_bytes_atomic
from .ops.backend import BACKENDS

__all__ = ["main"]

PASS_THROUGH = {
    "train": ("fastcolor.train", "train a colorization model (fastcolor train --help)"),
    "data": ("fastcolor.data.photoset.recipe", "build the offline training photo set (fastcolor data --help)"),
}
C2_DISPLAY_MAX = 10.0  # confidence images show min(C2, 10) / 10


def _error(path, exc):
    """One line on stderr: the file and what went wrong with it."""
    from tqdm.auto import tqdm

    path = str(getattr(exc, "path", None) or path)
    reason = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
    line = reason if reason.startswith(path) else f"{path}: {reason}"
    tqdm.write(f"fastcolor: error: {line}", file=sys.stderr)


# ------------------------------------------------------------------ colorize


def _output_plan(inputs, out, suffix):
    """([(input path, output path)], [(input, reason)]) for the colorize
    inputs; the second list names inputs that do not exist or hold no images.

    Files given directly keep their name; files found in a folder keep their
    path relative to that folder (subfolders mirrored under OUT); glob matches
    keep their name. The suffix replaces the extension ("same" keeps it).
    Two inputs that would share an output (a.jpg, a.png) get the input's
    extension appended to the stem (a_png.png).
    """
    from .data.images import find_images

    out = Path(out)
    plan, taken, missing = [], set(), []
    for arg in inputs:
        root = Path(arg)
        try:
            found = find_images([arg])
        except FileNotFoundError:
            missing.append((arg, "no such file or folder"))
            continue
        if not found:
            missing.append((arg, "no image files found there"))
        for path in found:
            path = Path(path)
            rel = path.relative_to(root) if root.is_dir() else Path(path.name)
            ext = path.suffix if suffix == "same" else suffix
            target = out / rel.with_suffix(ext)
            if target in taken:
                target = out / rel.with_name(f"{rel.stem}_{path.suffix.lstrip('.').lower()}{ext}")
            if target in taken:
                continue  # the same file given twice
            taken.add(target)
            plan.append((path, target))
    return plan, missing


def _sidecar(target, tag):
    """OUT/NAME.ext -> OUT/NAME_tag.png (compare and confidence images)."""
    return target.with_name(f"{target.stem}_{tag}.png")


def _heat(x):
    """(H, W) values in [0, 1] -> uint8 (3, H, W) gray levels."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)[None].expand(3, -1, -1)


def _write_outputs(args, target, result, original_rgb):
    from .data.images import save_image_atomic

    save_image_atomic(target, result.rgb, alpha=result.alpha)  # dropped by formats without alpha (JPEG)
    if args.compare:
        panels = [result.gray_rgb(), result.rgb]
        r, g, b = original_rgb
        if not (torch.equal(r, g) and torch.equal(g, b)):  # a colour input: show the original too
            panels.append(original_rgb)
        strip_alpha = None if result.alpha is None else torch.cat([result.alpha] * len(panels), dim=-1)
        save_image_atomic(_sidecar(target, "compare"), torch.cat(panels, dim=-1), alpha=strip_alpha)
    if args.confidence:
        c1 = result.confidence_top
        c2 = result.confidence_ratio.clamp(max=C2_DISPLAY_MAX) / C2_DISPLAY_MAX
        save_image_atomic(_sidecar(target, "confidence"), torch.cat([_heat(c1), _heat(c2)], dim=-1))


def _load_colorizer(args):
    """The Colorizer of --model/--device/--backend, or None after one error line."""
    from .inference import Colorizer

    try:
        return Colorizer.load(args.model, device=args.device, backend=args.backend)
    except (OSError, ValueError) as exc:
        print(f"fastcolor: error: {exc}", file=sys.stderr)
        return None


def _colorize(args):
    from tqdm.auto import tqdm

    from .data.images import IMAGE_EXTENSIONS, load_image

    out = Path(args.output)
    single = (len(args.inputs) == 1 and Path(args.inputs[0]).is_file()
              and out.suffix.lower() in IMAGE_EXTENSIONS)
    missing = []
    if single:
        plan = [(Path(args.inputs[0]), out)]
    else:
        if out.exists() and not out.is_dir():
            print(f"fastcolor: error: {out} exists and is not a folder (for several inputs -o names a folder)",
                  file=sys.stderr)
            return 2
        plan, missing = _output_plan(args.inputs, out, args.suffix)
    for arg, reason in missing:
        _error(arg, reason)
    if not plan:
        return 2
    overwrites = [src for src, dst in plan if dst.exists() and dst.resolve() == src.resolve()]
    if overwrites:
        print(f"fastcolor: error: refusing to overwrite the input {overwrites[0]} (choose another -o or --suffix)",
              file=sys.stderr)
        return 2
    colorizer = _load_colorizer(args)
    if colorizer is None:
        return 2

    failed = 0
    bar = tqdm(total=len(plan), desc="colorize", unit="img", disable=None)
    for start in range(0, len(plan), args.batch_size):
        chunk, loaded = [], []
        for src, dst in plan[start:start + args.batch_size]:
            try:
                rgb, alpha = load_image(src)
            except (OSError, ValueError) as exc:
                _error(src, exc)
                failed += 1
                bar.update(1)
                continue
            chunk.append((src, dst, rgb))
            loaded.append(rgb if alpha is None else torch.cat([rgb, alpha]))
        if not loaded:
            continue
        results = colorizer.colorize_batch(loaded, batch_size=len(loaded), temperature=args.temperature,
                                           return_confidence=args.confidence)
        for (src, dst, rgb), result in zip(chunk, results):
            try:
                _write_outputs(args, dst, result, rgb)
            except (OSError, ValueError) as exc:
                _error(dst, exc)
                failed += 1
            bar.update(1)
    bar.close()
    if failed or missing:
        print(f"fastcolor: {failed} of {len(plan)} images failed, {len(missing)} inputs missing", file=sys.stderr)
    return 1 if failed or missing else 0


# ------------------------------------------------------------------ demo

DEMO_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # scikit-image's colour sample photos


def _demo_rows(colorizer, temperature, height):
    """(gray | fastcolor | original) strips of scikit-image's sample photos,
    each scaled to the same height."""
    import numpy as np
    import skimage.data
    import torch.nn.functional as F

    from .data.transforms import resize

    rows = []
    for name in DEMO_PHOTOS:
        rgb = torch.from_numpy(np.ascontiguousarray(getattr(skimage.data, name)()[..., :3])).permute(2, 0, 1)
        result = colorizer.colorize(rgb, temperature=temperature)
        strip = torch.cat([result.gray_rgb(), result.rgb, rgb], dim=-1).float()
        w = round(strip.shape[-1] * height / strip.shape[-2])
        rows.append(resize(strip, (height, w)))  # float: rounded once, after the padding
    width = max(r.shape[-1] for r in rows)
    rows = [F.pad(r, (0, width - r.shape[-1]), value=255.0) for r in rows]
    return torch.cat(rows, dim=-2).round().clamp(0, 255).to(torch.uint8)


def _demo(args):
    from .data.images import save_image_atomic

    try:
        import skimage.data  # noqa: F401
    except ImportError:
        print("fastcolor: error: the demo colorizes scikit-image's sample photos; install scikit-image "
              "(pip install scikit-image) or run 'fastcolor colorize PHOTO -o OUT --compare'", file=sys.stderr)
        return 2
    colorizer = _load_colorizer(args)
    if colorizer is None:
        return 2
    grid = _demo_rows(colorizer, args.temperature, args.height)
    out = Path(args.output)
    save_image_atomic(out, grid)
    print(f"fastcolor: wrote {out.resolve()} ({len(DEMO_PHOTOS)} photos never seen in training; "
          "columns: input as gray | fastcolor | original)")
    return 0


# ------------------------------------------------------------------ evaluate


def _evaluate(args):
    from .evaluation import evaluate, format_table

    try:
        report = evaluate(args.model, args.data, args.temperature, args.max_images, args.size, args.prior,
                          args.batch_size, args.device, args.backend, on_skip=_error)
    except (OSError, ValueError) as exc:
        print(f"fastcolor: error: {exc}", file=sys.stderr)
        return 2
    print(f"{report['images']} images of {args.data} at {args.size}x{args.size}, T={report['temperature']:g}, "
          f"prior={report['prior']}")
    print(format_table(report))
    if args.json:
        _write_json(Path(args.json), report)
    return 1 if report["skipped"] else 0


def _write_json(path, obj):
    write_bytes_atomic(path, (json.dumps(obj, indent=2) + "\n").encode())


# ------------------------------------------------------------------ parser


def _temperature(text):
    t = float(text)
    if not 0 <= t < float("inf"):
        raise argparse.ArgumentTypeError(f"temperature must be a finite number >= 0, got {text}")
    return t


def _positive(text):
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return n


def _suffix(text):
    if text == "same":
        return text
    text = text if text.startswith(".") else "." + text
    return text.lower()


def _model_options(p):
    p.add_argument("--model", metavar="PATH",
                   help="model.safetensors or a training run directory (default: the bundled model)")
    p.add_argument("--temperature", "-t", type=_temperature, metavar="T",
                   help="annealed-mean temperature: 0 = the most likely colour (vivid), 1 = the mean; "
                        "default: the one stored with the model (fastcolor train stores the paper's 0.38; "
                        "the bundled model's, chosen on its validation photos, is 1.0)")
    p.add_argument("--batch-size", type=_positive, default=8, metavar="N", help="images per network batch (8)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA when available (default)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="kernels: the compiled C++/CUDA kernels (default, where built); reference: the "
                        "pure-PyTorch ops (default: FASTCOLOR_BACKEND, else kernels)")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastcolor",
        description="Learned colorization of black-and-white photos (Zhang et al., ECCV 2016) "
                    "on fused CUDA/C++ kernels.",
    )
    parser.add_argument("--version", action="version", version=f"fastcolor {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser(
        "colorize", help="colorize photos",
        description="Colorize photos of any size. Colour photos are reduced to their lightness first "
                    "(so the result shows what the model makes of them); alpha is kept. Unreadable "
                    "files are reported on stderr and skipped (exit code 1).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="output folder (created; names mirror the inputs); with a single input file, "
                        "OUT may be an image file name")
    _model_options(p)
    p.add_argument("--suffix", type=_suffix, default=".png", metavar="EXT",
                   help="extension (format) of the outputs: .png (default, keeps alpha), .jpg, .webp, ... "
                        "or 'same' for each input's own")
    p.add_argument("--compare", action="store_true",
                   help="also write NAME_compare.png: input as gray | colorized | original (original only "
                        "for colour inputs)")
    p.add_argument("--confidence", action="store_true",
                   help="also write NAME_confidence.png: C1 = top class probability (black 0, white 1) | "
                        f"C2 = top/second probability shown as min(C2, {C2_DISPLAY_MAX:g}) / {C2_DISPLAY_MAX:g}")

    p = sub.add_parser(
        "evaluate", help="measure a model on a folder of photos",
        description="Colorize the photos of a folder (resized and centre-cropped to SIZE) and print AuC, "
                    "class-rebalanced AuC (Lab a*b*, thresholds 0..150), colourfulness and PSNR for the "
                    "model, the gray baseline (ab = 0) and the ground truth.")
    p.add_argument("--data", required=True, metavar="DIR", help="folder of photos (searched recursively)")
    _model_options(p)
    p.add_argument("--max-images", type=_positive, metavar="N", help="use the first N photos (sorted by path)")
    p.add_argument("--size", type=_positive, default=256, metavar="S", help="evaluate at S x S (256)")
    p.add_argument("--prior", choices=("data", "imagenet"), default="data",
                   help="prior of the rebalanced AuC: estimated from the evaluated photos (default) or the "
                        "released ImageNet prior (as in the paper)")
    p.add_argument("--json", metavar="OUT", help="also write the numbers to this JSON file")

    p = sub.add_parser(
        "demo", help="colorize scikit-image's sample photos into one side-by-side PNG",
        description="Colorize scikit-image's colour sample photos (astronaut, coffee, chelsea, rocket; none "
                    "of them is in the bundled model's training set) and write one PNG with a row per "
                    "photo: input as gray | fastcolor | original.")
    p.add_argument("-o", "--output", default="fastcolor_demo.png", metavar="PNG",
                   help="where to write it (default: fastcolor_demo.png)")
    p.add_argument("--height", type=_positive, default=256, metavar="H", help="row height in pixels (256)")
    _model_options(p)

    for name, (_, text) in PASS_THROUGH.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def main(argv=None):
    """Run the fastcolor command line; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        import importlib

        module = importlib.import_module(PASS_THROUGH[argv[0]][0])
        code = module.main(argv[1:])
        return 0 if code is None else int(code)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return {"colorize": _colorize, "evaluate": _evaluate, "demo": _demo}[args.command](args)
