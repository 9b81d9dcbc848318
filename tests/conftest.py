import os
from pathlib import Path

import numpy as np
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
    """The 313 bin centres released with the ECCV16 paper."""
    return torch.from_numpy(np.load(SHARED / "reference" / "pts_in_hull.npy")).float()


@pytest.fixture(scope="session")
def zhang_weights():
    """Rebalancing weights from the released ImageNet prior (lambda = 0.5)."""
    p = torch.from_numpy(np.load(SHARED / "reference" / "prior_probs.npy"))
    w = 1.0 / (0.5 * p + 0.5 / p.numel())
    return (w / (p * w).sum()).float()
