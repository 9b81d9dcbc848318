"""The output plan: every output of a command named and checked before any work.

A command that writes files (colorize, evaluate --json, demo, and later ones)
first builds a plan: each input mapped to its outputs (the main one and its
sidecars such as NAME_compare.png) and every option that shapes them checked.
Only a plan that passes every check runs; a refused plan is one UsageError
(one line, exit code 2) before the network is loaded.

The checks (``plan_images`` and ``check_output_file``):

* no two outputs alike: inputs whose outputs would share a name (a.jpg and
  a.png; x.jpg in three folders; x.png beside an input named x_png.png) get
  distinct, deterministic names: the first keeps the natural name, the next
  ones NAME_EXT (x_jpg.png), then NAME_PARENT (x_b.png), then NAME_2, NAME_3, ...
  The same file given twice is one input. Names are compared case-insensitively
  (safe on macOS and Windows file systems).
* no output is an input: any input, not just its own (colorize d/c.jpg
  d/c.png -o d would replace d/c.png): refused.
* outputs are never read as inputs: folders and globs do not look inside the
  output folder (a re-run of colorize photos/ -o photos/out does not colorize
  photos/out); an input folder that is the output folder or inside it is refused.
* every option valid: the output format is one Pillow can write (checked by
  writing a tiny image to memory), no output is an existing folder, every
  output folder can be created and written (probed with a temporary file,
  removed at once).
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError

__all__ = ["ImagePlan", "PlannedOutput", "check_image_format", "check_output_file", "check_writable_folder",
           "plan_images", "sidecar_path"]


def sidecar_path(main, tag, ext=".png"):
    """OUT/NAME.ext -> OUT/NAME_tag.png (compare and confidence images)."""
    main = Path(main)
    return main.with_name(f"{main.stem}_{tag}{ext}")


@dataclass(frozen=True)
class PlannedOutput:
    """One input and its outputs: main, and sidecars {tag: path}."""

    source: Path
    main: Path
    sidecars: dict = field(default_factory=dict)

    @property
    def paths(self):
        return [self.main, *self.sidecars.values()]


@dataclass
class ImagePlan:
    """items: the PlannedOutputs in input order; missing: [(argument, reason)]
    for inputs that do not exist or hold no images (reported, the rest done);
    out: the output folder (or the output file for a single input);
    alpha: whether the main format keeps alpha."""

    items: list
    missing: list
    out: Path
    alpha: bool = True
    renamed: list = field(default_factory=list)  # [(source, natural name, given name)]


# ------------------------------------------------------------------ single checks

_FORMAT_CACHE = {}


def check_image_format(suffix, what="output"):
    """(Pillow format name, keeps alpha) for an output suffix such as '.png';
    UsageError when Pillow cannot write it."""
    from PIL import Image

    ext = suffix.lower()
    if ext in _FORMAT_CACHE:
        return _FORMAT_CACHE[ext]
    Image.init()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        known = sorted(e for e, f in Image.registered_extensions().items() if f in Image.SAVE)
        common = [e for e in (".png", ".jpg", ".webp", ".tif", ".bmp") if e in known]
        raise UsageError(f"unknown {what} format {suffix!r}: not an image format Pillow can write "
                         f"(use one of {', '.join(common)}, ...)")

    def writes(mode):
        try:
            Image.new(mode, (2, 2)).save(io.BytesIO(), format=fmt)
            return True
        except Exception:  # noqa: BLE001 - any failure means: cannot write this
            return False

    if not writes("RGB"):
        raise UsageError(f"cannot write RGB images as {suffix!r} ({fmt}); use .png, .jpg, .webp or .tif")
    _FORMAT_CACHE[ext] = result = (fmt, fmt not in ("JPEG", "BMP") and writes("RGBA"))
    return result


def _nearest_existing(path):
    p = Path(os.path.abspath(path))
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_writable_folder(folder, what="output folder", label=None):
    """UsageError unless folder is, or can be created as, a folder this process
    can write in: the nearest existing part of the path must be a folder, and
    a temporary file is created (and removed) in it. label: what the message
    names (default: "the {what} {folder}")."""
    from .errors import describe

    folder = Path(folder)
    label = label or f"the {what} {folder}"
    base = _nearest_existing(folder)
    if not base.is_dir():
        where = "" if base == Path(os.path.abspath(folder)) else f" ({base} is a file)"
        raise UsageError(f"cannot write {label}: {folder} is not a folder{where}")
    try:
        fd, probe = tempfile.mkstemp(dir=base, prefix=".fastcolor-write-check-")
        os.close(fd)
        os.remove(probe)
    except OSError as exc:
        raise UsageError(f"cannot write {label}: {describe(exc).split(': ', 1)[-1]}") from None


def check_output_file(path, what="output file", inputs=(), suffix_format=None):
    """UsageError unless path can be written as a file: not an existing folder,
    not one of inputs, its folder writable; suffix_format: also check the
    suffix is an image format Pillow writes."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"the {what} {path} is an existing folder (give a file name)")
    if suffix_format:
        check_image_format(path.suffix, what)
    if _is_one_of(path, _input_keys(inputs)):
        raise UsageError(f"the {what} {path} is one of the inputs: refusing to overwrite it")
    check_writable_folder(path.parent, label=f"the {what} {path}")
    return path


# ------------------------------------------------------------------ inputs and names


def _resolved(p):
    return Path(os.path.realpath(p))


def _input_keys(inputs):
    return {_resolved(p) for p in inputs}


def _is_one_of(path, resolved_inputs):
    r = _resolved(path)
    if r in resolved_inputs:
        return True
    if Path(path).exists():  # hard links, case-insensitive file systems
        for q in resolved_inputs:
            try:
                if os.path.samefile(path, q):
                    return True
            except OSError:
                pass
    return False


