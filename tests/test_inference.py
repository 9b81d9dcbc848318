"""fastcolor.inference: Colorizer on tiny untrained models (no training needed)."""

import numpy as np
import pytest
import torch
from PIL import Image

import fastcolor
from fastcolor import Codebook
from fastcolor.color import rgb_to_gray, rgb_to_lab, lab_to_rgb, yuv_to_rgb
from fastcolor.inference import Colorizer, bundled_model_path, resolve_model_path
from fastcolor.models import Regression, build_model, normalize_light, predict_padded, save_model


def _smooth_image(gen, h, w, lo=0.0, hi=1.0):
    """(3, h, w) float RGB in [lo, hi]: a few random blobs, so it has structure."""
    small = torch.rand(1, 3, 4, 5, generator=gen)
    x = torch.nn.functional.interpolate(small, size=(h, w), mode="bicubic", align_corners=False)[0]
    return (lo + (hi - lo) * x).clamp(lo, hi)


def _perturb_head(model, gen, scale):
    """Random head biases, so that the untrained model predicts varied, saturated colours."""
    with torch.no_grad():
        model.head.bias.copy_(torch.randn(model.head.bias.shape, generator=gen) * scale)
        model.head.weight.mul_(4.0)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Two tiny models saved with models.save_model: a ColorUNet on a 32-bin YUV
    codebook (input size 128) and an ECCV16 on zhang313 (input size 96)."""
    gen = torch.Generator().manual_seed(1234)
    folder = tmp_path_factory.mktemp("models")
    photos = [_smooth_image(gen, 48, 64) for _ in range(2)]
    yuv32 = Codebook.from_images(photos, n=32, space="yuv", progress=False)
    unet = build_model("colorunet", 32, width=0.25)
    _perturb_head(unet, gen, 2.0)
    save_model(folder / "unet.safetensors", unet, yuv32, {"temperature": 0.38, "input_size": 128})
    eccv = build_model("eccv16", 313, width=0.125)
    _perturb_head(eccv, gen, 2.0)
    run = folder / "run"
    run.mkdir()
    save_model(run / "model.safetensors", eccv, Codebook.zhang313(), {"temperature": 0.3, "input_size": 96})
    return {"unet": folder / "unet.safetensors", "eccv": run}


@pytest.fixture(scope="module")
def colorizers(models):
    return {name: Colorizer.load(path, device="cpu") for name, path in models.items()}


def test_load_reads_meta_and_run_dirs(models, colorizers):
    unet, eccv = colorizers["unet"], colorizers["eccv"]
    assert (unet.space, len(unet.codebook), unet.input_size, unet.temperature) == ("yuv", 32, 128, 0.38)
    assert (eccv.space, len(eccv.codebook), eccv.input_size, eccv.temperature) == ("lab", 313, 96, 0.3)
    assert eccv.path == models["eccv"] / "model.safetensors"  # a run directory resolves to its model file
    assert "space='lab'" in repr(eccv) and not eccv.model.training
    bare = Colorizer(build_model("colorunet", 32, width=0.25), unet.codebook, {}, device="cpu")
    assert (bare.input_size, bare.temperature, bare.loss) == (256, 0.38, "rebalanced")  # the defaults


def test_missing_models_give_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(fastcolor.inference, "bundled_model_path", lambda: tmp_path / "colorizer.safetensors")
    with pytest.raises(FileNotFoundError, match="colorizer.safetensors.*fastcolor train"):
        Colorizer.load()
    with pytest.raises(FileNotFoundError, match="without a model.safetensors"):
        resolve_model_path(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Colorizer.load(tmp_path / "nope.safetensors")
    assert bundled_model_path().name == "colorizer.safetensors"
    with pytest.raises(ValueError, match="backend"):
        Colorizer.load(tmp_path, backend="cuda")


@pytest.mark.parametrize("name", ["unet", "eccv"])
@pytest.mark.parametrize("size", [(37, 61), (300, 17)])
def test_output_has_input_size_for_every_input_type(colorizers, name, size, gen, tmp_path):
    c = colorizers[name]
    h, w = size
    u8 = (_smooth_image(gen, h, w) * 255).round().to(torch.uint8)
    rgb = u8.float() / 255
    path = tmp_path / "in.png"
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(path)
    inputs = [
        path, str(path), Image.open(path), u8, rgb, rgb[:1], u8.permute(1, 2, 0).numpy(),
        u8[0].numpy(), u8.permute(1, 2, 0).numpy().astype(np.float32) / 255,
    ]
    outs = [c.colorize(x) for x in inputs]
    for r in outs:
        assert r.rgb.shape == (3, h, w) and r.rgb.dtype == torch.uint8 and r.alpha is None
        assert r.chroma.shape == (2, h, w) and r.light.shape == (1, h, w)
    # The same pixels given as a file, a PIL image, uint8 or float, CHW or HWC: the same result.
    for r in outs[1:5] + outs[6:7] + outs[8:]:
        assert torch.equal(r.rgb, outs[0].rgb)


def _check_lightness(result, original_rgb, tol):
    """The output keeps the input's lightness wherever the gamut clip did not act.

    Returns the fraction of pixels checked (those whose unclipped RGB is in gamut)."""
    light, chroma = result.light[None], result.chroma[None]
    x = torch.cat([light, chroma], dim=1)
    unclipped = lab_to_rgb(x, clamp=False) if result.space == "lab" else yuv_to_rgb(x)
    in_gamut = ((unclipped >= -1e-4) & (unclipped <= 1 + 1e-4)).all(dim=1)[0]
    out = result.rgb[None].float() / 255
    if result.space == "lab":
        got, want = rgb_to_lab(out)[0, 0], rgb_to_lab(original_rgb[None])[0, 0]
    else:
        got, want = rgb_to_gray(out)[0, 0] * 255, rgb_to_gray(original_rgb[None])[0, 0] * 255
    torch.testing.assert_close(result.light[0] * (1 if result.space == "lab" else 255), want, atol=1e-3, rtol=0)
    diff = (got - want).abs()
    assert diff[in_gamut].max() < tol, diff[in_gamut].max()
    return in_gamut.float().mean().item()


@pytest.mark.parametrize("name", ["unet", "eccv"])
def test_output_keeps_the_input_lightness(colorizers, name, gen):
    """Mid-range lightness: the colour input is reduced to its lightness, the
    result joins the predicted chroma to it. uint8 rounding moves L by < 0.5."""
    c = colorizers[name]
    rgb = _smooth_image(gen, 83, 121, lo=0.3, hi=0.7)
    # Where the gamut clip acts (saturated chroma at T = 0.38) only the other pixels are checked;
    # at T = 1 (the dull mean) most pixels are in gamut, so the check is not vacuous.
    assert _check_lightness(c.colorize(rgb, temperature=1.0), rgb, tol=1.0) > 0.5
    result = c.colorize(rgb)
    _check_lightness(result, rgb, tol=1.0)
    # Colour and gray versions of the same image (same lightness) give the same result.
    light = result.light[None]
    if c.space == "lab":
        gray = lab_to_rgb(torch.cat([light, torch.zeros_like(light).expand(-1, 2, -1, -1)], dim=1))[0]
    else:
        gray = light[0].expand(3, -1, -1)
    again = c.colorize(gray.clamp(0, 1))
    assert (again.rgb.int() - result.rgb.int()).abs().max() <= 1


def test_gray_palette_alpha_and_16_bit_inputs(colorizers, gen, tmp_path):
    c = colorizers["eccv"]
    h, w = 45, 70
    g = (torch.rand(h, w, generator=gen) * 255).to(torch.uint8).numpy()
    alpha = (torch.rand(h, w, generator=gen) * 255).to(torch.uint8).numpy()
    rgba = np.dstack([np.stack([g, 255 - g, g // 2], axis=2), alpha])

    Image.fromarray(g, "L").save(tmp_path / "gray.png")
    r = c.colorize(tmp_path / "gray.png")
    assert r.rgb.shape == (3, h, w) and r.alpha is None
    _check_lightness(r, torch.from_numpy(g).float().div(255)[None].expand(3, -1, -1), tol=1.0)

    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    for x in (tmp_path / "rgba.png", Image.fromarray(rgba, "RGBA"), torch.from_numpy(rgba).permute(2, 0, 1), rgba):
        r = c.colorize(x)
        assert r.alpha is not None and torch.equal(r.alpha[0], torch.from_numpy(alpha))
    la = c.colorize(torch.from_numpy(np.stack([g, alpha])))  # gray + alpha
    assert torch.equal(la.alpha[0], torch.from_numpy(alpha))

    pal = Image.fromarray(rgba[..., :3], "RGB").quantize(16)
    pal.save(tmp_path / "pal.png")
    r = c.colorize(tmp_path / "pal.png")
    assert r.rgb.shape == (3, h, w) and r.alpha is None
    pal.info["transparency"] = 3
    pal.save(tmp_path / "pal_t.png", transparency=3)
    r = c.colorize(tmp_path / "pal_t.png")
    index = np.asarray(Image.open(tmp_path / "pal_t.png"))
    assert torch.equal(r.alpha[0] == 0, torch.from_numpy(index == 3))

    g16 = (torch.rand(h, w, generator=gen) * 65535).to(torch.int32).numpy().astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    r16 = c.colorize(tmp_path / "g16.png")
    r8 = c.colorize(np.rint(g16 / 257).astype(np.uint8))
    assert r16.rgb.shape == (3, h, w) and torch.equal(r16.rgb, r8.rgb)
    assert c.colorize(g16).rgb.shape == (3, h, w)  # uint16 numpy array


@pytest.mark.parametrize("backend", ["kernels", "reference"])
def test_decode_matches_the_network_at_its_own_size(models, backend, gen):
    """ColorUNet at exactly its input size: no resizing anywhere, so the chroma
    is the annealed mean of the network's logits; T = 0 gives bin centres."""
    c = Colorizer.load(models["unet"], device="cpu", backend=backend)
    rgb = _smooth_image(gen, c.input_size, c.input_size)
    y = rgb_to_gray(rgb[None])
    with torch.no_grad():
        logits = predict_padded(c.model, normalize_light(y, "yuv"))
    centres = c.codebook.centres
    for t in (0.0, 0.38, 1.0):
        r = c.colorize(rgb, temperature=t, return_confidence=True)
        want = fastcolor.reference.annealed_mean(logits, centres, t)[0]
        torch.testing.assert_close(r.chroma, want, atol=1e-5, rtol=1e-5)
    mode = centres[logits[0].argmax(dim=0)].permute(2, 0, 1)
    torch.testing.assert_close(c.colorize(rgb, temperature=0).chroma, mode)
    probs = logits.softmax(dim=1)[0]
    top2 = probs.topk(2, dim=0).values
    torch.testing.assert_close(r.confidence_top, top2[0])
    torch.testing.assert_close(r.confidence_ratio, top2[0] / top2[1])
    assert fastcolor.get_backend() == "kernels"  # the colorizer's choice does not leak out


