import json
import os

import pytest
import safetensors.torch
import torch
import torch.nn.functional as F

from fastcolor import Codebook
from fastcolor import models
from fastcolor.models import (
    ColorUNet,
    ECCV16,
    build_model,
    load_model,
    normalize_light,
    predict_padded,
    save_model,
)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def seeded(gen):
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=gen)))


def small_codebook(gen, n=32):
    return Codebook(torch.rand(n, 2, generator=gen) - 0.5, "yuv", (0.09, 0.13), f"test{n}")


def test_eccv16_parameter_count_and_tiny_forward(gen):
    seeded(gen)
    model = ECCV16()
    # 32.2M, as stated in the paper; the exact count of this layout (biases everywhere, BN in blocks 1-7).
    assert n_params(model) == 32_235_385
    assert model.config == {"arch": "eccv16", "num_bins": 313, "width": 1.0}
    assert (model.output_stride, model.input_multiple) == (4, 8)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 1, 32, 32, generator=gen))
    assert out.shape == (1, 313, 8, 8)
    assert torch.isfinite(out).all()


def test_colorunet_parameter_count(gen):
    seeded(gen)
    model = ColorUNet()
    # The report gives "about 142k" at n = 32; this reading is 4.9% above.
    assert n_params(model) == 148_928
    assert abs(n_params(model) - 142_000) / 142_000 < 0.05
    assert model.config == {"arch": "colorunet", "num_bins": 32, "width": 1.0}
    assert (model.output_stride, model.input_multiple) == (1, 8)


def test_width_rounds_channels_to_multiples_of_eight():
    assert models.networks._channels(64, 1.0) == 64
    assert models.networks._channels(64, 0.3) == 16  # 19.2 -> 16
    assert models.networks._channels(64, 0.32) == 24  # 20.48 -> 24
    assert models.networks._channels(16, 0.25) == 8  # at least 8
    assert models.networks._channels(512, 0.125) == 64
    narrow = ECCV16(num_bins=20, width=0.125)
    widths = {m.out_channels for m in narrow.modules() if isinstance(m, torch.nn.Conv2d)}
    assert widths == {8, 16, 32, 64, 20}
    assert all(c % 8 == 0 for c in widths - {20})


