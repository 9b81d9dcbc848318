"""A folder of photos as a training dataset of fixed-size RGB crops."""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from .images import ImageReadError, composite_over_white, find_images, read_image, to_float
from .transforms import centre_crop, fit_within, resize

__all__ = ["ImageFolder"]


class ImageFolder(Dataset):
    """Every image below ``root`` (anything fastcolor.data.images.find_images takes:
    a folder, file, glob or a list of them) as fixed-size crops.

    item -> dict(rgb=float32 (3,crop_size,crop_size) in [0,1], index=int
    (the image actually served, see below)).

    - Transparent images are composited over white.
    - ``max_side``: images are first shrunk so that max(H,W) <= max_side.
    - Images whose short side is below crop_size are upscaled (aspect kept) so
      that the short side equals crop_size; every item has the same shape.
    - ``augment=True``: a random crop and a horizontal flip with probability
      1/2; ``augment=False``: the centre crop, deterministic.
      The random draws come from a generator seeded by (seed, index, the
      process' torch.initial_seed(), a per-item count of draws): reproducible
      after torch.manual_seed, different in each DataLoader worker and epoch.
      reset_draws(index) sets an item's count back to zero.
    - ``cache=True`` keeps the decoded (max_side-shrunk) uint8 images in memory.

    Every file is decoded once on construction; files that fail
    (corrupt, truncated, not an image) are left out and listed in
    ``.skipped`` as (path, reason), with a warning. A file that fails later
    (changed on disk) is added to ``.skipped`` and another image is served in
    its place, so a training run never stops on a bad file. Raises ValueError
    when no readable image is found.
    """

    def __init__(self, root, crop_size=176, augment=True, max_side=None, cache=False, seed=0, progress=False):
        if crop_size < 1:
            raise ValueError(f"ImageFolder: crop_size must be positive, got {crop_size}")
        if max_side is not None and max_side < crop_size:
            raise ValueError(f"ImageFolder: max_side ({max_side}) must be at least crop_size ({crop_size})")
        self.root = root
        self.crop_size = int(crop_size)
        self.augment = bool(augment)
        self.max_side = max_side
        self.cache = bool(cache)
        self.seed = int(seed)
        self.skipped: list[tuple[str, str]] = []
        self._cached: list[torch.Tensor | None] = []
        self._calls: dict[int, int] = {}
        self.paths = []
        candidates = find_images(root)

        def check(path):
            try:
                return path, self._load(path), None
            except ImageReadError as e:
                return path, None, e.reason

        # decoding releases the GIL in Pillow: threads make the one-off check fast
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            results = pool.map(check, candidates)
            for path, img, reason in tqdm(results, total=len(candidates), desc="checking images",
                                          disable=not progress, unit="img"):
                if reason is not None:
                    self.skipped.append((str(path), reason))
                    continue
                self.paths.append(path)
                self._cached.append(img if self.cache else None)
        if self.skipped:
            warnings.warn(
                f"ImageFolder: skipped {len(self.skipped)} unreadable file(s), e.g. "
                f"{self.skipped[0][0]}: {self.skipped[0][1]}",
                stacklevel=2,
            )
        if not self.paths:
            raise ValueError(f"ImageFolder: no readable images found in {root!r}")

    def __len__(self) -> int:
        return len(self.paths)

    def _load(self, path) -> torch.Tensor:
        """uint8 (3,H,W) with alpha composited, shrunk to max_side."""
        rgb, alpha = read_image(path)
        return fit_within(composite_over_white(rgb, alpha), self.max_side)

    def _image(self, index: int) -> tuple[int, torch.Tensor]:
        """(index actually served, uint8 image); falls back to the next readable
        image when a file has become unreadable since construction."""
        for k in range(len(self.paths)):
            i = (index + k) % len(self.paths)
            if self._cached[i] is not None:
                return i, self._cached[i]
            try:
                return i, self._load(self.paths[i])
            except ImageReadError as e:
                self.skipped.append((str(self.paths[i]), e.reason))
                warnings.warn(f"ImageFolder: {e}; serving another image instead", stacklevel=3)
        raise RuntimeError("ImageFolder: none of the images can be read any more")

    def reset_draws(self, index: int) -> None:
        """Forget how often item ``index`` has been drawn: its next augmented
        crop and flip depend only on (seed, index, torch.initial_seed()). A
        training loop that reseeds torch per (epoch, index) calls this first,
        so the draw does not depend on the process' history (workers, resume)."""
        self._calls.pop(index, None)

    def _generator(self, index: int) -> torch.Generator:
        n = self._calls.get(index, 0)
        self._calls[index] = n + 1
        key = f"{self.seed}/{index}/{torch.initial_seed()}/{n}".encode()
        seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1
        return torch.Generator().manual_seed(seed)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"ImageFolder: index {index} out of range for {len(self)} images")
        index = index % len(self)
        served, img = self._image(index)
        c = self.crop_size
        h, w = img.shape[1:]
        if min(h, w) < c:
            s = c / min(h, w)
            # ceil so that float rounding never leaves a side one pixel short of the crop
            img = resize(img, (max(c, math.ceil(h * s - 1e-6)), max(c, math.ceil(w * s - 1e-6))))
            h, w = img.shape[1:]
        if self.augment:
            g = self._generator(index)
            top = int(torch.randint(0, h - c + 1, (1,), generator=g))
            left = int(torch.randint(0, w - c + 1, (1,), generator=g))
            flip = bool(torch.rand((), generator=g) < 0.5)
            crop = img[:, top : top + c, left : left + c]
        else:
            crop, flip = centre_crop(img, c), False
        if flip:
            crop = crop.flip(-1)
        return {"rgb": to_float(crop).contiguous(), "index": served}

    def __repr__(self) -> str:
        return (
            f"ImageFolder({str(self.root)!r}, images={len(self)}, skipped={len(self.skipped)}, "
            f"crop_size={self.crop_size}, augment={self.augment}, max_side={self.max_side}, cache={self.cache})"
        )