@pytest.mark.parametrize("name", ["unet", "eccv"])
def test_confidence_maps(colorizers, name, gen):
    r = colorizers[name].colorize(_smooth_image(gen, 51, 29), return_confidence=True)
    c1, c2 = r.confidence_top, r.confidence_ratio
    assert c1.shape == c2.shape == (51, 29)
    assert (c1 > 0).all() and (c1 <= 1).all() and (c2 >= 1).all() and torch.isfinite(c2).all()
    assert colorizers[name].colorize(_smooth_image(gen, 8, 8)).confidence_top is None


def test_temperature_controls_saturation(colorizers, gen):
    c = colorizers["eccv"]
    rgb = _smooth_image(gen, 64, 64)
    sat = [c.colorize(rgb, temperature=t).chroma.norm(dim=0).mean().item() for t in (0.0, 0.38, 1.0, 5.0)]
    assert sat[0] >= sat[1] >= sat[2] >= sat[3]  # T -> 0: the mode (vivid); large T: the mean (dull)


def test_batch_equals_single_images(colorizers, gen):
    c = colorizers["unet"]
    images = [_smooth_image(gen, h, w) for h, w in ((40, 40), (23, 77), (100, 9))]
    batch = c.colorize_batch(images, batch_size=2, return_confidence=True)
    for x, r in zip(images, batch):
        single = c.colorize(x, return_confidence=True)
        assert r.rgb.shape == single.rgb.shape
        assert (r.rgb.int() - single.rgb.int()).abs().max() <= 1
        torch.testing.assert_close(r.confidence_top, single.confidence_top, atol=1e-4, rtol=1e-4)
    assert c.colorize_batch([]) == []


