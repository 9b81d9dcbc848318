import math

import pytest
import torch

from fastcolor import Codebook, imagenet_prior
from fastcolor.metrics import (
    MetricAccumulator,
    ab_accuracy_auc,
    accuracy_histogram,
    colourfulness,
    psnr,
    rebalanced_pixel_weights,
)


def integer_ab(gen, n=2, h=5, w=7, lo=-100, hi=100):
    """Integer-valued chroma: offsets of it are exact in float32."""
    return torch.randint(lo, hi, (n, 2, h, w), generator=gen).float()


def brute_force_auc(pred, true, weight=None, max_threshold=150):
    """The definition, one threshold at a time."""
    d = (pred.double() - true.double()).norm(dim=1)
    w = torch.ones_like(d) if weight is None else weight.double()
    acc = [((d <= t).double() * w).sum() / w.sum() for t in range(max_threshold + 1)]
    return torch.stack(acc).mean().item()


def test_identical_ab_gives_auc_one(gen):
    ab = torch.randn(3, 2, 9, 11, generator=gen) * 50
    assert ab_accuracy_auc(ab, ab.clone()) == 1.0
    assert ab_accuracy_auc(ab, ab.clone(), pixel_weight=torch.rand(3, 9, 11, generator=gen) + 0.1) == 1.0


@pytest.mark.parametrize(
    "offset, correct_thresholds",
    [
        ((3.0, 4.0), 151 - 5),  # d = 5: thresholds 5..150
        ((1.5, 2.0), 151 - 3),  # d = 2.5: thresholds 3..150
        ((0.0, -0.5), 151 - 1),  # d = 0.5: all but t = 0
        ((90.0, 120.0), 1),  # d = 150: only t = 150
        ((0.0, 150.5), 0),  # beyond the last threshold
        ((200.0, 0.0), 0),
    ],
)
def test_constant_offset(gen, offset, correct_thresholds):
    # Every pixel at distance d is correct for the thresholds t >= ceil(d):
    # AuC = (151 - ceil(d)) / 151 (0 beyond 150).
    true = integer_ab(gen)
    pred = true + torch.tensor(offset).view(1, 2, 1, 1)
    assert ab_accuracy_auc(pred, true) == pytest.approx(correct_thresholds / 151, abs=1e-12)


def test_mixed_offsets_and_weights(gen):
    true = integer_ab(gen, n=1, h=1, w=4)
    offsets = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 10.0], [300.0, 0.0]])  # d = 0, 5, 10, 300
    pred = true + offsets.T.reshape(1, 2, 1, 4)
    per_pixel = torch.tensor([151.0, 146.0, 141.0, 0.0], dtype=torch.float64) / 151
    assert ab_accuracy_auc(pred, true) == pytest.approx(per_pixel.mean().item(), abs=1e-12)
    weight = torch.tensor([[[1.0, 2.0, 0.0, 1.0]]], dtype=torch.float64)
    expected = (per_pixel * weight.flatten()).sum() / weight.sum()
    assert ab_accuracy_auc(pred, true, weight) == pytest.approx(expected.item(), abs=1e-12)
    # max_threshold = 10: d = 5 is right for t = 5..10, d = 10 for t = 10.
    assert ab_accuracy_auc(pred, true, max_threshold=10) == pytest.approx((11 + 6 + 1 + 0) / 11 / 4, abs=1e-12)


def test_auc_matches_definition(gen):
    true = torch.randn(2, 2, 8, 9, generator=gen) * 40
    pred = true + torch.randn(2, 2, 8, 9, generator=gen) * 60
    weight = torch.rand(2, 8, 9, generator=gen)
    assert ab_accuracy_auc(pred, true) == pytest.approx(brute_force_auc(pred, true), abs=1e-12)
    assert ab_accuracy_auc(pred, true, weight) == pytest.approx(brute_force_auc(pred, true, weight), abs=1e-12)
    hist = accuracy_histogram(pred, true)
    assert hist.shape == (152,) and hist.dtype == torch.float64 and hist.sum() == 2 * 8 * 9


