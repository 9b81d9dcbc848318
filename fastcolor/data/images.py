"""The one image loader of fastcolor, image search and atomic image writes.

Every image that enters fastcolor (inference, datasets, codebooks, priors,
evaluation, training statistics) goes through ``read_image`` or
``read_image_float``:

* ``read_image(source)`` -> (rgb uint8 (3,H,W), alpha uint8 (1,H,W) or None)
  for a file path, a PIL image, a torch tensor (C,H,W) or a numpy array
  (H,W) / (H,W,C). Files and PIL images are decoded whatever their mode
  (8/16-bit and float gray, palette with transparency, RGB(A), LA/PA, CMYK,
  webp, ...) and turned upright by their EXIF orientation.
* ``read_image_float(source)`` -> the same with rgb float32 in [0,1]; float
  and 16-bit arrays keep their precision (no uint8 round trip).
* ``composite_over_white``, ``to_float`` and ``to_uint8`` are the conversions
  the callers apply afterwards; ``rgb_batch`` is what codebooks and priors
  stream (float batches stay on their device).

Resizing lives in fastcolor.data.transforms. ``save_image_atomic`` never
leaves a half-written file behind.
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
    "composite_over_white",
    "find_images",
    "image_stream",
    "load_image",
    "read_image",
    "read_image_float",
    "rgb_batch",
    "save_image_atomic",
    "to_float",
    "to_uint8",
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


def _from_pil(im: Image.Image):
    """(rgb uint8 (3,H,W), alpha uint8 (1,H,W) or None) of a decoded PIL image."""
    rgb, alpha = _decode(ImageOps.exif_transpose(im))
    # np.array copies: Pillow's arrays are read-only views
    rgb_t = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
    alpha_t = None if alpha is None else torch.from_numpy(np.array(alpha, dtype=np.uint8))[None]
    return rgb_t, alpha_t


def load_image(path):
    """Read an image file: read_image for a path.

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
            return _from_pil(im)
    except ImageReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as e:
        raise ImageReadError(path, e) from None
    except Exception as e:  # decoders raise assorted errors on hostile input
        raise ImageReadError(path, f"{type(e).__name__}: {e}") from None


# ------------------------------------------------------------------ arrays and tensors


def _float01(t, what):
    """A tensor as float32 in [0, 1]: uint8 / 255, uint16 / 65535, bool as 0/1,
    float checked to lie in [0, 1]."""
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if t.dtype == getattr(torch, "uint16", torch.uint8):
        return t.float() / 65535.0
    if t.dtype == torch.bool:
        return t.float()
    if not t.is_floating_point():
        raise ValueError(f"{what}: integer images must be uint8 or uint16, got {t.dtype}")
    t = t.float()
    if t.numel():
        lo, hi = torch.aminmax(t)
        if not (lo >= 0 and hi <= 1):  # also false for NaN
            raise ValueError(
                f"{what}: float images must lie in [0, 1], got values in [{lo.item():.4g}, {hi.item():.4g}] "
                "(clamp them, or divide 0..255 data by 255)"
            )
    return t


def _channels_to_rgba(x, what):
    """(C, H, W) with C = 1 (gray), 2 (gray, alpha), 3 (RGB) or 4 (RGBA)
    -> (rgb (3, H, W), alpha (1, H, W) or None)."""
    c = x.shape[0]
    if c == 1:
        return x.expand(3, -1, -1), None
    if c == 2:
        return x[:1].expand(3, -1, -1), x[1:]
    if c == 3:
        return x, None
    if c == 4:
        return x[:3], x[3:]
    raise ValueError(f"{what}: images need 1 to 4 channels (gray, gray+alpha, RGB, RGBA), got {c}")


def _array_float(image):
    """(rgb float32 (3,H,W) in [0,1], alpha float32 (1,H,W) or None) of a
    tensor (C,H,W) / (H,W) or a numpy array (H,W) / (H,W,C), on the tensor's device."""
    what = type(image).__name__
    if isinstance(image, np.ndarray):
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3:
            raise ValueError(f"numpy images must have shape (H, W) or (H, W, C), got {image.shape}")
        if image.dtype == np.uint16:
            image = torch.from_numpy(image.astype(np.float32) / 65535.0)
        else:
            image = torch.from_numpy(np.ascontiguousarray(image))
        image = image.permute(2, 0, 1)
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"cannot read a {what} as an image: pass a path, a PIL image, a tensor (C, H, W) "
            "or a numpy array (H, W[, C])"
        )
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3:
        raise ValueError(f"image tensors must have shape (C, H, W), got {tuple(image.shape)}")
    if image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"empty image of shape {tuple(image.shape)}")
    return _channels_to_rgba(_float01(image.detach(), what), what)


def to_float(rgb):
    """uint8 -> float32 in [0, 1] (x / 255); float tensors are returned as they are."""
    return rgb.float() / 255.0 if rgb.dtype == torch.uint8 else rgb


def to_uint8(x):
    """float in [0, 1] -> uint8: round(255 x), clamped to 0..255."""
    return (x * 255.0).round_().clamp_(0, 255).to(torch.uint8)


