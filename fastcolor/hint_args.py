"""The colorize command's hint and palette options (fastcolor.hints on the command line):
--hint X,Y,#RRGGBB, --hints FILE.json, --palette, --palette-mode, --palette-distance,
--propagation, --hint-radius, --hint-shading/--no-hint-shading,
--hint-full-resolution/--no-hint-full-resolution."""

import argparse

from .hints import DEFAULT_RADIUS, Hint, HintOptions, Palette, as_hints

__all__ = ["add_falloff_arguments", "hint_arg", "palette_arg", "positive_float_arg", "steering_from_args"]


def positive_float_arg(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return v


def hint_arg(text):
    """X,Y,#RRGGBB -> a fastcolor.hints.Hint."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"a hint is X,Y,#RRGGBB (e.g. 120,80,#2e8b57), got {text!r}")
    try:
        return Hint.point(parts[0], parts[1], parts[2].strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


def palette_arg(text):
    """'#RRGGBB,...' or an image path, checked (fastcolor.hints.Palette.parse)."""
    try:
        Palette.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def add_falloff_arguments(parser):
    """--hint-radius, --hint-shading/--no-hint-shading and --hint-full-resolution/--no-hint-full-resolution
    (fastcolor.hints.HintOptions radius, shading, full_resolution)."""
    parser.add_argument("--hint-radius", type=positive_float_arg, metavar="R",
                        help=f"hint falloff scale, a fraction of the image's shorter side ({DEFAULT_RADIUS:g})")
    parser.add_argument("--hint-shading", action=argparse.BooleanOptionalAction, default=None,
                        help="the hinted colour follows the photo's shading: weaker chroma where the hinted "
                             "region is darker than at the hint, stronger where lighter (default: on)")
    parser.add_argument("--hint-full-resolution", action=argparse.BooleanOptionalAction, default=None,
                        help="edge propagation: read each hint's lightness at its pixel and refine the hints' "
                             "effect along the lightness edges at full resolution (default: on)")


def steering_from_args(args, items):
    """({item index: [Hint]}, Palette or None, HintOptions or None) of --hint/--hints/--palette."""
    import json
    from pathlib import Path

    from .errors import UsageError

    if args.hint and args.hints:
        raise UsageError("--hint and --hints: give one of them (--hints FILE.json holds hints per image)")
    if args.palette is None and (args.palette_mode or args.palette_distance):
        raise UsageError("--palette-mode and --palette-distance need --palette")
    hints = {}
    if args.hint:
        if len(items) != 1:
            raise UsageError(f"--hint is for one input ({len(items)} inputs here): give hints per image "
                             "with --hints FILE.json")
        hints[0] = args.hint
    elif args.hints:
        try:
            table = json.loads(Path(args.hints).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--hints {args.hints}: {exc.strerror or exc}") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise UsageError(f"--hints {args.hints}: not a JSON file ({exc})") from None
        if not isinstance(table, dict):
            raise UsageError(f"--hints {args.hints}: write an object {{\"photo.jpg\": [[x, y, \"#RRGGBB\"], ...]}}")
        resolved = [item.source.resolve() for item in items]
        for key, value in table.items():
            found = [i for i, item in enumerate(items) if key == str(item.source) or Path(key).resolve() == resolved[i]]
            found = found or [i for i, item in enumerate(items) if item.source.name == key]
            if not found:
                raise UsageError(f"--hints {args.hints}: {key!r} names no input")
            if len(found) > 1:
                raise UsageError(f"--hints {args.hints}: {key!r} names {len(found)} inputs "
                                 f"({', '.join(str(items[i].source) for i in found)}): use its path")
            try:
                hints[found[0]] = as_hints(value)
            except ValueError as exc:
                raise UsageError(f"--hints {args.hints}: {key}: {exc}") from None
    palette = None
    if args.palette is not None:
        palette = Palette.parse(args.palette, mode=args.palette_mode or "restrict", distance=args.palette_distance)
    chosen = {"radius": args.hint_radius, "shading": args.hint_shading, "full_resolution": args.hint_full_resolution}
    options = HintOptions(propagation=args.propagation, **{k: v for k, v in chosen.items() if v is not None})
    return hints, palette, options