def test_auc_validates(gen):
    ab = torch.zeros(1, 2, 3, 3)
    with pytest.raises(ValueError, match="differ in shape"):
        ab_accuracy_auc(ab, torch.zeros(1, 2, 3, 4))
    with pytest.raises(ValueError, match=r"\(N, 2, H, W\)"):
        ab_accuracy_auc(torch.zeros(1, 3, 3, 3), torch.zeros(1, 3, 3, 3))
    with pytest.raises(ValueError, match="non-finite"):
        ab_accuracy_auc(torch.full((1, 2, 3, 3), float("nan")), ab)
    with pytest.raises(ValueError, match="sum to zero"):
        ab_accuracy_auc(ab, ab, torch.zeros(1, 3, 3))
    with pytest.raises(ValueError, match="pixel_weight"):
        ab_accuracy_auc(ab, ab, torch.ones(3, 3))
    with pytest.raises(ValueError, match="non-negative"):
        ab_accuracy_auc(ab, ab, -torch.ones(1, 3, 3))
    with pytest.raises(ValueError, match="empty"):
        ab_accuracy_auc(torch.zeros(0, 2, 3, 3), torch.zeros(0, 2, 3, 3))


def test_rebalanced_weights_uniform_prior(gen):
    codebook = Codebook.zhang313()
    ab = torch.randn(2, 2, 6, 5, generator=gen) * 40
    uniform = torch.full((313,), 1 / 313, dtype=torch.float64)
    w = rebalanced_pixel_weights(ab, codebook, uniform)
    assert w.shape == (2, 6, 5) and w.dtype == torch.float32
    torch.testing.assert_close(w, torch.ones(2, 6, 5))
    raw = rebalanced_pixel_weights(ab, codebook, uniform, normalize=False)
    torch.testing.assert_close(raw, torch.full((2, 6, 5), 313.0))


def test_rebalanced_weights_by_hand():
    codebook = Codebook(torch.tensor([[0.0, 0.0], [10.0, 0.0]]), "lab")
    prior = torch.tensor([0.75, 0.25])
    # Three pixels near bin 0, one near bin 1: raw weights 4/3, 4/3, 4/3, 4 (mean 2).
    ab = torch.tensor([[1.0, 0.0], [-3.0, 2.0], [4.0, -1.0], [8.0, 1.0]]).T.reshape(1, 2, 2, 2)
    w = rebalanced_pixel_weights(ab, codebook, prior)
    torch.testing.assert_close(w, torch.tensor([[[2 / 3, 2 / 3], [2 / 3, 2.0]]]))
    assert w.mean().item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="zero prior"):
        rebalanced_pixel_weights(ab, codebook, torch.tensor([1.0, 0.0]))


def test_rebalanced_weights_imagenet_prior(gen):
    codebook = Codebook.zhang313()
    ab = torch.randn(1, 2, 4, 4, generator=gen) * 30
    w = rebalanced_pixel_weights(ab, codebook, "imagenet", normalize=False)
    expected = 1 / imagenet_prior()[codebook.nearest(ab)]
    torch.testing.assert_close(w, expected.float())


def test_colourfulness_gray_is_zero(gen):
    gray = torch.rand(3, 1, 8, 9, generator=gen).expand(3, 3, 8, 9)
    assert torch.equal(colourfulness(gray), torch.zeros(3, dtype=torch.float64))


def test_colourfulness_two_colours_by_hand():
    # Half pure red (255, 0, 0), half pure blue (0, 0, 255):
    # rg = 255 / 0 -> mean 127.5, std 127.5; yb = 127.5 / -255 -> mean -63.75, std 191.25.
    img = torch.zeros(1, 3, 4, 6)
    img[:, 0, :, :3] = 1.0
    img[:, 2, :, 3:] = 1.0
    expected = math.hypot(127.5, 191.25) + 0.3 * math.hypot(127.5, -63.75)
    assert colourfulness(img).item() == pytest.approx(expected, rel=1e-12)
    # A flat colour has no spread: M = 0.3 * |(mean_rg, mean_yb)|; here (R, G, B) = (1, 0.5, 0).
    flat = torch.tensor([1.0, 0.5, 0.0]).view(1, 3, 1, 1).expand(2, 3, 5, 5)
    expected = 0.3 * math.hypot(127.5, 0.5 * (255 + 127.5))
    torch.testing.assert_close(colourfulness(flat), torch.full((2,), expected, dtype=torch.float64))


