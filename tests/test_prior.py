"""Tests for fastcolor.prior: smoothing, estimation, rebalancing weights."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcolor import ops
from fastcolor.color.codebook import Codebook
from fastcolor.color import rgb_to_lab
from fastcolor.color.prior import (estimate_prior, histogram, imagenet_prior, prior_from_counts, rebalance_weights,
                                   resolve_prior, smooth_prior)

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


def flat(colour, h=4, w=6):
    return torch.tensor(colour, dtype=torch.float32).view(3, 1, 1).expand(3, h, w) / 255


def bin_of(cb, a, b):
    return int(((cb.centres - torch.tensor([a, b])) ** 2).sum(1).argmin())


# ------------------------------------------------------------ imagenet prior


def test_imagenet_prior_alignment_and_weights():
    p, cb = imagenet_prior(), Codebook.zhang313()
    assert p.dtype == torch.float64 and p.shape == (313,)
    assert p.sum().item() == pytest.approx(1, abs=1e-9)
    np.testing.assert_array_equal(p.numpy(), np.load(REFERENCE / "prior_probs.npy"))
    assert p.max().item() == pytest.approx(0.201, abs=5e-4)
    assert cb.centres[p.argmax()].tolist() == [0.0, 0.0]
    w = rebalance_weights(p, 0.5)
    assert w.dtype == torch.float32 and w.shape == (313,)
    assert w.min().item() == pytest.approx(0.0965, rel=5e-3)
    assert w.max().item() == pytest.approx(6.17, rel=5e-3)
    assert (p * w.double()).sum().item() == pytest.approx(1, abs=1e-6)


def test_resolve_prior():
    cb = Codebook.zhang313()
    assert torch.equal(resolve_prior("imagenet", cb), imagenet_prior())
    q = np.full(313, 1 / 313, np.float32)
    out = resolve_prior(q, cb)
    assert out.dtype == torch.float64 and out.shape == (313,)
    with pytest.raises(ValueError, match="zhang313"):
        resolve_prior("imagenet", Codebook(torch.randn(32, 2), "yuv"))
    with pytest.raises(ValueError, match="zhang313"):  # 313 Lab bins, but not those
        resolve_prior("imagenet", Codebook(cb.centres.flip(0)))
    with pytest.raises(ValueError, match="unknown prior"):
        resolve_prior("coco", cb)
    with pytest.raises(ValueError, match="313 bins"):
        resolve_prior(torch.ones(32) / 32, cb)


# ------------------------------------------------------------ rebalancing


def test_rebalance_weights_hand_computed():
    # (1 - 0.5) p + 0.5 / 4 = (0.375, 0.25, 0.25, 0.125) -> 1/x = (8/3, 4, 4, 8);
    # sum p / x = 4/3 + 1 + 1 = 10/3, so w = (0.8, 1.2, 1.2, 2.4).
    w = rebalance_weights(torch.tensor([0.5, 0.25, 0.25, 0.0]), 0.5)
    torch.testing.assert_close(w, torch.tensor([0.8, 1.2, 1.2, 2.4]))
    # lam = 0: the inverse prior 1/p = (2, 4, 4), with sum p / p = 3 bins -> w = (2, 4, 4) / 3.
    torch.testing.assert_close(rebalance_weights(torch.tensor([0.5, 0.25, 0.25]), 0.0), torch.tensor([2.0, 4.0, 4.0]) / 3)


def test_rebalance_weights_uniform_at_lam_one():
    p = imagenet_prior()
    torch.testing.assert_close(rebalance_weights(p, 1.0), torch.ones(313))


@pytest.mark.parametrize(
    "prior, lam, match",
    [
        (torch.tensor([0.5, 0.6]), 0.5, "normalise"),
        (torch.tensor([1.5, -0.5]), 0.5, "non-negative"),
        (torch.tensor([0.5, float("nan")]), 0.5, "finite"),
        (torch.ones(2, 2) / 4, 0.5, "1-D"),
        (torch.tensor([0.5, 0.5]), 1.5, r"\[0, 1\]"),
        (torch.tensor([0.5, 0.5]), -0.1, r"\[0, 1\]"),
        (torch.tensor([1.0, 0.0]), 0.0, "infinite"),
    ],
)
def test_rebalance_weights_validation(prior, lam, match):
    with pytest.raises(ValueError, match=match):
        rebalance_weights(prior, lam)


# ------------------------------------------------------------ smoothing


def test_smooth_prior_tiny_sigma_is_identity():
    cb = Codebook.zhang313()
    p = torch.rand(313, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    p /= p.sum()
    torch.testing.assert_close(smooth_prior(p, cb, 1e-3), p, atol=1e-15, rtol=0)
    torch.testing.assert_close(smooth_prior(p * 7, cb.centres, 0), p)  # sigma 0: only normalises


def test_smooth_prior_two_bins():
    out = smooth_prior(torch.tensor([1.0, 0.0]), torch.tensor([[0.0, 0.0], [10.0, 0.0]]), 5.0)
    e = math.exp(-2)
    torch.testing.assert_close(out, torch.tensor([1 / (1 + e), e / (1 + e)], dtype=torch.float64))


# ------------------------------------------------------------ estimation


def test_estimate_prior_one_colour():
    cb = Codebook.zhang313()
    images = [flat((128, 128, 128)), flat((128, 128, 128))[None]]  # gray: ab = (0, 0)
    centre = bin_of(cb, 0, 0)
    raw = estimate_prior(images, cb, sigma=0, progress=False)
    assert raw[centre] == 1 and raw.sum() == 1

    p = estimate_prior(images, cb, sigma=5.0, progress=False)
    assert p.dtype == torch.float64 and p.sum().item() == pytest.approx(1, abs=1e-12)
    assert p.argmax() == centre
    for da, db, d2 in [(10, 0, 100), (-10, 0, 100), (0, 10, 100), (0, -10, 100), (10, 10, 200), (20, 0, 400)]:
        ratio = (p[bin_of(cb, da, db)] / p[centre]).item()
        assert ratio == pytest.approx(math.exp(-d2 / 50), rel=1e-9)
    # default sigma is the codebook's: 5 for zhang313
    torch.testing.assert_close(estimate_prior(images, cb, progress=False), p)


def test_prior_from_counts_matches_estimate():
    cb = Codebook.zhang313()
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 8, 9, generator=g) for _ in range(3)]
    counts = sum(ops.bin_histogram(rgb_to_lab(x[None])[:, 1:], cb) for x in images)
    assert counts.sum() == 3 * 8 * 9
    expected = prior_from_counts(counts, cb)
    torch.testing.assert_close(estimate_prior(iter(images), cb, progress=False), expected)
    torch.testing.assert_close(prior_from_counts(counts, cb, sigma=0), counts / counts.sum())


def test_estimate_prior_data_codebook():
    colours = [((163, 254, 203), 40), ((34, 128, 128), 35), ((105, 42, 186), 25), ((31, 120, 1), 15)]
    img = np.concatenate([np.tile(np.uint8(c), (n, 1, 1)) for c, n in colours])
    cb = Codebook.from_images([img], n=4, progress=False)
    p = estimate_prior([img], cb, sigma=0, progress=False)
    # bins are in yuv cell order: (31,120,1), (163,254,203), (34,128,128), (105,42,186)
    torch.testing.assert_close(p, torch.tensor([15, 40, 35, 25], dtype=torch.float64) / 115)


def test_empty_input_raises():
    cb = Codebook.zhang313()
    with pytest.raises(ValueError, match="no pixel"):
        estimate_prior([], cb, progress=False)
    with pytest.raises(ValueError, match="no pixel"):
        prior_from_counts(torch.zeros(313), cb)
    with pytest.raises(ValueError, match="313 bins"):
        prior_from_counts(torch.ones(32), cb)


# ------------------------------------------------------------ gray images, files


def test_gray_threshold_skips_gray_images():
    """gray_threshold: an image counts only when some pixel has |a| or |b| above
    it (fastcolor.nn.has_chroma), as the training statistics do."""
    from fastcolor.nn import has_chroma

    cb = Codebook.zhang313()
    red, gray, sepia = flat((200, 30, 30)), flat((128, 128, 128)), flat((130, 128, 125))
    assert rgb_to_lab(sepia[None])[:, 1:].abs().max() < 5
    batch = torch.stack([red, gray, sepia])
    everything = histogram(batch, cb, progress=False)
    assert everything.sum() == 3 * 24
    counted = histogram([batch, gray], cb, gray_threshold=5.0, progress=False)
    assert counted.sum() == 24 and counted[bin_of(cb, 0, 0)] == 0
    keep = has_chroma(rgb_to_lab(batch)[:, 1:], 5.0)
    torch.testing.assert_close(counted, histogram(batch[keep], cb, progress=False))
    torch.testing.assert_close(estimate_prior([batch, gray], cb, gray_threshold=5.0, progress=False),
                               prior_from_counts(counted, cb))
    assert histogram([gray], cb, gray_threshold=5.0, progress=False).sum() == 0
    with pytest.raises(ValueError, match="gray"):
        estimate_prior([gray, sepia], cb, gray_threshold=5.0, progress=False)
    # UV: the same test with the space's threshold
    yuv = Codebook.from_images([red, flat((30, 30, 200))], n=2, space="yuv", progress=False)
    assert histogram([red, gray], yuv, gray_threshold=0.02, progress=False).sum() == 24


def test_files_are_read_by_the_one_loader(tmp_path):
    """Files go through fastcolor.data.images.read_image, alpha over white: a
    transparent pixel counts as white, whatever colour it hides."""
    from PIL import Image

    cb = Codebook.zhang313()
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., :3] = (200, 30, 30)
    rgba[:, :3, 3] = 255  # left half opaque red, right half transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    counts = histogram(tmp_path / "half.png", cb, progress=False)
    white = bin_of(cb, 0, 0)
    assert counts[white] == 12 and counts.sum() == 24
    red = ops.bin_histogram(rgb_to_lab(flat((200, 30, 30))[None])[:, 1:], cb).argmax()
    assert counts[red] == 12
