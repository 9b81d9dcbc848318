"""fastcolor.nn: the loss and decoder layers."""

import pytest
import torch

import fastcolor
from fastcolor import Codebook, ops
from fastcolor.nn import AnnealedMeanDecoder, RebalancedCrossEntropy, has_chroma, subsample_to
from conftest import DEVICES


@pytest.fixture(scope="module")
def codebook():
    return Codebook.zhang313()


def _skip_unsupported(device):
    if device == "cuda" and not fastcolor.backend_info()["cuda"] == "kernels":
        pytest.skip("no CUDA kernels here")


@pytest.mark.parametrize("device", DEVICES)
def test_loss_layer_subsamples_full_resolution_targets(device, codebook, gen):
    _skip_unsupported(device)
    crit = RebalancedCrossEntropy(codebook, prior="imagenet").to(device)
    assert crit.centres.device.type == device and crit.class_weights.device.type == device
    logits = torch.randn(2, 313, 11, 7, generator=gen).to(device).requires_grad_()
    ab = (torch.randn(2, 2, 44, 28, generator=gen) * 40).to(device)
    v = (torch.rand(2, 44, 28, generator=gen) > 0.2).to(device)
    loss = crit(logits, ab, v)
    want = ops.rebalanced_cross_entropy(
        logits, ab[..., ::4, ::4], crit.centres, crit.class_weights, k=5, sigma=5.0, pixel_weight=v[..., ::4, ::4]
    )
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_loss_layer_weights_and_state(codebook):
    crit = RebalancedCrossEntropy(codebook)
    w = fastcolor.rebalance_weights(fastcolor.imagenet_prior(), 0.5)
    torch.testing.assert_close(crit.class_weights, w)
    assert set(crit.state_dict()) == {"centres", "class_weights"}
    assert "bins=313" in repr(crit) and "k=5" in repr(crit) and "sigma=5" in repr(crit)
    own = torch.rand(313) + 0.1
    torch.testing.assert_close(RebalancedCrossEntropy(codebook, class_weights=own).class_weights, own)
    lam1 = RebalancedCrossEntropy(codebook, lam=1.0)
    torch.testing.assert_close(lam1.class_weights, torch.ones(313))


def test_loss_layer_errors(codebook, gen):
    with pytest.raises(ValueError, match="prior or class_weights"):
        RebalancedCrossEntropy(codebook, prior=None)
    with pytest.raises(ValueError, match="not both"):
        RebalancedCrossEntropy(codebook, prior=torch.full((313,), 1 / 313), class_weights=torch.ones(313))
    with pytest.raises(ValueError, match="class_weights must have shape"):
        RebalancedCrossEntropy(codebook, class_weights=torch.ones(5))
    crit = RebalancedCrossEntropy(codebook)
    logits = torch.randn(1, 313, 10, 10, generator=gen)
    with pytest.raises(ValueError, match="cannot be subsampled"):
        crit(logits, torch.zeros(1, 2, 35, 40))
    with pytest.raises(ValueError, match="cannot be subsampled"):
        crit(logits, torch.zeros(1, 2, 40, 20))


def test_gray_images_get_no_weight(codebook, gen):
    crit = RebalancedCrossEntropy(codebook, skip_gray_images=True, reduction="none")
    ab = torch.randn(3, 2, 8, 8, generator=gen) * 30
    ab[1] = ab[1].clamp(-4.9, 4.9)  # an image with no chroma
    assert has_chroma(ab).tolist() == [True, False, True]
    logits = torch.randn(3, 313, 8, 8, generator=gen, requires_grad=True)
    loss = crit(logits, ab)
    assert torch.equal(loss[1], torch.zeros(8, 8)) and (loss[0] > 0).all()
    loss.sum().backward()
    assert torch.equal(logits.grad[1], torch.zeros_like(logits.grad[1]))
    assert logits.grad[0].abs().sum() > 0


def test_subsample_to_matches_strided_slicing(gen):
    x = torch.randn(2, 2, 12, 20, generator=gen)
    assert torch.equal(subsample_to(x, (3, 5)), x[..., ::4, ::4])
    assert subsample_to(x, (12, 20)) is x


@pytest.mark.parametrize("device", DEVICES)
def test_decoder(device, codebook, gen):
    _skip_unsupported(device)
    dec = AnnealedMeanDecoder(codebook, temperature=0.38).to(device)
    logits = torch.randn(2, 313, 6, 5, generator=gen).to(device)
    ab = dec(logits)
    torch.testing.assert_close(ab, ops.annealed_mean(logits, codebook.centres.to(device), 0.38))
    up = dec(logits, size=(24, 20))
    assert up.shape == (2, 2, 24, 20)
    want = torch.nn.functional.interpolate(ab, size=(24, 20), mode="bilinear", align_corners=False)
    torch.testing.assert_close(up, want)
    mode = dec(logits, temperature=0.0)
    torch.testing.assert_close(mode, codebook.centres.to(device)[logits.argmax(1)].permute(0, 3, 1, 2))
    assert "temperature=0.38" in repr(dec)


def test_layers_train_a_tiny_model(codebook):
    """Drop-in use in a training loop: a small conv net fits fixed data."""
    torch.manual_seed(0)
    L = torch.rand(4, 1, 4, 4).repeat_interleave(4, 2).repeat_interleave(4, 3) * 100  # 4x4 blocks
    ab = torch.stack([L[:, 0] * 0.5 - 25, 30 - L[:, 0] * 0.4], 1)  # chroma a function of L
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 16, 3, padding=1, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(16, 313, 1),
    )
    crit, dec = RebalancedCrossEntropy(codebook), AnnealedMeanDecoder(codebook)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = crit(net((L - 50) / 100), ab)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]
    target = ab[..., ::4, ::4]
    with torch.no_grad():
        err_before = (dec(torch.zeros(4, 313, 4, 4)) - target).abs().mean()
        err_after = (dec(net((L - 50) / 100)) - target).abs().mean()
    assert err_after < 0.5 * err_before
