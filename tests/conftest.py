import os
from pathlib import Path

import pytest
import torch

# ../shared beside the repository root (CI has it too).
SHARED = Path(__file__).resolve().parents[2] / "shared"

HAS_CUDA = torch.cuda.is_available()


class CudaDevice(str):
    """"cuda", run by one of the two kernel paths (compiled by nvcc, or the
    JIT's): tests take it as a device string; the fixture below switches the
    path for the test's duration (fastcolor.ops.backend.set_cuda_path)."""

    def __new__(cls, path):
        self = super().__new__(cls, "cuda")
        self.cuda_path = path
        return self


# Every test over DEVICES runs on the CPU and, on a GPU, once per CUDA path
# (CUDA_DEVICES: the GPU only).
CUDA_DEVICES = [pytest.param(CudaDevice("compiled"), id="cuda", marks=pytest.mark.cuda),
                pytest.param(CudaDevice("jit"), id="cuda-jit", marks=pytest.mark.cuda)]
DEVICES = ["cpu", *CUDA_DEVICES]
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _cuda_kernel_path(request):
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    path = getattr(params.get("device"), "cuda_path", None)
    if path is None or not HAS_CUDA:
        yield
        return
    from fastcolor.ops import backend

    before = backend.backend_info()["cuda_path_requested"]
    if backend.set_cuda_path(path) != path:
        backend.set_cuda_path(before)
        pytest.skip(f"no {path} CUDA kernels here: {backend.backend_info()['cuda_path_note']}")
    try:
        yield
    finally:
        backend.set_cuda_path(before)


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


@pytest.fixture(scope="session")
def model_file(tmp_path_factory):
    """A tiny untrained ECCV16 (width 0.125, zhang313, input size 64) as a
    model file, with a random bias on its head so that it predicts colour."""
    from fastcolor import Codebook
    from fastcolor.models import build_model, save_model

    torch.manual_seed(7)
    model = build_model("eccv16", 313, width=0.125)
    with torch.no_grad():
        model.head.bias.normal_(0, 2.0)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(path, model, Codebook.zhang313(), {"input_size": 64, "temperature": 0.38})
    return path


@pytest.fixture
def full_disk(monkeypatch):
    """safetensors writes fail half-way, as on a full disk: a partial file is
    left where the writer was writing, then OSError(ENOSPC)."""
    import errno

    import safetensors.torch

    def broken_save(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x08\x00\x00\x00half a file")
        raise OSError(errno.ENOSPC, "No space left on device (disk full)")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save)
    return monkeypatch


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one CPU thread for a module's tests: tiny training runs on a
    shared, loaded machine spend more in OpenMP barriers than in work, and
    bit-identical resumes need the same thread count everywhere."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def l2_model_file(tmp_path_factory):
    """A tiny untrained L2 model (ColorUNet width 0.25 regressing Lab ab / 100, input size 64)."""
    from fastcolor.models import Regression, build_model, save_model

    torch.manual_seed(7)
    path = tmp_path_factory.mktemp("model") / "l2.safetensors"
    save_model(path, build_model("colorunet", 2, width=0.25), meta={"loss": "l2", "input_size": 64},
               regression=Regression("lab", 100.0))
    return path


@pytest.fixture
def sigint_enabled():
    """SIGINT raised as KeyboardInterrupt in this process, and left to the default in the processes it
    starts, even where the suite itself runs with SIGINT ignored (as a background job of a shell without
    job control): the Ctrl-C tests need a SIGINT that arrives."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
