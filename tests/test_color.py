"""Tests for fastcolor.color against scikit-image and basic invariants."""
import functools
import warnings

import numpy as np
import pytest
import torch
from skimage import color as skcolor
from skimage import data as skdata

import fastcolor.color.convert as fc
from fastcolor.color import (lab_to_rgb, rgb_to_gray, rgb_to_lab, rgb_to_yuv,
                             yuv_to_rgb)

SEEDS = [0, 1, 2]
# Documented in the rgb_to_lab / lab_to_rgb docstrings (measured 7.7e-5 / 8e-6).
LAB_TOL = {torch.float64: 1e-6, torch.float32: 1.5e-4}
RGB_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}
# skimage's YUV matrix has more digits than BT.601's rounded 0.436 / 0.615
# (max difference ~3e-5 for RGB in [0, 1]).
YUV_TOL = 1e-4
ALL_FUNCS = [rgb_to_lab, lab_to_rgb, rgb_to_yuv, yuv_to_rgb, rgb_to_gray]
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                   reason="CUDA not available")


def sk(fn, t, **kw):
    """Run a skimage conversion on a (..., 3, H, W) tensor, in float64."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lab2rgb warns on clipped negative Z
        return fn(t.detach().cpu().double().numpy(), channel_axis=-3, **kw)


def max_err(out, ref):
    return np.abs(out.detach().cpu().double().numpy() - ref).max()


def random_rgb(seed, shape=(2, 3, 48, 40), lo=-0.1, hi=1.1):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64) * (hi - lo) + lo
    # Exact special values: black, white, the sRGB threshold, just around it.
    special = torch.tensor([0.0, 1.0, 0.04045, 0.04045 + 1e-9, 0.04, -0.0],
                           dtype=torch.float64)
    x.view(-1)[: special.numel()] = special
    return x


def random_lab(seed, shape=(2, 3, 48, 40)):
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    return torch.stack([u[..., 0, :, :] * 100, u[..., 1, :, :] * 255 - 128,
                        u[..., 2, :, :] * 255 - 128], dim=-3)


@functools.lru_cache(maxsize=None)
def photo(name):
    """A uint8 skimage sample photo as (3, H, W) float64 in [0, 1]."""
    return torch.from_numpy(getattr(skdata, name)()).permute(2, 0, 1).double() / 255


# ---------------------------------------------------------------- skimage parity
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", SEEDS)
def test_rgb_to_lab_matches_skimage_random(seed, dtype):
    x = random_rgb(seed).to(dtype)
    assert max_err(rgb_to_lab(x), sk(skcolor.rgb2lab, x)) < LAB_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_rgb_to_lab_matches_skimage_photos(name, dtype):
    x = photo(name).to(dtype)
    assert max_err(rgb_to_lab(x), sk(skcolor.rgb2lab, x)) < LAB_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("seed", SEEDS)
def test_lab_to_rgb_matches_skimage_including_clipping(seed, dtype):
    lab = random_lab(seed).to(dtype)
    ref = sk(skcolor.lab2rgb, lab)
    # The sample must exercise both clips (final RGB and negative f(Z)).
    assert (ref == 0).any() and (ref == 1).any()
    assert ((lab[..., 0, :, :] + 16) / 116 - lab[..., 2, :, :] / 200 < 0).any()
    out = lab_to_rgb(lab)
    assert out.min() >= 0 and out.max() <= 1
    assert max_err(out, ref) < RGB_TOL[dtype]


def test_lab_to_rgb_clamp_false_only_skips_final_clip():
    lab = random_lab(3)
    raw = lab_to_rgb(lab, clamp=False)
    assert raw.min() < 0 and raw.max() > 1
    torch.testing.assert_close(raw.clamp(0, 1), lab_to_rgb(lab), rtol=0, atol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_yuv_matches_skimage(seed):
    x = random_rgb(seed, lo=0.0, hi=1.0)
    assert max_err(rgb_to_yuv(x), sk(skcolor.rgb2yuv, x)) < YUV_TOL
    yuv = torch.from_numpy(sk(skcolor.rgb2yuv, x))
    assert max_err(yuv_to_rgb(yuv), sk(skcolor.yuv2rgb, yuv)) < YUV_TOL


def test_yuv_bt601_coefficients_and_ranges():
    corners = torch.tensor([[r, g, b] for r in (0.0, 1.0) for g in (0.0, 1.0)
                            for b in (0.0, 1.0)], dtype=torch.float64)
    yuv = rgb_to_yuv(corners.T.reshape(3, 8, 1)).reshape(3, 8)
    assert yuv[0].min() == 0 and abs(yuv[0].max() - 1) < 1e-15
    assert abs(yuv[1].abs().max() - 0.436) < 1e-15
    assert abs(yuv[2].abs().max() - 0.615) < 1e-15
    one = torch.eye(3, dtype=torch.float64).reshape(3, 3, 1)  # pure R, G, B
    u = rgb_to_yuv(one)[1].flatten()
    torch.testing.assert_close(u, torch.tensor([-0.14713, -0.28886, 0.436]).double(),
                               atol=1e-5, rtol=0)


def test_gray_is_luma():
    x = random_rgb(0, lo=0.0, hi=1.0)
    y = rgb_to_gray(x)
    assert y.shape == (2, 1, 48, 40)
    torch.testing.assert_close(y, rgb_to_yuv(x)[..., :1, :, :], rtol=0, atol=1e-15)
    ref = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    torch.testing.assert_close(y[:, 0], ref, rtol=0, atol=1e-15)


# ---------------------------------------------------------------- round trips
@pytest.mark.parametrize("seed", SEEDS)
def test_lab_round_trip(seed):
    x = random_rgb(seed, lo=0.0, hi=1.0)
    y = lab_to_rgb(rgb_to_lab(x))
    # The sRGB constants (0.04045 / 12.92 vs 0.0031308) disagree by ~3e-8 at
    # the companding threshold, so only inputs away from it round-trip exactly.
    away = (x - 0.04045).abs() > 1e-6
    torch.testing.assert_close(y[away], x[away], rtol=0, atol=1e-10)
    torch.testing.assert_close(y, x, rtol=0, atol=5e-8)


@pytest.mark.parametrize("seed", SEEDS)
def test_yuv_round_trip(seed):
    x = random_rgb(seed, lo=-0.5, hi=1.5)
    torch.testing.assert_close(yuv_to_rgb(rgb_to_yuv(x)), x, rtol=0, atol=1e-14)
    torch.testing.assert_close(rgb_to_yuv(yuv_to_rgb(x)), x, rtol=0, atol=1e-14)


# ---------------------------------------------------------------- shapes/layout
@pytest.mark.parametrize("fn", ALL_FUNCS, ids=lambda f: f.__name__)
def test_batched_shapes_match_per_image(fn):
    x = random_rgb(0, shape=(2, 4, 3, 7, 5), lo=0.0, hi=1.0)
    if fn is lab_to_rgb:
        x = rgb_to_lab(x)
    out_c = 1 if fn is rgb_to_gray else 3
    out = fn(x)
    assert out.shape == (2, 4, out_c, 7, 5) and out.dtype == x.dtype
    assert fn(x[0]).shape == (4, out_c, 7, 5)
    single = fn(x[1, 2])
    assert single.shape == (out_c, 7, 5)
    torch.testing.assert_close(out[1, 2], single, rtol=0, atol=1e-12)


@pytest.mark.parametrize("fn", ALL_FUNCS, ids=lambda f: f.__name__)
def test_non_contiguous_input(fn):
    base = random_rgb(1, shape=(2, 9, 11, 3), lo=0.0, hi=1.0)  # channels-last
    if fn is lab_to_rgb:
        base = rgb_to_lab(base.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    view = base.permute(0, 3, 1, 2)[:, :, 1::2, ::3]
    assert not view.is_contiguous()
    torch.testing.assert_close(fn(view), fn(view.contiguous()), rtol=0, atol=0)


# ---------------------------------------------------------------- dtypes
# Absolute tolerance vs the float32 result for float16; bfloat16 gets 8x (its
# epsilon is 8x larger). Lab near black amplifies input rounding strongly.
HALF_ATOL = {rgb_to_lab: 0.15, lab_to_rgb: 0.015, rgb_to_yuv: 1e-3,
             yuv_to_rgb: 1e-3, rgb_to_gray: 1e-3}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fn", ALL_FUNCS, ids=lambda f: f.__name__)
def test_low_precision_dtypes(fn, dtype):
    x = random_rgb(2, shape=(2, 3, 32, 32), lo=0.0, hi=1.0).float()
    if fn is lab_to_rgb:
        x = random_lab(2, shape=(2, 3, 32, 32)).float()
    elif fn is yuv_to_rgb:
        x = rgb_to_yuv(x)
    out = fn(x.to(dtype))
    assert out.dtype == dtype
    # Computed in float32 and cast back, not in the low-precision dtype.
    assert torch.equal(out, fn(x.to(dtype).float()).to(dtype))
    atol = HALF_ATOL[fn] * (8 if dtype == torch.bfloat16 else 1)
    torch.testing.assert_close(out.float(), fn(x), rtol=0, atol=atol)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize("fn", ALL_FUNCS, ids=lambda f: f.__name__)
def test_bad_inputs_raise(fn):
    with pytest.raises(ValueError, match=r"3 channels.*got shape \(2, 4, 5, 5\)"):
        fn(torch.rand(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, H, W\).*got shape \(3, 5\)"):
        fn(torch.rand(3, 5))
    with pytest.raises(ValueError, match=r"floating-point.*torch\.uint8.*x\.float\(\) / 255"):
        fn(torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"floating-point.*torch\.int64"):
        fn(torch.zeros(1, 3, 4, 4, dtype=torch.int64))


# ---------------------------------------------------------------- gradients
def test_gradcheck():
    g = torch.Generator().manual_seed(1234)
    rgb = (torch.rand(2, 3, 3, 4, generator=g, dtype=torch.float64) * 1.2 - 0.1)
    lab = random_lab(1234, shape=(2, 3, 3, 4))
    for fn, x in [(rgb_to_lab, rgb), (rgb_to_yuv, rgb), (yuv_to_rgb, rgb),
                  (rgb_to_gray, rgb), (lambda t: lab_to_rgb(t, clamp=False), lab)]:
        assert torch.autograd.gradcheck(fn, (x.requires_grad_(),), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("value", [0.0, 0.04045, 1.0, -0.1])
def test_rgb_to_lab_gradient_finite_at_black_threshold_and_negative(value):
    x = torch.full((1, 3, 2, 2), value, dtype=torch.float64, requires_grad=True)
    rgb_to_lab(x).sum().backward()
    assert torch.isfinite(x.grad).all()
    x32 = torch.full((3, 2, 2), value, requires_grad=True)
    (rgb_to_lab(x32) ** 2).sum().backward()
    assert torch.isfinite(x32.grad).all()


@pytest.mark.parametrize("clamp", [True, False])
def test_lab_to_rgb_gradient_finite_at_black_and_clipped_z(clamp):
    lab = torch.tensor([[0.0, 0.0, 0.0], [50.0, 0.0, 127.0], [100.0, -128.0, 127.0],
                        [0.0, -128.0, -128.0]], dtype=torch.float64)
    lab = lab.T.reshape(3, 4, 1).clone().requires_grad_()
    lab_to_rgb(lab, clamp=clamp).sum().backward()
    assert torch.isfinite(lab.grad).all()


# ---------------------------------------------------------------- devices
@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_matches_skimage(dtype):
    x = random_rgb(0).to("cuda", dtype)
    lab = rgb_to_lab(x)
    assert lab.device.type == "cuda"
    assert max_err(lab, sk(skcolor.rgb2lab, x)) < LAB_TOL[dtype]
    lab_in = random_lab(0).to("cuda", dtype)
    assert max_err(lab_to_rgb(lab_in), sk(skcolor.lab2rgb, lab_in)) < RGB_TOL[dtype]
    xu = x.clamp(0, 1)
    assert max_err(rgb_to_yuv(xu), sk(skcolor.rgb2yuv, xu)) < YUV_TOL
    torch.testing.assert_close(rgb_to_lab(x).cpu(), rgb_to_lab(x.cpu()),
                               rtol=0, atol=LAB_TOL[dtype])


def test_module_exports():
    assert set(fc.__all__) == {f.__name__ for f in ALL_FUNCS}


# ------------------------------------------------------------ colour-space records


def test_color_space_records_match_the_conversions():
    from fastcolor.color import LAB, YUV, color_space

    g = torch.Generator().manual_seed(5)
    rgb = torch.rand(2, 3, 5, 7, generator=g)
    for record, forward in ((LAB, rgb_to_lab), (YUV, rgb_to_yuv)):
        light, chroma = record.split(rgb)
        want = forward(rgb)
        assert torch.equal(light, want[:, :1]) and torch.equal(chroma, want[:, 1:])
        back = record.join(light, chroma)
        assert back.min() >= 0 and back.max() <= 1
        torch.testing.assert_close(back, rgb, atol=1e-4, rtol=0)
        assert color_space(record.name) is record
    assert torch.equal(YUV.lightness(rgb), rgb_to_gray(rgb))
    # join clips to the gamut in both spaces (the plain inverse would not, for YUV)
    far = torch.tensor([0.5, 0.6, -0.6]).view(1, 3, 1, 1)
    assert YUV.join(far[:, :1], far[:, 1:]).max() == 1 and yuv_to_rgb(far).max() > 1
    assert (LAB.normalize_light(torch.tensor([50.0])), YUV.normalize_light(torch.tensor([0.5]))) == (0, 0)
    assert (LAB.gray_threshold, YUV.gray_threshold, LAB.regression_scale, YUV.regression_scale) == (5.0, 0.02, 100.0, 1.0)
    with pytest.raises(ValueError, match="unknown colour space"):
        color_space("hsv")
