"""Reading, finding and writing image files as uint8 tensors.

``load_image`` turns whatever Pillow can open (8- and 16-bit gray, palette,
RGB(A), CMYK, webp, ...) into an RGB tensor plus an optional alpha channel,
upright according to the EXIF orientation. ``save_image_atomic`` never leaves a
half-written file behind.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from ..atomic import atomic_path

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageReadError",
    "find_images",
    "load_image",
    "save_image_atomic",
]

IMAGE_EXTENSIONS = {
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif",
    ".tif", ".tiff", ".ppm", ".pgm", ".pbm", ".pnm", ".tga",
}


class ImageReadError(ValueError):
    """A file that cannot be decoded as an image (missing, corrupt, truncated,
    or not an image at all). The message names the path and the reason."""

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = str(reason)
        super().__init__(f"cannot read image {self.path}: {self.reason}")


def _to_uint8_gray(im: Image.Image) -> np.ndarray:
    """(H,W) uint8 from a 16-bit / 32-bit integer or float gray image.

    I;16* and I (as Pillow opens 16-bit PNG/TIFF) are taken as 0..65535 and
    divided by 257 (65535 -> 255), unless an "I" image holds larger values, then
    it is scaled by its maximum. F images are taken as [0,1] when max <= 1,
    [0,255] when max <= 255, otherwise as 16-bit.
    """
    a = np.asarray(im).astype(np.float64)
    if im.mode == "F":
        hi = float(np.nanmax(a)) if a.size else 0.0
        scale = 255.0 if hi <= 1.0 else (1.0 if hi <= 255.0 else 1.0 / 257.0)
        a = np.nan_to_num(a) * scale
    else:
        hi = float(a.max()) if a.size else 0.0
        a = a * (255.0 / hi if hi > 65535 else 1.0 / 257.0)
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _decode(im: Image.Image):
    """(rgb (H,W,3) uint8 array, alpha (H,W) uint8 array or None)."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        g = _to_uint8_gray(im)
        return np.repeat(g[..., None], 3, axis=2), None
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode in ("PA", "LA", "La", "RGBa"):
        im = im.convert("RGBA")
    elif mode == "L" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode == "RGB" and "transparency" in im.info:
        im = im.convert("RGBA")
    elif mode not in ("RGB", "RGBA", "L"):
        im = im.convert("RGB")  # CMYK (incl. Adobe's inverted JPEG), YCbCr, LAB, HSV, 1
    a = np.asarray(im)
    if im.mode == "L":
        return np.repeat(a[..., None], 3, axis=2), None
    if im.mode == "RGBA":
        return a[..., :3], a[..., 3]
    return a, None


def load_image(path):
    """Read an image file.

    Returns (rgb, alpha): rgb uint8 (3,H,W); alpha uint8 (1,H,W) when the file
    has an alpha channel or transparency, else None. The EXIF orientation is
    applied, so (H,W) is the upright size. 16-bit and float gray images are
    scaled to 8 bits; 16-bit RGB keeps its high byte.

    Raises ImageReadError (a ValueError) naming the path and the reason when the
    file is missing, not an image, corrupt or truncated.
    """
    try:
        with Image.open(path) as im:
            im.load()  # decode now, so truncated data raises here
            im = ImageOps.exif_transpose(im)
            rgb, alpha = _decode(im)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ImageReadError(path, e) from None
    except Exception as e:  # decoders raise assorted errors on hostile input
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from None
    # np.array copies: Pillow's arrays are read-only views
    rgb_t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    alpha_t = None if alpha is None else torch.from_numpy(np.array(alpha, dtype=np.uint8))[None]
    return rgb_t, alpha_t


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def find_images(inputs) -> list[Path]:
    """Sorted, de-duplicated image paths from files, folders and glob patterns.

    ``inputs``: one path/pattern or a list of them. A file is taken as it is
    (whatever its suffix); a folder is searched recursively for files whose
    lowercase suffix is in IMAGE_EXTENSIONS (hidden files and folders skipped);
    a glob pattern (``*``, ``?``, ``[``; ``**`` recursive) contributes the image
    files it matches, and folders it matches are searched as above. A plain path
    that does not exist raises FileNotFoundError; a pattern that matches
    nothing contributes nothing.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: set[Path] = set()

    def add_folder(folder: Path):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in filenames:
                if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                    found.add(Path(dirpath) / name)

    for item in inputs:
        item = os.fspath(item)
        p = Path(item)
        if p.is_dir():
            add_folder(p)
        elif p.is_file():
            found.add(p)
        elif _has_magic(item):
            for match in glob.glob(item, recursive=True):
                m = Path(match)
                if m.is_dir():
                    add_folder(m)
                elif m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS:
                    found.add(m)
        else:
            raise FileNotFoundError(f"no such image file or folder: {item}")
    return sorted(found, key=str)


def _to_uint8_hwc(x, name: str) -> np.ndarray:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    x = x.detach().cpu()
    if x.dim() != 3:
        raise ValueError(f"save_image_atomic: {name} must have shape (C,H,W), got {tuple(x.shape)}")
    if x.dtype != torch.uint8:
        if not x.is_floating_point():
            raise ValueError(f"save_image_atomic: {name} must be uint8 or float in [0,1], got {x.dtype}")
        x = (x.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def save_image_atomic(path, rgb, alpha=None, **save_kwargs):
    """Write an image: rgb uint8 (3,H,W) or float (3,H,W) in [0,1] (clamped);
    alpha None or (1,H,W) of the same kind. The format follows the suffix
    (.png, .jpg, .webp, ...); alpha is dropped for formats without it (JPEG).
    Written to a temporary file in the same folder, then moved over ``path``
    with os.replace, so an existing file is never half-overwritten.
    Extra keyword arguments go to PIL's save (defaults: JPEG/webp quality 95)."""
    path = Path(path)
    ext = path.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None:
        raise ValueError(f"save_image_atomic: unknown image format for suffix {ext!r} in {path}")
    arr = _to_uint8_hwc(rgb, "rgb")
    if arr.shape[2] != 3:
        raise ValueError(f"save_image_atomic: rgb must have 3 channels, got {arr.shape[2]}")
    im = Image.fromarray(arr, "RGB")
    if alpha is not None and fmt not in ("JPEG", "BMP"):
        a = _to_uint8_hwc(alpha, "alpha")
        if a.shape[:2] != arr.shape[:2] or a.shape[2] != 1:
            raise ValueError(f"save_image_atomic: alpha must have shape (1,H,W) = (1,{arr.shape[0]},{arr.shape[1]})")
        im.putalpha(Image.fromarray(a[..., 0], "L"))
    if fmt in ("JPEG", "WEBP"):
        save_kwargs.setdefault("quality", 95)
    with atomic_path(path, suffix=ext) as tmp:
        im.save(tmp, format=fmt, **save_kwargs)
    return path