def test_bad_inputs(colorizers):
    c = colorizers["unet"]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        c.colorize(torch.full((3, 8, 8), 2.0))
    with pytest.raises(ValueError, match="1 to 4 channels"):
        c.colorize(torch.zeros(5, 8, 8))
    with pytest.raises(ValueError, match="empty"):
        c.colorize(torch.zeros(3, 0, 8))
    with pytest.raises(TypeError, match="pass a path, a PIL image"):
        c.colorize(12)
    with pytest.raises(ValueError, match="temperature"):
        c.colorize(torch.zeros(3, 8, 8), temperature=-1)
    with pytest.raises(ValueError, match="cannot read image"):
        c.colorize(__file__)


def test_a_non_finite_prediction_is_an_error_not_a_black_image(colorizers, gen):
    """A network whose output holds NaN/inf (weights that overflow) raises instead of returning black."""
    c = colorizers["unet"]
    model = build_model("colorunet", 32, width=0.25)
    with torch.no_grad():
        model.head.bias[5] = float("nan")
    broken = Colorizer(model, c.codebook, {"input_size": 32}, device="cpu")
    with pytest.raises(FloatingPointError, match="the network's output holds NaN/inf values"):
        broken.colorize(_smooth_image(gen, 20, 24))
    with torch.no_grad():
        model.head.bias.fill_(3e38)
        model.head.weight.fill_(3e38)  # finite weights, an overflowing output
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        broken.colorize_batch([_smooth_image(gen, 20, 24)] * 2)
    l2_model = build_model("colorunet", 2, width=0.25)
    with torch.no_grad():
        l2_model.head.weight.zero_()
        l2_model.head.bias.fill_(1e37)  # a finite output, chroma = 100 x output overflows
    l2 = Colorizer(l2_model, None, {"input_size": 32, "regression": Regression("lab")}, device="cpu")
    with pytest.raises(FloatingPointError, match="NaN/inf"):
        l2.colorize(_smooth_image(gen, 20, 24))


