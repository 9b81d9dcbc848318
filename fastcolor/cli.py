"""The ``fastcolor`` command line.

    fastcolor colorize photos/ old.jpg "scans/*.png" -o out/ [--compare] [--confidence]
    fastcolor evaluate --data photos/val [--model run] [--json metrics.json]
    fastcolor data --out photos          (fastcolor.data.photoset: build the training photo set)
    fastcolor train --data photos --out run   (fastcolor.train)
    fastcolor export run -o model.onnx   (fastcolor.export: the network and its decoding as ONNX)
    fastcolor video film.mp4 -o out.mp4  (fastcolor.video: colorize a clip without flicker)

Every command runs inside fastcolor.errors.run: an error ends it with one
line on stderr. Exit codes: 0 success, 1 when some images could not be read
or written (each named on one line of stderr, the others still done), 2 when
the command is refused or fails (usage error, a refused output plan, a missing
model, a full disk, ...), 3 for a bug (the line says where the traceback is;
fastcolor --debug prints it), 130 when interrupted.

Commands that write files plan their outputs first (fastcolor.outputs): every
output is named and checked before the network is loaded.
"""

import argparse
import errno
import sys
from pathlib import Path

import torch

from . import __version__
from .atomic import write_bytes_atomic
from .errors import UsageError, run
from .hint_args import add_falloff_arguments, hint_arg, palette_arg, positive_float_arg
from .ops.backend import BACKENDS

__all__ = ["main"]

PASS_THROUGH = {
    "train": ("fastcolor.train", "train a colorization model (fastcolor train --help)"),
    "data": ("fastcolor.data.photoset.recipe", "build the offline training photo set (fastcolor data --help)"),
    "video": ("fastcolor.video.cli", "colorize a video or a folder of frames (fastcolor video --help)"),
    "evaluate-video": ("fastcolor.video_metrics", "score a colorized video against its original (--help)"),
}
PASS_THROUGH_PARSERS = {  # where each pass-through command builds its argparse parser
    "train": ("fastcolor.train.config", "build_parser"),
    "data": ("fastcolor.data.photoset.recipe", "build_parser"),
    "video": ("fastcolor.video.cli", "build_parser"),
    "evaluate-video": ("fastcolor.video_metrics", "build_parser"),
}
C2_DISPLAY_MAX = 10.0  # confidence images show min(C2, 10) / 10
FATAL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS}  # a failed write that ends the command (exit 2)


def _error(path, exc):
    """One line on stderr: the file and what went wrong with it."""
    from tqdm.auto import tqdm

    path = str(getattr(exc, "path", None) or path)
    reason = str(getattr(exc, "reason", None) or exc or type(exc).__name__)
    line = reason if reason.startswith(path) else f"{path}: {reason}"
    tqdm.write(f"fastcolor: error: {line}", file=sys.stderr)


# ------------------------------------------------------------------ colorize

SIDECARS = ("compare", "confidence")