@pytest.mark.parametrize(
    "arch, bins, width, stride", [("eccv16", 313, 0.125, 4), ("colorunet", 32, 0.5, 1)]
)
def test_predict_padded_odd_sizes(gen, arch, bins, width, stride):
    seeded(gen)
    model = build_model(arch, bins, width).eval()
    x = torch.randn(2, 1, 37, 61, generator=gen)
    with torch.no_grad():
        out = predict_padded(model, x)
        assert out.shape == (2, bins, -(-37 // stride), -(-61 // stride))
        # The same as running the model on the replicate-padded input and cropping.
        padded = F.pad(x, (0, 3, 0, 3), mode="replicate")
        assert padded.shape[-2:] == (40, 64)
        ref = model(padded)[..., : out.shape[-2], : out.shape[-1]]
        torch.testing.assert_close(out, ref)
        # Aligned inputs pass through untouched.
        aligned = torch.randn(1, 1, 16, 24, generator=gen)
        torch.testing.assert_close(predict_padded(model, aligned), model(aligned))
        with pytest.raises(ValueError, match="divisible by 8"):
            model(x)
        with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
            model(torch.randn(1, 3, 16, 16))


def test_gradients_reach_every_parameter(gen):
    seeded(gen)
    for model in (ECCV16(num_bins=10, width=0.125), ColorUNet(num_bins=12, width=0.5)):
        x = torch.randn(2, 1, 32, 32, generator=gen)
        logits = model.train()(x)
        target = torch.randint(0, model.num_bins, (2, *logits.shape[-2:]), generator=gen)
        F.cross_entropy(logits, target).backward()
        x.requires_grad_(False)
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_initial_logits_are_moderate(gen):
    # Kaiming init (and BatchNorm in training mode) keeps activations O(1)
    # through the depth: the first logits neither blow up nor collapse.
    seeded(gen)
    for model in (ECCV16(num_bins=16, width=0.25), ColorUNet(num_bins=16)):
        with torch.no_grad():
            out = model.train()(torch.randn(2, 1, 64, 64, generator=gen))
        assert 0.1 < out.std().item() < 10


def test_channels_last(gen):
    seeded(gen)
    for model in (ECCV16(num_bins=24, width=0.125), ColorUNet(num_bins=16, width=0.5)):
        model.eval()
        x = torch.randn(2, 1, 32, 48, generator=gen)
        with torch.no_grad():
            ref = model(x)
            model_cl = model.to(memory_format=torch.channels_last)
            out = model_cl(x.contiguous(memory_format=torch.channels_last))
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


def test_normalize_light():
    L = torch.tensor([0.0, 50.0, 100.0])
    assert torch.equal(normalize_light(L, "lab"), torch.tensor([-0.5, 0.0, 0.5]))
    Y = torch.tensor([0.0, 0.5, 1.0])
    assert torch.equal(normalize_light(Y, "yuv"), torch.tensor([-0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match="space"):
        normalize_light(Y, "hsv")


def test_build_model_validates():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("resnet", 32)
    for bad in (0, -3, 2.5, True, 5000):
        with pytest.raises(ValueError, match="num_bins"):
            build_model("colorunet", bad)
    for bad in (0, -1.0, float("inf"), float("nan"), "wide"):
        with pytest.raises(ValueError, match="width"):
            build_model("colorunet", 32, bad)


def _train_a_little(model, gen):
    """Non-trivial weights and BatchNorm statistics."""
    model.train()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn(p.shape, generator=gen))
        model(torch.randn(2, 1, 16, 16, generator=gen))
    return model.eval()


@pytest.mark.parametrize("arch, bins, width", [("colorunet", 32, 0.5), ("eccv16", 313, 0.125)])
def test_save_load_round_trip(tmp_path, gen, arch, bins, width):
    seeded(gen)
    model = _train_a_little(build_model(arch, bins, width), gen)
    codebook = Codebook.zhang313() if bins == 313 else small_codebook(gen, bins)
    weights = torch.rand(bins, generator=gen) + 0.5
    meta = {"temperature": 0.38, "input_size": 256, "training": {"steps": 12, "loss": [1.5, 1.25]}}
    path = tmp_path / "model.safetensors"
    save_model(path, model, codebook, meta, class_weights=weights)

    loaded, cb, meta2 = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert not loaded.training
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert sd[k].dtype == sd2[k].dtype and torch.equal(sd[k], sd2[k]), k
    assert cb == codebook
    assert torch.equal(meta2.pop("class_weights"), weights)
    assert meta2 == meta
    x = torch.randn(1, 1, 16, 16, generator=gen)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))

    # The file holds what the agreed format says.
    with safetensors.safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["fastcolor"])
        keys = set(f.keys())
    assert header["network"] == model.config and header["meta"] == meta
    assert header["head"] == {"kind": "classification", "codebook": codebook.to_header()}
    assert keys == {f"model.{k}" for k in sd} | {"codebook.centres", "class_weights"}


def test_save_without_class_weights_and_meta_tensor(tmp_path, gen):
    seeded(gen)
    model, codebook = ColorUNet(16, width=0.25), small_codebook(gen, 16)
    save_model(tmp_path / "a.safetensors", model, codebook, {})
    assert load_model(tmp_path / "a.safetensors")[2] == {}
    w = torch.rand(16, generator=gen)
    save_model(tmp_path / "b.safetensors", model, codebook, {"class_weights": w, "T": 0.1})
    meta = load_model(tmp_path / "b.safetensors")[2]
    assert torch.equal(meta.pop("class_weights"), w) and meta == {"T": 0.1}


