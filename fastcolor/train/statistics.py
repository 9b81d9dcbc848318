"""The statistics of a training set that a run needs before its first step: the
codebook (Zhang's 313 Lab bins, or bins fitted to the training images' chroma),
the prior of the images' chroma over it and the class-rebalancing weights
(ECCV16, section 3.1; docs/design.md, section 5.1).

They are computed once, on rank 0, from the training images downscaled to
--stats-max-side, and stored in the checkpoint (a resumed run reads them back).
"""

import os
from concurrent.futures import ThreadPoolExecutor

from tqdm.auto import tqdm

from ..color.codebook import Codebook
from ..color.prior import estimate_prior, rebalance_weights
from ..color.spaces import color_space
from ..data.images import ImageReadError, composite_over_white, load_image, to_float
from ..data.transforms import fit_within

__all__ = ["stats_images", "build_statistics"]


def stats_images(files, max_side, progress):
    """(images, skipped): the training images as float (3, h, w) tensors in
    [0, 1], downscaled to at most max_side (area-like antialiasing), and the
    (path, reason) of the unreadable files, which are skipped. Decoded by a few
    threads (Pillow releases the GIL), in the order of files."""
    out, skipped = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(lambda path: _read(path, max_side), files)
        for path, (x, reason) in tqdm(zip(files, results), total=len(files), desc="reading", leave=False,
                                      disable=not progress):
            if x is None:
                skipped.append((str(path), reason))
            else:
                out.append(x)
    return out, skipped


def _read(path, max_side):
    """(image (3, h, w) in [0, 1], None), or (None, why) for an unreadable file;
    transparent pixels over white, as ImageFolder serves them."""
    try:
        rgb, alpha = load_image(path)
    except ImageReadError as exc:
        return None, str(exc)
    return fit_within(composite_over_white(to_float(rgb), alpha), max_side), None


def build_statistics(config, files):
    """(codebook, prior (Q,) float64, class_weights (Q,) float32, sigma, skipped)
    of the training set; skipped lists the (path, reason) of unreadable files.

    Codebook: zhang313, or Codebook.from_images(n=bins, space) over the training
    images. Prior: estimate_prior(images, codebook, sigma) over the images with
    chroma (gray ones, by the space's gray_threshold, are skipped, as in the
    loss); weights: rebalance_weights(prior, lam). sigma: config.sigma, or the
    codebook's default_sigma when None.
    """
    images, skipped = stats_images(files, config.stats_max_side, config.progress)
    if not images:
        raise ValueError(f"none of the {len(files)} image files under {config.data} could be read")
    if config.codebook == "zhang313":
        codebook = Codebook.zhang313()
    else:
        codebook = Codebook.from_images(images, n=config.bins, space=config.space, progress=config.progress)
    sigma = codebook.default_sigma if config.sigma is None else float(config.sigma)
    try:
        prior = estimate_prior(images, codebook, sigma, progress=config.progress,
                               gray_threshold=color_space(config.space).gray_threshold)
    except ValueError as exc:  # every image gray
        raise ValueError(f"the training images under {config.data} have no colour (all gray): "
                         "nothing to learn") from exc
    return codebook, prior, rebalance_weights(prior, config.lam), sigma, skipped