def read_image(source):
    """Any image as (rgb uint8 (3,H,W), alpha uint8 (1,H,W) or None), on the CPU.

    source:
      * a path: load_image (ImageReadError when it cannot be read);
      * a PIL image: decoded as load_image decodes files (EXIF orientation,
        palette transparency, 16-bit and float gray, CMYK, LA/PA, ...);
      * a torch tensor (C,H,W) (or (H,W)) with C = 1 gray, 2 gray+alpha, 3 RGB,
        4 RGBA, of dtype uint8, uint16 (0..65535), bool, or float in [0,1];
      * a numpy array (H,W) or (H,W,C), same channels and dtypes.
    uint16 and float values v become round(255 v / max); a uint8 picture
    gives the same result whichever of these four forms it comes in.
    """
    if isinstance(source, (str, os.PathLike)):
        return load_image(source)
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, torch.Tensor) and source.dtype == torch.uint8 and source.dim() == 3:
        rgb, alpha = _channels_to_rgba(source.detach().cpu(), "uint8 tensor")
        return rgb.contiguous(), None if alpha is None else alpha.contiguous()
    rgb, alpha = _array_float(source.detach().cpu() if isinstance(source, torch.Tensor) else source)
    return to_uint8(rgb), None if alpha is None else to_uint8(alpha)


def read_image_float(source):
    """Any image as (rgb float32 (3,H,W) in [0,1], alpha uint8 (1,H,W) or None), on the CPU.

    The sources of read_image. Paths and PIL images are decoded to uint8 first
    (then / 255); tensors and arrays keep their precision: float values as
    they are, uint16 / 65535, uint8 / 255.
    """
    if isinstance(source, (str, os.PathLike, Image.Image)):
        rgb, alpha = read_image(source)
        return to_float(rgb), alpha
    rgb, alpha = _array_float(source.detach().cpu() if isinstance(source, torch.Tensor) else source)
    return rgb.contiguous(), None if alpha is None else to_uint8(alpha)


def composite_over_white(rgb, alpha):
    """rgb (3,H,W) over a white background by alpha (1,H,W) uint8 or None.

    uint8 rgb -> uint8: round(rgb a + 255 (1 - a)), a = alpha / 255.
    float rgb in [0,1] -> float: rgb a + (1 - a), not rounded.
    Transparent pixels have undefined colour; white carries no chroma, so they
    teach a model and a prior nothing wrong.
    """
    if alpha is None:
        return rgb
    a = alpha.to(rgb.device).float() / 255
    if rgb.dtype == torch.uint8:
        return (rgb.float() * a + 255 * (1 - a)).round().to(torch.uint8)
    return rgb * a + (1 - a)


def rgb_batch(item):
    """One image or batch as (N,3,H,W) float32 RGB in [0,1], alpha composited over white.

    * a float tensor (N,3,H,W), or (C,H,W) with C = 1..4: taken as values in
      [0,1] (checked), kept on its device and at float precision; alpha
      channels composited in float;
    * anything else read_image takes (path, PIL image, numpy array, uint8 /
      uint16 / bool tensor): read_image, composite_over_white on uint8, / 255;
      (1,3,H,W) on the CPU.
    """
    if isinstance(item, torch.Tensor) and item.is_floating_point():
        if item.dim() == 4:
            if item.shape[1] != 3:
                raise ValueError(f"float image batches must have shape (N, 3, H, W), got {tuple(item.shape)}")
            return _float01(item.detach(), "image batch")
        rgb, alpha = _array_float(item)
        return (rgb if alpha is None else rgb * alpha + (1 - alpha))[None]
    rgb, alpha = read_image(item)
    return to_float(composite_over_white(rgb, alpha))[None]


def image_stream(images):
    """(iterable, total) over a collection of images; a lone image (path, PIL
    image, tensor, numpy array of 2 or 3 dimensions) is one item; total is
    None for a collection without len (a generator)."""
    lone = (str, os.PathLike, Image.Image, torch.Tensor)
    if isinstance(images, lone) or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        return [images], 1
    return images, (len(images) if hasattr(images, "__len__") else None)


# ------------------------------------------------------------------ finding files


def _has_magic(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def find_images(inputs, exclude=()) -> list[Path]:
    """Sorted, de-duplicated image paths from files, folders and glob patterns.

    ``inputs``: one path/pattern or a list of them. A file is taken as it is
    (whatever its suffix); a folder is searched recursively for files whose
    lowercase suffix is in IMAGE_EXTENSIONS (hidden files and folders skipped);
    a glob pattern (``*``, ``?``, ``[``; ``**`` recursive) contributes the image
    files it matches, and folders it matches are searched as above. A plain path
    that does not exist raises FileNotFoundError; a pattern that matches
    nothing contributes nothing.

    ``exclude``: folders (e.g. a command's output folder) whose contents
    folder searches and glob matches never return; files given by name are
    still taken.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    found: set[Path] = set()
    excluded = [os.path.realpath(e) for e in ([exclude] if isinstance(exclude, (str, os.PathLike)) else exclude)]

    def is_excluded(path) -> bool:
        real = os.path.realpath(path)
        return any(real == e or real.startswith(e.rstrip(os.sep) + os.sep) for e in excluded)

    def add_folder(folder: Path):
        if excluded and is_excluded(folder):
            return
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")
                           and not (excluded and is_excluded(os.path.join(dirpath, d)))]
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
                elif m.is_file() and m.suffix.lower() in IMAGE_EXTENSIONS and not (excluded and is_excluded(m)):
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