@pytest.mark.parametrize("temperature", [-1.0, float("nan"), float("inf")])
def test_a_model_with_a_bad_temperature_is_refused(colorizers, temperature):
    with pytest.raises(ValueError, match="temperature must be a finite number >= 0"):
        Colorizer(build_model("colorunet", 32, width=0.25), colorizers["unet"].codebook,
                  {"temperature": temperature}, device="cpu")


def test_l2_regression_models_output_chroma_directly(tmp_path, gen):
    """loss="l2": the 2-channel output is chroma / regression_scale (fastcolor.train)."""
    model = build_model("colorunet", 2, width=0.25)
    _perturb_head(model, gen, 0.3)
    save_model(tmp_path / "l2.safetensors", model, meta={"loss": "l2", "input_size": 64},
               regression=Regression("lab", 100.0))
    c = Colorizer.load(tmp_path / "l2.safetensors", device="cpu")
    rgb = _smooth_image(gen, 64, 64)
    with torch.no_grad():
        out = predict_padded(c.model, normalize_light(rgb_to_lab(rgb[None])[:, :1], "lab"))
    r = c.colorize(rgb)
    torch.testing.assert_close(r.chroma, out[0] * 100, atol=1e-4, rtol=1e-5)
    assert c.colorize(_smooth_image(gen, 30, 50)).rgb.shape == (3, 30, 50)
    with pytest.raises(ValueError, match="confidence"):
        c.colorize(rgb, return_confidence=True)


@pytest.mark.cuda
def test_cuda_matches_cpu(models, gen):
    cpu = Colorizer.load(models["eccv"], device="cpu")
    gpu = Colorizer.load(models["eccv"], device="cuda")
    assert gpu.device.type == "cuda"
    rgb = _smooth_image(gen, 77, 130)
    a = cpu.colorize(rgb, return_confidence=True)
    b = gpu.colorize(rgb, return_confidence=True)
    assert b.rgb.device.type == "cpu" and b.rgb.shape == a.rgb.shape
    # cuDNN may run the convolutions in TF32: close, not equal.
    assert (a.chroma - b.chroma).abs().mean() < 1.0
    assert (a.confidence_top - b.confidence_top).abs().max() < 0.02
    amp = Colorizer.load(models["eccv"], device="cuda", autocast=True).colorize(rgb)
    assert amp.rgb.shape == a.rgb.shape and torch.isfinite(amp.chroma).all()
    assert (a.chroma - amp.chroma).abs().mean() < 5.0