def _within(path, folder):
    try:
        _resolved(path).relative_to(_resolved(folder))
        return True
    except ValueError:
        return False


def _key(path):
    return str(Path(os.path.abspath(path))).casefold()


def _discover(inputs, out, single):
    """[(source, relative output name)] in input order, de-duplicated, and
    [(argument, reason)] for missing inputs."""
    from .data.images import find_images

    exclude = [] if single else [out]
    found, missing, seen = [], [], set()
    for arg in inputs:
        root = Path(arg)
        if not single and root.is_dir() and _within(root, out):
            what = "the output folder" if _resolved(root) == _resolved(out) else "inside the output folder"
            raise UsageError(f"the input folder {arg} is {what} {out}: outputs would be read as inputs "
                             "and inputs overwritten; choose another -o")
        try:
            paths = find_images([arg], exclude=exclude)
        except FileNotFoundError:
            missing.append((arg, "no such file or folder"))
            continue
        if not paths:
            hidden = exclude and find_images([arg])
            missing.append((arg, "only files inside the output folder match (not taken as inputs)" if hidden
                            else "no image files found there"))
        for path in paths:
            r = _resolved(path)
            if r in seen:
                continue  # the same file given twice
            seen.add(r)
            rel = Path(path).relative_to(root) if root.is_dir() else Path(Path(path).name)
            found.append((Path(path), rel))
    return found, missing


def _candidates(source, rel, out, ext, group):
    """Output names for one input, the natural one first. group: the sources
    whose natural name is the same; the input's extension names it when no
    other of them has that extension (a.jpg, a.png -> a_png.png), its folder
    when no other is in a folder of that name (a/x.jpg, b/x.jpg -> x_b.png)."""
    natural = out / rel.with_suffix(ext)
    yield natural
    stem, folder = rel.stem, natural.parent

    def ext_of(p):
        return p.suffix.lstrip(".").lower()

    def parent_of(p):
        return _resolved(p).parent.name

    src_ext, parent = ext_of(source), parent_of(source)
    if src_ext and [ext_of(p) for p in group].count(src_ext) == 1:
        yield folder / f"{stem}_{src_ext}{ext}"
    if parent and [parent_of(p) for p in group].count(parent) == 1:
        yield folder / f"{stem}_{parent}{ext}"
    n = 2
    while True:
        yield folder / f"{stem}_{n}{ext}"
        n += 1


def plan_images(inputs, out, suffix=".png", sidecars=(), single=None):
    """The ImagePlan of image inputs (files, folders searched recursively,
    globs) written under out (see the module docstring).

    suffix: the main outputs' extension, or "same" for each input's own.
    sidecars: {tag: extension} or tags (extension .png) of the extra images
    written beside each output (NAME_tag.png). single: one input file written
    to the file out (default: when there is one input file and out has an
    image suffix and is not a folder). Raises UsageError for a refused plan;
    the network has not run yet.
    """
    from .data.images import IMAGE_EXTENSIONS

    out = Path(out)
    sidecars = dict(sidecars) if isinstance(sidecars, dict) else {tag: ".png" for tag in sidecars}
    for ext in set(sidecars.values()):
        check_image_format(ext, "sidecar")
    if single is None:
        single = (len(inputs) == 1 and Path(inputs[0]).is_file() and not out.is_dir()
                  and out.suffix.lower() in IMAGE_EXTENSIONS)
    if not single and out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder (for several inputs -o names a folder)")

    found, missing = _discover(inputs, out, single)
    input_keys = _input_keys(p for p, _ in found)

    def exts(source):
        ext = out.suffix if single else (source.suffix if suffix == "same" else suffix)
        return ext.lower() if ext else ext

    alpha = True
    for ext in sorted({exts(p) for p, _ in found}):
        if not ext:
            raise UsageError("--suffix same: an input without an extension has no format to keep; give --suffix")
        alpha = check_image_format(ext)[1] and alpha

    items, renamed = [], []
    taken = set()  # case-folded output paths given out so far
    groups = {}
    for src, rel in found:
        groups.setdefault(_key(out if single else out / rel.with_suffix(exts(src))), []).append(src)
    natural_keys = set(groups)
    for source, rel in found:
        ext = exts(source)
        if single:
            names = iter([out])
        else:
            names = _candidates(source, rel, out, ext, groups[_key(out / rel.with_suffix(ext))])
        natural = None
        for name in names:
            natural = natural or name
            side = {tag: sidecar_path(name, tag, e) for tag, e in sidecars.items()}
            paths = [name, *side.values()]
            if name == natural:
                for p in paths:
                    if _is_one_of(p, input_keys):
                        whose = ("its own input" if _is_one_of(p, {_resolved(source)})
                                 else f"an input (output of {source})")
                        raise UsageError(f"the output {p} would replace {whose}: refusing to overwrite an input "
                                         "(choose another -o or --suffix)")
            keys = [_key(p) for p in paths]
            if any(k in taken for k in keys) or len(set(keys)) < len(keys):
                continue
            if name != natural and (any(k in natural_keys for k in keys) or any(_is_one_of(p, input_keys)
                                                                               for p in paths)):
                continue
            taken.update(keys)
            items.append(PlannedOutput(source, name, side))
            if name != natural:
                renamed.append((source, natural, name))
            break

    for item in items:
        for p in item.paths:
            if p.is_dir():
                raise UsageError(f"the output {p} is an existing folder")
    bases = {}
    for folder in sorted({p.parent for item in items for p in item.paths}, key=str):
        bases.setdefault(_nearest_existing(folder), folder)
    for folder in bases.values():
        check_writable_folder(folder)
    return ImagePlan(items, missing, out, alpha, renamed)
