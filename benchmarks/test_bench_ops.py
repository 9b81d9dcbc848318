"""pytest-benchmark: each op on the CPU (and the GPU if there is one), the
fused kernels against the reference they are tested against.

    pytest benchmarks --benchmark-enable --benchmark-group-by=group
    (the default suite runs these once, as a smoke test, with timing disabled)

benchmarks/bench_ops.py prints the full table, torch.compile included.
"""

import pytest
import torch

from fastcolor import Codebook, imagenet_prior, ops, rebalance_weights, reference

IMPLS = {
    "reference": (reference.rebalanced_cross_entropy, reference.annealed_mean, reference.nearest_bin),
    "fastcolor": (ops.rebalanced_cross_entropy, ops.annealed_mean, ops.nearest_bin),
}
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(scope="module", params=DEVICES)
def data(request):
    device = request.param
    n, h, w = (8, 56, 56) if device == "cpu" else (40, 56, 56)
    g = torch.Generator().manual_seed(0)
    c = Codebook.zhang313().centres.to(device)
    wts = rebalance_weights(imagenet_prior()).to(device)
    z = torch.randn(n, 313, h, w, generator=g).to(device)
    ab = (torch.randn(n, 2, h, w, generator=g) * 40).to(device)
    return device, z, ab, c, wts


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("impl", list(IMPLS))
def test_loss_forward_backward(benchmark, data, impl):
    device, z, ab, c, w = data
    loss_fn = IMPLS[impl][0]
    zg = z.clone().requires_grad_()
    benchmark.group = f"loss fwd+bwd {tuple(z.shape)} {device}"

    def run():
        loss = loss_fn(zg, ab, c, w, k=5, sigma=5.0, reduction="mean")
        torch.autograd.grad(loss, zg)
        _sync(device)

    benchmark(run)


@pytest.mark.parametrize("impl", list(IMPLS))
def test_annealed_mean(benchmark, data, impl):
    device, z, _, c, _ = data
    benchmark.group = f"annealed mean {tuple(z.shape)} {device}"
    fn = IMPLS[impl][1]
    benchmark(lambda: (fn(z, c, 0.38), _sync(device)))


@pytest.mark.parametrize("impl", list(IMPLS))
def test_nearest_bin(benchmark, data, impl):
    device, _, ab, c, _ = data
    benchmark.group = f"nearest bin {tuple(ab.shape)} {device}"
    fn = IMPLS[impl][2]
    benchmark(lambda: (fn(ab, c), _sync(device)))