def test_psnr_known_mse(gen):
    true = torch.rand(2, 3, 6, 7, generator=gen, dtype=torch.float64) * 0.8
    pred = true.clone()
    pred[0] += 0.1  # MSE 0.01 -> 20 dB
    pred[1, :, :3] += 0.2  # 3 of 6 rows off by 0.2: MSE 0.02 -> 10 log10(50)
    torch.testing.assert_close(psnr(pred, true), torch.tensor([20.0, 10 * math.log10(50)], dtype=torch.float64))
    assert psnr(true, true).isinf().all()
    with pytest.raises(ValueError, match="differ in shape"):
        psnr(pred, true[:1])


def test_accumulator_pools_like_one_batch(gen):
    codebook = Codebook.zhang313()
    prior = imagenet_prior()
    n, h, w = 5, 6, 7
    true_ab = torch.randn(n, 2, h, w, generator=gen) * 40
    pred_ab = true_ab + torch.randn(n, 2, h, w, generator=gen) * 30
    true_rgb = torch.rand(n, 3, h, w, generator=gen)
    pred_rgb = (true_rgb + 0.1 * torch.randn(n, 3, h, w, generator=gen)).clamp(0, 1)
    weights = rebalanced_pixel_weights(true_ab, codebook, prior)

    explicit, automatic = MetricAccumulator(), MetricAccumulator(codebook, prior)
    for s in (slice(0, 3), slice(3, 4), slice(4, 5)):  # uneven batches
        explicit.add(pred_ab[s], true_ab[s], pred_rgb[s], true_rgb[s], weights[s])
        automatic.add(pred_ab[s], true_ab[s], pred_rgb[s], true_rgb[s])
    expected = {
        "auc": ab_accuracy_auc(pred_ab, true_ab),
        "auc_rebalanced": ab_accuracy_auc(pred_ab, true_ab, weights),
        "colourfulness": colourfulness(pred_rgb).mean().item(),
        "colourfulness_true": colourfulness(true_rgb).mean().item(),
        "psnr": psnr(pred_rgb, true_rgb).mean().item(),
        "images": n,
        "pixels": n * h * w,
    }
    # The automatic weights are float64, the explicit ones float32: equal up to rounding.
    for acc, rel in ((explicit, 1e-12), (automatic, 1e-6)):
        result = acc.result()
        assert result.keys() == expected.keys()
        for k, v in expected.items():
            assert result[k] == pytest.approx(v, rel=rel), k
    curve = explicit.accuracy_curve()
    assert curve.shape == (151,) and (curve.diff() >= 0).all() and curve[-1] <= 1
    assert curve.mean().item() == pytest.approx(expected["auc"], abs=1e-12)


def test_accumulator_partial_inputs(gen):
    acc = MetricAccumulator()
    with pytest.raises(ValueError, match="no batch"):
        acc.result()
    ab = torch.randn(2, 2, 4, 4, generator=gen)
    acc.add(ab, ab)
    acc.add(ab[:1, :, :2], ab[:1, :, :2])  # another size
    result = acc.result()
    assert result["auc"] == 1.0 and result["images"] == 3 and result["pixels"] == 2 * 16 + 8
    assert result["auc_rebalanced"] is None and result["psnr"] is None and result["colourfulness"] is None
    acc.add(ab, ab, pixel_weight_rebalanced=torch.ones(2, 4, 4))
    with pytest.raises(ValueError, match="some batches only"):
        acc.result()
    acc.reset()
    with pytest.raises(ValueError, match="no batch"):
        acc.result()
    with pytest.raises(ValueError, match="both"):
        MetricAccumulator(codebook=Codebook.zhang313())


@pytest.mark.cuda
def test_metrics_on_cuda_match_cpu(gen):
    codebook, prior = Codebook.zhang313(), imagenet_prior()
    true_ab = torch.randn(3, 2, 16, 16, generator=gen) * 40
    pred_ab = true_ab + torch.randn(3, 2, 16, 16, generator=gen) * 20
    rgb = torch.rand(3, 3, 16, 16, generator=gen)
    results = []
    for device in ("cpu", "cuda"):
        acc = MetricAccumulator(codebook, prior)
        acc.add(pred_ab.to(device), true_ab.to(device), rgb.to(device), rgb.flip(0).to(device))
        results.append(acc.result())
    for k, v in results[0].items():
        assert results[1][k] == pytest.approx(v, rel=1e-6), k
