import os
from pathlib import Path

import pytest
import torch

# ../shared beside the repository root (CI has it too).
SHARED = Path(__file__).resolve().parents[2] / "shared"

HAS_CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords and not HAS_CUDA:
            item.add_marker(skip)


@pytest.fixture
def gen(request):
    """A generator with a fresh seed per test; the seed is printed so that a
    failure can be replayed (FASTCOLOR_TEST_SEED=<seed>)."""
    seed = int(os.environ.get("FASTCOLOR_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"seed={seed}")
    g = torch.Generator().manual_seed(seed)
    return g


@pytest.fixture(scope="session")
def zhang_centres():
    """The 313 ECCV16 bin centres (test_codebook checks them against the
    released pts_in_hull.npy)."""
    from fastcolor import Codebook

    return Codebook.zhang313().centres


@pytest.fixture(scope="session")
def zhang_weights():
    """Rebalancing weights from the released ImageNet prior (lambda = 0.5)."""
    from fastcolor import imagenet_prior, rebalance_weights

    return rebalance_weights(imagenet_prior(), 0.5)