def test_save_model_validates(tmp_path, gen):
    model, path = ColorUNet(16, width=0.25), tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match="16"):
        save_model(path, model, small_codebook(gen, 32), {})
    with pytest.raises(ValueError, match="exactly one"):
        save_model(path, model, small_codebook(gen, 16), {}, regression="lab")
    with pytest.raises(ValueError, match="exactly one"):
        save_model(path, model, None, {})
    with pytest.raises(ValueError, match="2 output channels"):
        save_model(path, model, meta={}, regression="lab")
    with pytest.raises(ValueError, match="finite"):
        save_model(path, model, small_codebook(gen, 16), {"temperature": float("nan")})
    with pytest.raises(ValueError, match="JSON"):
        save_model(path, model, small_codebook(gen, 16), {"when": object()})
    with pytest.raises(ValueError, match="fastcolor model"):
        save_model(path, torch.nn.Conv2d(1, 16, 1), small_codebook(gen, 16), {})
    with pytest.raises(ValueError, match="class_weights"):
        save_model(path, model, small_codebook(gen, 16), {}, class_weights=torch.ones(3))
    assert not path.exists()


def test_load_model_rejects_other_files(tmp_path, gen):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(os.urandom(100))
    with pytest.raises(ValueError, match="not a fastcolor model"):
        load_model(junk)
    cb_file = tmp_path / "codebook.safetensors"
    small_codebook(gen).save(cb_file)
    with pytest.raises(ValueError, match="not a fastcolor model"):
        load_model(cb_file)
    plain = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(3)}, str(plain))
    with pytest.raises(ValueError, match="not a fastcolor model"):
        load_model(plain)
    # Right format tag, damaged header or weights.
    bad = tmp_path / "bad.safetensors"
    safetensors.torch.save_file(
        {"w": torch.zeros(3)}, str(bad), metadata={"format": "fastcolor.model", "version": "1", "fastcolor": "{"}
    )
    with pytest.raises(ValueError, match="damaged"):
        load_model(bad)
    header = json.dumps({"config": {"arch": "colorunet", "num_bins": 8, "width": 0.25}, "space": "yuv",
                         "codebook_name": None, "grid_step": [0.1, 0.1]})
    safetensors.torch.save_file(
        {"codebook.centres": torch.zeros(8, 2), "model.head.weight": torch.zeros(8, 8, 1, 1)},
        str(bad), metadata={"format": "fastcolor.model", "version": "1", "fastcolor": header},
    )
    with pytest.raises(ValueError, match="do not fit"):
        load_model(bad)


def test_save_is_atomic(tmp_path, gen, request):
    seeded(gen)
    codebook = small_codebook(gen, 16)
    old = ColorUNet(16, width=0.25)
    path = tmp_path / "model.safetensors"
    save_model(path, old, codebook, {"version": "old"})
    before = path.read_bytes()

    full_disk = request.getfixturevalue("full_disk")
    with pytest.raises(OSError, match="disk full"):
        save_model(path, ColorUNet(16, width=0.25), codebook, {"version": "new"})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]  # no temporary file left behind
    full_disk.undo()
    model, _, meta = load_model(path)
    assert meta == {"version": "old"}
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), old.state_dict().values()))


@pytest.mark.cuda
def test_cuda_bf16_channels_last_and_map_location(tmp_path, gen):
    seeded(gen)
    model = ECCV16(num_bins=313, width=0.25).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(4, 1, 64, 64, generator=gen).cuda().contiguous(memory_format=torch.channels_last)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits = model(x)
    assert logits.shape == (4, 313, 16, 16) and logits.is_contiguous(memory_format=torch.channels_last)
    logits.float().logsumexp(1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    path = tmp_path / "m.safetensors"
    save_model(path, model, Codebook.zhang313(), {"T": 0.38})
    loaded, codebook, _ = load_model(path, map_location="cuda")
    assert next(loaded.parameters()).is_cuda and codebook.device.type == "cuda"
    with torch.no_grad():
        # fp32 convolutions may run on TF32 tensor cores with layout-dependent
        # algorithms: equal up to TF32 rounding, not bit for bit.
        torch.testing.assert_close(loaded(x), model.eval()(x), rtol=1e-2, atol=1e-2)