def _heat(x):
    """(H, W) values in [0, 1] -> uint8 (3, H, W) gray levels."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)[None].expand(3, -1, -1)


def _write_outputs(args, item, result, original_rgb, keep_alpha=True):
    from .data.images import save_image_atomic

    alpha = result.alpha if keep_alpha else None
    save_image_atomic(item.main, result.rgb, alpha=alpha)  # dropped by formats without alpha (JPEG)
    if args.compare:
        panels = [result.gray_rgb(), result.rgb]
        r, g, b = original_rgb
        if not (torch.equal(r, g) and torch.equal(g, b)):  # a colour input: show the original too
            panels.append(original_rgb)
        strip_alpha = None if result.alpha is None else torch.cat([result.alpha] * len(panels), dim=-1)
        save_image_atomic(item.sidecars["compare"], torch.cat(panels, dim=-1), alpha=strip_alpha)
    if args.confidence:
        c1 = result.confidence_top
        c2 = result.confidence_ratio.clamp(max=C2_DISPLAY_MAX) / C2_DISPLAY_MAX
        save_image_atomic(item.sidecars["confidence"], torch.cat([_heat(c1), _heat(c2)], dim=-1))


def _load_colorizer(args):
    """The Colorizer of --model/--device/--backend (errors reach the one handler)."""
    from .inference import Colorizer

    return Colorizer.load(args.model, device=args.device, backend=args.backend)


def _check_hints_inside(item, hints, rgb):
    from .hints import check_inside

    try:
        check_inside(hints, tuple(rgb.shape[-2:]))
    except ValueError as exc:
        raise UsageError(f"{item.source}: {exc}") from None


def _colorize(args):
    from tqdm.auto import tqdm

    from .data.images import load_image
    from .outputs import plan_images

    # The plan first: every output named and checked before the network is loaded.
    sidecars = [tag for tag in SIDECARS if getattr(args, tag)]
    plan = plan_images(args.inputs, args.output, args.suffix, sidecars=sidecars)
    for arg, reason in plan.missing:
        _error(arg, reason)
    if not plan.items:
        return 2
    for source, natural, given in plan.renamed:
        print(f"fastcolor colorize: {source} -> {given} ({natural.name} is another input's output)",
              file=sys.stderr)
    from .hint_args import steering_from_args

    hints, palette, hint_options = steering_from_args(args, plan.items)
    colorizer = _load_colorizer(args)
    if args.confidence and colorizer.loss == "l2":
        raise UsageError(f"--confidence needs a classification model; {args.model or 'this model'} "
                         "regresses chroma (loss='l2'): leave out --confidence")
    items = plan.items
    print(f"fastcolor colorize: {len(items)} image{'' if len(items) == 1 else 's'} -> {plan.out}", file=sys.stderr, flush=True)

    failed = 0
    bar = tqdm(total=len(items), desc="colorize", unit="img", disable=None)
    for start in range(0, len(items), args.batch_size):
        chunk, loaded, chunk_hints = [], [], []
        for index, item in enumerate(items[start:start + args.batch_size], start):
            try:
                rgb, alpha = load_image(item.source)
            except (OSError, ValueError) as exc:
                _error(item.source, exc)
                failed += 1
                bar.update(1)
                continue
            if hints.get(index):
                _check_hints_inside(item, hints[index], rgb)
            chunk.append((item, rgb))
            chunk_hints.append(hints.get(index, []))
            loaded.append(rgb if alpha is None else torch.cat([rgb, alpha]))
        if not loaded:
            continue
        results = colorizer.colorize_batch(loaded, batch_size=len(loaded), temperature=args.temperature,
                                           return_confidence=args.confidence, hints=chunk_hints,
                                           palette=palette, hint_options=hint_options)
        for (item, rgb), result in zip(chunk, results):
            try:
                _write_outputs(args, item, result, rgb, keep_alpha=plan.alpha)
            except OSError as exc:
                if exc.errno in FATAL_ERRNOS:  # every later write would fail alike
                    raise
                _error(item.main, exc)
                failed += 1
            except ValueError as exc:
                _error(item.main, exc)
                failed += 1
            bar.update(1)
    bar.close()
    if failed or plan.missing:
        print(f"fastcolor: {failed} of {len(items)} images failed, {len(plan.missing)} inputs missing",
              file=sys.stderr)
    return 1 if failed or plan.missing else 0


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
    from .outputs import check_output_file

    out = check_output_file(args.output, "demo image", suffix_format=True)
    try:
        import skimage.data  # noqa: F401
    except ImportError:
        raise UsageError("the demo colorizes scikit-image's sample photos; install scikit-image "
                         "(pip install scikit-image) or run 'fastcolor colorize PHOTO -o OUT --compare'") from None
    colorizer = _load_colorizer(args)
    grid = _demo_rows(colorizer, args.temperature, args.height)
    save_image_atomic(out, grid)
    print(f"fastcolor: wrote {out.resolve()} ({len(DEMO_PHOTOS)} photos never seen in training; "
          "columns: input as gray | fastcolor | original)")
    return 0


# ------------------------------------------------------------------ evaluate


def _evaluate(args):
    from .data.images import find_images
    from .evaluation import evaluate, format_table, report_json

    if args.json:  # checked before the evaluation, not after it
        from .outputs import check_output_file

        check_output_file(args.json, "JSON file", inputs=find_images([args.data]))
    report = evaluate(args.model, args.data, args.temperature, args.max_images, args.size, args.prior,
                      args.batch_size, args.device, args.backend, on_skip=_error)
    print(f"{report['images']} images of {args.data} at {args.size}x{args.size}, T={report['temperature']:g}, "
          f"prior={report['prior']}")
    print(format_table(report))
    if args.json:
        write_bytes_atomic(Path(args.json), report_json(report).encode())
    return 1 if report["skipped"] else 0


# ------------------------------------------------------------------ export


def _export(args):
    from .export import export_onnx, require_onnx
    from .outputs import check_output_file

    if Path(args.output).suffix.lower() != ".onnx":
        raise UsageError(f"the ONNX file must end in .onnx, got {args.output!r}")
    out = check_output_file(args.output, "ONNX file", inputs=[args.model] if args.model else ())
    try:
        require_onnx()
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    export_onnx(args.model, out, temperature=args.temperature)
    print(f"fastcolor: wrote {out.resolve()} (input 'light' (N, 1, H, W), output 'chroma'; "
          "README: Export to ONNX)")
    return 0


def _serve(args):
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise UsageError("fastcolor serve needs fastapi and uvicorn: pip install fastapi uvicorn") from None
    from .inference import Colorizer
    from .serve import serve

    colorizer = Colorizer.load(args.model, device=args.device, backend=args.backend)
    if colorizer.loss == "l2":
        raise UsageError("fastcolor serve needs a classification model (hints and palettes); this one is L2")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"fastcolor serve: listening on {args.host}: other machines may reach the page", file=sys.stderr)
    print(f"fastcolor: the page is at http://{args.host}:{args.port}/ (Ctrl+C stops it)", flush=True)
    serve(colorizer, host=args.host, port=args.port, max_upload_bytes=args.max_upload_mb * 2**20,
          max_side=args.max_side)
    return 0


def _port(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text!r}") from None
    if not 1 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 1..65535, got {text}")
    return n


# ------------------------------------------------------------------ parser


def _temperature(text):
    from .ops.functional import check_temperature

    try:
        return check_temperature(text)
    except ValueError:  # argparse names the option itself
        raise argparse.ArgumentTypeError(f"temperature must be a finite number >= 0, got {text!r}") from None


def _positive(text):
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return n


def _suffix(text):
    """An output extension Pillow can write ('.png', 'jpg', ...) or 'same'."""
    from .outputs import check_image_format

    if text == "same":
        return text
    text = (text if text.startswith(".") else "." + text).lower()
    try:
        check_image_format(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


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
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of an error (before the command: fastcolor --debug colorize ...; "
                             "also FASTCOLOR_DEBUG=1)")
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

    p.add_argument("--hint", action="append", type=hint_arg, metavar="X,Y,#RRGGBB",
                   help="colour hint for a single input (repeatable): pixel X,Y of the image as displayed "
                        "(after EXIF rotation) should be about this colour; it fills the region of similar "
                        "lightness around it. Classification models only")
    p.add_argument("--hints", metavar="FILE.json",
                   help='hints for many inputs: {"photo.jpg": [[x, y, "#RRGGBB"], {"points": [[x, y], ...], '
                        '"color": "#RRGGBB"}], ...}, keyed by the input path as found or its file name; '
                        "inputs without an entry are colorized plainly")
    p.add_argument("--propagation", choices=("edge", "gaussian"), default="edge",
                   help="how far a hint reaches: edge = stops at lightness edges (default); gaussian = "
                        "plain distance falloff")
    add_falloff_arguments(p)  # --hint-radius, --hint-shading, --hint-full-resolution (and --no-...)
    p.add_argument("--palette", type=palette_arg, metavar="COLOURS|IMAGE",
                   help='"#RRGGBB,#RRGGBB,..." or an image to take its 8 most frequent colours from: '
                        "restricts (or with --palette-mode bias, pulls) every pixel's colour to them")
    p.add_argument("--palette-mode", choices=("restrict", "bias"),
                   help="restrict (default): every pixel's chroma within --palette-distance of a palette "
                        "colour; bias: prefer the palette colours")
    p.add_argument("--palette-distance", type=positive_float_arg, metavar="D",
                   help="restrict radius in chroma units (default: 3 x the codebook's sigma, 15 a*b* units)")

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

    p = sub.add_parser(
        "export", help="export a model to ONNX (network and decoding)",
        description="Export a model to an ONNX file (opset 17, standard operators): input 'light', the "
                    "normalised lightness (N, 1, H, W); output 'chroma' (N, 2, H/s, W/s) at the network's "
                    "output resolution: the annealed mean at a temperature fixed now, or an L2 model's "
                    "regression. Batch and image size are dynamic. Needs the onnx package.")
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help="model.safetensors or a training run directory (default: the bundled model)")
    p.add_argument("-o", "--output", required=True, metavar="ONNX", help="the .onnx file to write")
    p.add_argument("--temperature", "-t", type=_temperature, metavar="T",
                   help="annealed-mean temperature fixed in the graph: 0 = the most likely colour, 1 = the "
                        "mean (default: the model's; not for L2 models)")

    p = sub.add_parser(
        "serve", help="a local web page: colorize a photo, place hints, pick a palette, download",
        description="Serve a small web page on this machine (127.0.0.1 unless --host says otherwise): "
                    "drop a photo, move the temperature, click to place colour hints, choose a palette and "
                    "download the result as PNG. Everything stays in memory; nothing is written to disk.")
    p.add_argument("--model", metavar="PATH",
                   help="model.safetensors or a training run directory (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto = CUDA when available (default)")
    p.add_argument("--backend", default=None, choices=BACKENDS,
                   help="kernels (default, where built) or reference (pure PyTorch)")
    p.add_argument("--host", default="127.0.0.1", metavar="HOST",
                   help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, metavar="PORT", help="port (8000)")
    p.add_argument("--max-upload-mb", type=_positive, default=20, metavar="MB", help="largest upload (20 MB)")
    p.add_argument("--max-side", type=_positive, default=1024, metavar="PX",
                   help="photos are downscaled to at most PX pixels on their longer side (1024)")

    for name, (_, text) in PASS_THROUGH.items():
        sub.add_parser(name, help=text, add_help=False)
    return parser


def _run_command(argv):
    if argv and argv[0] in PASS_THROUGH:
        import importlib

        module = importlib.import_module(PASS_THROUGH[argv[0]][0])
        return module.main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return {"colorize": _colorize, "evaluate": _evaluate, "demo": _demo, "export": _export,
            "serve": _serve}[args.command](args)


def main(argv=None):
    """Run the fastcolor command line; returns the exit code (0 done, 1 some
    inputs failed, 2 refused or failed with one error line, 3 a bug, 130
    interrupted: fastcolor.errors). Global option before the command:
    --debug (tracebacks on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = None
    while argv and argv[0] == "--debug":
        debug = True
        argv.pop(0)
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = f"fastcolor {command}" if command in _commands() else "fastcolor"
    return run(_run_command, argv, prog, debug=debug)


def _commands():
    return {"colorize", "evaluate", "demo", "export", "serve", *PASS_THROUGH}


def command_parsers():
    """{command: its argparse parser} for every command build_parser registers
    (the pass-through ones from their own modules): what the tests feed bad
    input to, so that a command added later is covered too."""
    import importlib

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parsers = {}
    for name, parser in sub.choices.items():
        if name in PASS_THROUGH:
            module, function = PASS_THROUGH_PARSERS[name]
            parser = getattr(importlib.import_module(module), function)()
        parsers[name] = parser
    return parsers
