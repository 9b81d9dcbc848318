"""Colour hints and palettes acting on the predicted distribution (fastcolor.hints)."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastcolor import Codebook
from fastcolor.cli import main
from fastcolor.color.spaces import color_space
from fastcolor.hint_maps import point_lightness, seed_cells, seed_lightness
from fastcolor.hint_refine import box_mean, guided_filter
from fastcolor.hints import (Hint, HintOptions, Palette, local_contrast, project_to_palette, shading_ratio, steer_logits,
                             weight_maps)
from fastcolor.inference import Colorizer
from fastcolor.models import Regression, build_model


@pytest.fixture(scope="module")
def colorizer():
    torch.manual_seed(7)
    model = build_model("eccv16", 313, width=0.125)
    with torch.no_grad():
        model.head.bias.normal_(0, 2.0)
    return Colorizer(model, Codebook.zhang313(), {"input_size": 64, "temperature": 0.38}, device="cpu",
                     backend="reference")


def _two_regions(h=64, w=96):
    """Dark left half, bright right half: a strong lightness edge at x = w/2."""
    img = torch.full((3, h, w), 0.25)
    img[:, :, w // 2:] = 0.8
    return img


def _ab(hex_colour):
    rgb = torch.tensor([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=torch.float32)
    return color_space("lab").chroma(rgb[None, :, None, None] / 255)[0, :, 0, 0]


def test_no_hints_is_bit_identical(colorizer):
    img = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0))
    plain = colorizer.colorize(img)
    for steered in (colorizer.colorize(img, hints=[]), colorizer.colorize(img, hints=None, palette=None)):
        assert torch.equal(plain.rgb, steered.rgb) and torch.equal(plain.chroma, steered.chroma)


def test_edge_aware_hint_stays_on_its_side(colorizer):
    img = _two_regions()
    plain = colorizer.colorize(img)
    changes = {}
    variants = (("edge", {}), ("grid", {"full_resolution": False}), ("gaussian", {"propagation": "gaussian"}))
    for name, options in variants:
        # the shipped defaults (radius 0.32, edge sensitivity 1): a 0.55 lightness step costs
        # 0.55 shorter sides, the hint at x = 10 is 0.35 of a side from the edge
        out = colorizer.colorize(img, hints=[(10, 32, "#20a020")], hint_options=options)
        changes[name] = (out.chroma - plain.chroma).norm(dim=0)
    # near the hint, all change the colour a lot
    assert all(changes[name][32, 10] > 30 for name in changes)
    assert changes["edge"][32, 40] > 30 and changes["grid"][32, 40] > 30  # the dark region (same lightness) is filled
    # across the edge (x = 48): the edge-aware falloff leaves the bright side alone, the Gaussian does not
    assert changes["grid"][:, 60:].max() < 1.0
    assert changes["gaussian"][32, 60] > 30
    # full resolution: the guided filter's windows (2 logit cells of 6 pixels: radius 12, reach 24 past
    # the grid's own bleed of a pixel or two) let a faint trace over the edge, far below the grid's
    # bleed into the first bright column
    assert changes["edge"][:, 48:].max() < 0.5 * changes["grid"][:, 48].max()
    assert changes["edge"][:, 60:].max() < 3.0 and changes["edge"][:, 48 + 28:].max() < 1e-3
    # and the hint fills the dark side up to the edge, where the grid's upsampling fades it
    assert (changes["edge"][:, 47] > changes["grid"][:, 47] + 3).all()


def test_full_resolution_hint_follows_an_edge_inside_a_cell(colorizer):
    """A lightness edge at x = 51, inside a logit cell (the cells are 6 pixels wide: 48..53): a hint
    on the bright side colours it up to the edge at full resolution and stops there within a pixel;
    the grid's bilinear upsampling spreads the step over the whole cell and beyond."""
    img = torch.full((3, 64, 96), 0.2)
    img[:, :, 51:] = 0.85
    plain = colorizer.colorize(img)
    ch = {}
    for full in (True, False):
        out = colorizer.colorize(img, hints=[(75, 32, "#2040d0")], hint_options={"full_resolution": full})
        ch[full] = (out.chroma - plain.chroma).norm(dim=0)[8:56].mean(0)  # per column, away from the borders
    assert ch[True][51] - ch[True][50] > 30 and ch[False][51] - ch[False][50] < 10  # a sharp step at the edge
    assert ch[True][51:55].mean() > ch[False][51:55].mean() + 10  # the bright side of the cell is filled
    assert ch[True][48:51].mean() < 0.5 * ch[False][48:51].mean()  # the dark side of the cell much less touched


def test_no_hints_unchanged_whatever_the_options(colorizer):
    img = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(3))
    plain = colorizer.colorize(img)
    for options in ({"full_resolution": True}, {"full_resolution": False}, {"propagation": "gaussian"}):
        out = colorizer.colorize(img, hints=[], hint_options=options)
        assert torch.equal(plain.rgb, out.rgb) and torch.equal(plain.chroma, out.chroma)


def test_strong_hint_reaches_its_colour_at_t0(colorizer):
    img = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(1))
    for colour in ("#20a020", "#c02020", "#2040d0"):
        out = colorizer.colorize(img, temperature=0, hints=[Hint.point(30, 20, colour, strength=500)])
        target = _ab(colour)
        # T = 0 decodes the mode: the bin nearest the hint colour (bins 10 apart: within a half diagonal)
        assert (out.chroma[:, 20, 30] - target).norm() < 7.5, colour


def test_gaussian_falls_off_with_distance(colorizer):
    img = torch.full((3, 64, 64), 0.5)
    plain = colorizer.colorize(img)
    out = colorizer.colorize(img, hints=[(8, 8, "#c02020")], hint_options=HintOptions("gaussian", radius=0.1))
    d = (out.chroma - plain.chroma).norm(dim=0)
    assert d[8, 8] > 30 and d[56, 56] < 1e-3


def test_stroke(colorizer):
    img = torch.full((3, 64, 64), 0.5)
    plain = colorizer.colorize(img)
    stroke = {"points": [[4, 32], [60, 32]], "color": "#2040d0"}
    out = colorizer.colorize(img, hints=[stroke], hint_options={"radius": 0.05})
    d = (out.chroma - plain.chroma).norm(dim=0)
    assert d[32, 4:60].min() > 30  # along the whole stroke
    assert d[2, 32] < 1e-3 and d[62, 32] < 1e-3  # not far off it


def _shares_check(w, shares):
    reached = w.sum(0) > 0
    assert ((shares >= 0) & (shares <= 1 + 1e-6)).all()
    assert torch.allclose(shares.sum(0)[reached], torch.ones(int(reached.sum())), atol=1e-5)


def test_edge_shares_follow_lightness():
    # dark | bright | dark: the right dark band is nearer (geodesically) to the blue hint on the
    # bright band, but looks like the red hint's cells: the lightness term gives it to red
    light = torch.full((16, 24), 0.8)
    light[:, :8] = 0.25
    light[:, 16:] = 0.25
    hints = [Hint.point(10, 32, "#c02020"), Hint.point(48, 32, "#2040d0")]
    w, shares = weight_maps(hints, light, (64, 96), HintOptions(radius=1.0))
    w0, shares0 = weight_maps(hints, light, (64, 96), HintOptions(radius=1.0, lightness_sigma=0, contrast_sigma=0))
    _shares_check(w, shares)
    _shares_check(w0, shares0)
    assert torch.equal(w, w0)  # the shares do not change the falloffs
    assert shares[0][:, 18:].min() > 0.99
    assert shares0[1][:, 18:].min() > 0.5
    assert shares[1][:, 9:15].min() > 0.99 and shares[0][:, :7].min() > 0.99  # each keeps its own band
    # the Gaussian shares know nothing of the photo: nearer wins, whatever the lightness
    wg, sg = weight_maps(hints, light, (64, 96), HintOptions("gaussian", radius=1.0))
    _shares_check(wg, sg)
    assert sg[1][:, 18:].min() > 0.5


def test_edge_shares_follow_local_contrast():
    # the same mean lightness everywhere; a checkerboard texture on the left and right thirds
    full = torch.full((64, 96), 0.5)
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(96), indexing="ij")
    checker = torch.where((yy + xx) % 2 == 0, 0.3, 0.7)
    full = torch.where((xx < 32) | (xx >= 64), checker, full)
    grid = (16, 24)
    light = torch.nn.functional.interpolate(full[None, None], size=grid, mode="area")[0, 0]
    contrast = local_contrast(full, grid)
    assert torch.allclose(contrast[:, :6], torch.full((16, 6), 0.2), atol=1e-5)
    assert contrast[:, 10:14].abs().max() < 1e-5
    hints = [Hint.point(10, 32, "#c02020"), Hint.point(48, 32, "#2040d0")]
    w, shares = weight_maps(hints, light, (64, 96), HintOptions(radius=1.0), contrast)
    _, shares0 = weight_maps(hints, light, (64, 96), HintOptions(radius=1.0, contrast_sigma=0), contrast)
    _shares_check(w, shares)
    assert shares[0][:, 20:].min() > 0.99  # the right texture goes to the hint on the left texture
    assert shares0[1][:, 20:].min() > 0.5  # without the contrast term, to the nearer flat-region hint


@pytest.mark.parametrize("shading", [False, True])
def test_gaussian_is_the_product_of_kernels(shading):
    # shares = falloffs (all hints within 3 r): p <- p * prod_k K_k ^ w_k, renormalised, the kernel of
    # hint k centred on its chroma times its shading factor rho_k at the cell (1 without shading)
    codebook = Codebook.zhang313()
    g = torch.Generator().manual_seed(11)
    logits = torch.randn(1, len(codebook), 12, 18, generator=g) * 3
    light = torch.rand(1, 1, 48, 72, generator=g) - 0.5
    hints = [Hint.point(5, 7, "#c02020"), Hint.point(40, 30, "#2040d0", strength=2.5),
             Hint.stroke([(60, 5), (70, 40)], "#20a020")]
    options = HintOptions("gaussian", radius=1.0, shading=shading)
    steered = steer_logits(logits, light, [(48, 72)], [hints], None, codebook, options)
    lg = torch.nn.functional.interpolate(light, size=(12, 18), mode="area")[0, 0]
    w, _ = weight_maps(hints, lg, (48, 72), options)
    ab = torch.stack([_ab("#c02020"), _ab("#2040d0"), _ab("#20a020")])
    rho = shading_ratio(lg, seed_lightness(hints, lg, (48, 72)), color_space("lab")) if shading else torch.ones(3, 12, 18)
    assert (rho != 1).any() == shading
    target = (rho[:, None] * ab[:, :, None, None]).double()  # (K, 2, h, w)
    sq = (codebook.centres.double()[None, :, :, None, None] - target[:, None]).pow(2).sum(2)  # (K, Q, h, w)
    lk = -sq / (2 * options.kernel_sigma(codebook) ** 2)
    expected = logits.double() + (w.double()[:, None] * lk).sum(0)[None]
    assert torch.allclose(torch.softmax(steered.double(), 1), torch.softmax(expected, 1), atol=1e-5)


def _srgb(linear):
    return torch.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear.clamp_min(0) ** (1 / 2.4) - 0.055)


@pytest.mark.parametrize("name", ["lab", "yuv"])
def test_shading_ratio_is_the_chroma_change_under_illumination(name):
    # a surface colour lit s times less (linear RGB times s): its chroma changes by the ratio the
    # lightness gives, (L* + 16) / (L*_k + 16) in Lab (exact on the cube-root branch); Y'/Y'_k in YUV
    # for the gamma-encoded colour times s
    space = color_space(name)
    linear = torch.tensor([0.5, 0.2, 0.06])
    if name == "lab":
        scales = torch.tensor([1.0, 0.7, 0.45, 0.3])  # chroma ratio s^(1/3): 0.67 at 0.3
        rgb = _srgb(scales[:, None] * linear[None])
    else:
        scales = torch.tensor([1.0, 0.8, 0.6])  # chroma ratio s (within [1/2, 2])
        rgb = scales[:, None] * _srgb(linear)[None]
    light, chroma = space.split(rgb.t()[None, :, :, None])  # (1, 1, 4, 1), (1, 2, 4, 1)
    x = space.normalize_light(light)[0, 0]  # (4, 1): the network input's lightness
    rho = shading_ratio(x, x[:1, 0], space)[0]  # the lit colour as the hint
    expected = chroma[0, :, :, 0] / chroma[0, :, :1, 0]  # (2, S): each chroma component's ratio
    assert torch.allclose(rho[:, 0][None].expand(2, -1), expected, rtol=1e-3), (rho[:, 0], expected)
    assert rho[-1, 0] < 0.75
    # kept within [1/2, 2]
    assert torch.allclose(shading_ratio(torch.tensor([[-0.5, 0.5]]), torch.tensor([0.0]), space)[0],
                          torch.tensor([[0.5, 2.0]]) if name == "yuv" else torch.tensor([[0.5, 116 / 66]]))


@pytest.mark.parametrize("shading", [True, False])
def test_hint_fills_a_shaded_region(shading):
    # a lightness ramp (one object, lit from the right) and nothing else; uniform predicted
    # distribution: with a strong, wide hint the steered mean chroma is the target, the hint's a*b*
    # times (L* + 16) / (L*_k + 16) across the ramp (the hint's own cell: its a*b*), or its a*b* as it is
    codebook = Codebook.zhang313()
    h, w = 8, 32
    lstar = torch.linspace(35, 75, w).expand(h, w)
    light = ((lstar - 50) / 100)[None, None]
    logits = torch.zeros(1, len(codebook), h, w)
    colour = "#b04a30"
    options = HintOptions(radius=10.0, edge_sensitivity=0.0, shading=shading)
    steered = steer_logits(logits, light, [(h, w)], [[Hint.point(16, 4, colour)]], None, codebook, options)
    p = torch.softmax(steered.double(), 1)[0]
    mean = torch.einsum("qhw,qc->chw", p, codebook.centres.double())  # (2, h, w)
    ab = _ab(colour).double()
    if shading:
        rho = (lstar.double() + 16) / (float(lstar[4, 16]) + 16)
        assert rho[0, 0] < 0.85 and rho[0, -1] > 1.15
    else:
        rho = torch.ones(h, w, dtype=torch.float64)
    assert (mean - rho[None] * ab[:, None, None]).norm(dim=0).max() < 1.0


def test_palette_restrict_guarantee(colorizer):
    img = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(2))
    palette = ["#c02020", "#2040d0", "#e0c080"]
    targets = torch.stack([_ab(c) for c in palette])
    for t in (0.0, 0.38, 1.0):
        for distance in (None, 8.0, 25.0):
            out = colorizer.colorize(img, temperature=t, palette=Palette(palette, distance=distance))
            dist = 15.0 if distance is None else distance
            d = (out.chroma[None] - targets[:, :, None, None]).norm(dim=1).amin(0)
            assert d.max() <= dist + 1e-4, (t, distance, d.max())


def test_palette_bias_and_parse(colorizer):
    img = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(3))
    plain = colorizer.colorize(img)
    biased = colorizer.colorize(img, palette=Palette.parse("#2040d0", mode="bias", strength=3))
    target = _ab("#2040d0")
    before = (plain.chroma - target[:, None, None]).norm(dim=0).mean()
    after = (biased.chroma - target[:, None, None]).norm(dim=0).mean()
    assert after < before - 10
    with pytest.raises(ValueError, match="neither"):
        Palette.parse("#12345,red")
    with pytest.raises(ValueError, match="no codebook bin within"):
        colorizer.colorize(img, palette=Palette(["#00ff00"], distance=0.5))


def test_palette_from_image(colorizer, tmp_path):
    arr = np.zeros((20, 30, 3), dtype=np.uint8)
    arr[:, :15] = (200, 30, 30)
    arr[:, 15:] = (30, 60, 210)
    Image.fromarray(arr).save(tmp_path / "pal.png")
    palette = Palette.parse(str(tmp_path / "pal.png"), k=4)
    chroma = palette.chroma(Codebook.zhang313())
    assert chroma.shape == (2, 2)  # only two bins occur
    for colour in ("#c81e1e", "#1e3cd2"):
        assert (chroma - _ab(colour)).norm(dim=1).min() < 7.5
    out = colorizer.colorize(torch.rand(3, 30, 30), palette=palette)
    d = (out.chroma[None] - chroma[:, :, None, None]).norm(dim=1).amin(0)
    assert d.max() <= 15.0 + 1e-4


def test_l2_model_refuses_hints():
    model = build_model("colorunet", 2, width=0.25)
    l2 = Colorizer(model, None, {"loss": "l2", "input_size": 64, "regression": Regression("lab", 100.0)},
                   device="cpu")
    img = torch.rand(3, 32, 32)
    for kwargs in ({"hints": [(1, 1, "#ff0000")]}, {"palette": "#ff0000"}):
        with pytest.raises(ValueError, match="loss='l2'"):
            l2.colorize(img, **kwargs)


@pytest.mark.parametrize("hint, match", [
    ((64, 10, "#ff0000"), r"hint 0 \(64,10,#ff0000\) lies outside the image"),
    ((-1, 10, "#ff0000"), "outside the image"),
    ((10, 10, "#ff00"), "not a colour"),
    ((10, 10, "red"), "not a colour"),
    ((float("nan"), 10, "#ff0000"), "finite"),
    ((10, float("inf"), "#ff0000"), "finite"),
    ({"x": 1, "color": "#ff0000"}, "y must be a number"),
    ({"points": [[1, 1]], "x": 1, "color": "#ff0000"}, "write"),
    ("10,10,#ff0000", "a hint is"),
])
def test_bad_hints(colorizer, hint, match):
    with pytest.raises(ValueError, match=match):
        colorizer.colorize(torch.rand(3, 32, 64), hints=[hint])


def test_bad_options(colorizer):
    with pytest.raises(ValueError, match="propagation"):
        HintOptions(propagation="diffuse")
    with pytest.raises(ValueError, match="radius"):
        HintOptions(radius=0)
    with pytest.raises(ValueError, match="shading must be True or False"):
        HintOptions(shading="yes")
    with pytest.raises(ValueError, match="palette mode"):
        Palette(["#ff0000"], mode="only")
    with pytest.raises(ValueError, match="one list of hints per image"):
        colorizer.colorize_batch([torch.rand(3, 8, 8)] * 2, hints=[[(1, 1, "#ff0000")]])


def test_a_batch_mixing_hinted_and_plain_images_is_each_image_alone(colorizer):
    g = torch.Generator().manual_seed(int(torch.randint(0, 2**31 - 1, ())))
    images = [torch.rand(3, 37, 53, generator=g) for _ in range(3)]
    hints = [[], [(10, 20, "#ff0000"), (40, 30, "#00ff00")], []]
    batch = colorizer.colorize_batch(images, hints=hints)
    unrefined = colorizer.colorize(images[1], hints=hints[1], hint_options=HintOptions(full_resolution=False)).rgb
    assert int((batch[1].rgb.int() - unrefined.int()).abs().max()) > 1  # the refinement shows
    for result, image, image_hints in zip(batch, images, hints):
        alone = colorizer.colorize(image, hints=image_hints or None).rgb
        # the network run on a batch of three or of one rounds a few values differently: 1 level at most
        diff = (result.rgb.int() - alone.int()).abs()
        assert int(diff.max()) <= 1 and int((diff > 0).sum()) <= 20, (len(image_hints), int(diff.max()))


def test_projection_keeps_close_points():
    targets = torch.tensor([[0.0, 0.0], [40.0, 0.0]])
    chroma = torch.tensor([[[[5.0, 20.0, 41.0]], [[0.0, 0.0, 3.0]]]])  # (1, 2, 1, 3)
    out = project_to_palette(chroma, targets, 10.0)
    assert torch.equal(out[..., 0], chroma[..., 0]) and torch.equal(out[..., 2], chroma[..., 2])
    assert (out[0, :, 0, 1] - targets[0]).norm() <= 10.0


def test_exif_rotated_coordinates(colorizer, tmp_path):
    """A 40 x 80 (h x w) file with orientation 6 displays as 80 x 40: hints use the displayed pixels."""
    arr = np.full((40, 80), 60, dtype=np.uint8)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rot.png", exif=exif)
    path = str(tmp_path / "rot.png")
    plain = colorizer.colorize(path)
    assert plain.size == (80, 40)
    out = colorizer.colorize(path, hints=[(5, 70, "#c02020")], hint_options={"propagation": "gaussian",
                                                                            "radius": 0.2})
    d = (out.chroma - plain.chroma).norm(dim=0)
    assert d[70, 5] > 30 and d[5, 35] < 1e-3
    with pytest.raises(ValueError, match="outside the image"):
        colorizer.colorize(path, hints=[(70, 5, "#c02020")])  # inside the stored 80 x 40, not the displayed


# ------------------------------------------------------------------ the command line


def _gray(path, h=32, w=48, left=60, right=200):
    arr = np.full((h, w), left, dtype=np.uint8)
    arr[:, w // 2:] = right
    Image.fromarray(arr).save(path)
    return path


def _read(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def test_cli_hint_and_palette(model_file, tmp_path):
    src = _gray(tmp_path / "a.png")
    assert main(["colorize", str(src), "-o", str(tmp_path / "plain"), "--model", str(model_file)]) == 0
    assert main(["colorize", str(src), "-o", str(tmp_path / "hint"), "--model", str(model_file),
                 "--hint", "5,16,#20c020", "--hint", "40,16,#c02020", "--hint-radius", "0.3"]) == 0
    plain, hinted = _read(tmp_path / "plain" / "a.png"), _read(tmp_path / "hint" / "a.png")
    assert np.abs(plain[16, 5] - hinted[16, 5]).sum() > 20
    assert hinted[16, 5, 1] > hinted[16, 5, 0] and hinted[16, 40, 0] > hinted[16, 40, 1]
    assert main(["colorize", str(src), "-o", str(tmp_path / "pal"), "--model", str(model_file),
                 "--palette", "#c02020,#2040d0", "--propagation", "gaussian"]) == 0
    pal = _read(tmp_path / "pal" / "a.png")
    assert not np.array_equal(pal, plain)


def test_cli_hint_shading(model_file, tmp_path):
    # a lightness ramp, one hint in the lit middle: the shading (default) gives the darker part a
    # weaker chroma than the hint's; --no-hint-shading gives it the hint's chroma as it is
    ramp = np.tile(np.linspace(40, 220, 64).astype(np.uint8), (32, 1))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    outs = {}
    for flag in ([], ["--hint-shading"], ["--no-hint-shading"]):
        name = flag[0][2:] if flag else "default"
        assert main(["colorize", str(tmp_path / "ramp.png"), "-o", str(tmp_path / name), "--model", str(model_file),
                     "--hint", "40,16,#c02020", "--hint-radius", "2", *flag]) == 0
        rgb = torch.from_numpy(_read(tmp_path / name / "ramp.png")).permute(2, 0, 1).float()[None] / 255
        outs[name] = color_space("lab").chroma(rgb)[0].norm(dim=0)  # (h, w) chroma magnitude
    assert torch.equal(outs["default"], outs["hint-shading"])
    assert outs["default"][16, 5] < outs["no-hint-shading"][16, 5] - 5


def _colorize_file(model_file, tmp_path, name):
    assert main(["colorize", str(tmp_path / name), "-o", str(tmp_path / "plain"), "--model", str(model_file)]) == 0
    rgb = torch.from_numpy(_read(tmp_path / "plain" / name)).permute(2, 0, 1).float()[None] / 255
    return color_space("lab").chroma(rgb)[0]


def test_cli_hint_full_resolution(model_file, tmp_path):
    # a lightness edge inside a logit cell, a hint on its bright side: with the full-resolution step
    # (default) the dark pixels next to the edge keep less of the hinted colour than without it
    img = np.full((32, 64), 50, np.uint8)
    img[:, 35:] = 215
    Image.fromarray(img).save(tmp_path / "edge.png")
    outs = {}
    for flag in ([], ["--hint-full-resolution"], ["--no-hint-full-resolution"]):
        name = flag[0][2:] if flag else "default"
        assert main(["colorize", str(tmp_path / "edge.png"), "-o", str(tmp_path / name), "--model", str(model_file),
                     "--hint", "50,16,#2040d0", *flag]) == 0
        rgb = torch.from_numpy(_read(tmp_path / name / "edge.png")).permute(2, 0, 1).float()[None] / 255
        outs[name] = color_space("lab").chroma(rgb)[0]  # (2, h, w)
    plain = _colorize_file(model_file, tmp_path, "edge.png")
    change = {k: (v - plain).norm(dim=0)[4:28].mean(0) for k, v in outs.items()}  # per column
    assert torch.equal(outs["default"], outs["hint-full-resolution"])
    assert change["default"][31:35].mean() < change["no-hint-full-resolution"][31:35].mean() - 3


def test_cli_hints_json(model_file, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    a, b = _gray(folder / "a.png"), _gray(folder / "b.png")
    hints = tmp_path / "hints.json"
    hints.write_text(json.dumps({"a.png": [[5, 16, "#20c020"], {"points": [[30, 4], [40, 28]], "color": "#c02020"}]}))
    assert main(["colorize", str(folder), "-o", str(tmp_path / "plain"), "--model", str(model_file)]) == 0
    assert main(["colorize", str(folder), "-o", str(tmp_path / "out"), "--model", str(model_file),
                 "--hints", str(hints)]) == 0
    assert not np.array_equal(_read(tmp_path / "out" / "a.png"), _read(tmp_path / "plain" / "a.png"))
    assert np.array_equal(_read(tmp_path / "out" / "b.png"), _read(tmp_path / "plain" / "b.png"))
    capsys.readouterr()
    # a key naming no input, a bad hint, --hint with several inputs: one error line, exit 2
    hints.write_text(json.dumps({"c.png": [[5, 16, "#20c020"]]}))
    assert main(["colorize", str(folder), "-o", str(tmp_path / "x"), "--model", str(model_file),
                 "--hints", str(hints)]) == 2
    assert "c.png" in capsys.readouterr().err
    hints.write_text(json.dumps({str(a): [[500, 16, "#20c020"]]}))
    assert main(["colorize", str(a), "-o", str(tmp_path / "y"), "--model", str(model_file),
                 "--hints", str(hints)]) == 2
    err = capsys.readouterr().err
    assert "outside the image" in err and "Traceback" not in err
    assert main(["colorize", str(a), str(b), "-o", str(tmp_path / "z"), "--model", str(model_file),
                 "--hint", "1,1,#ff0000"]) == 2
    assert "one input" in capsys.readouterr().err
    hints.write_text("{not json")
    assert main(["colorize", str(a), "-o", str(tmp_path / "w"), "--model", str(model_file),
                 "--hints", str(hints)]) == 2
    assert "hints.json" in capsys.readouterr().err


def test_box_mean_matches_clipped_average_pooling():
    g = torch.Generator().manual_seed(11)
    for shape, r in (((1, 2, 7, 13), 1), ((2, 1, 20, 9), 3), ((1, 1, 5, 5), 6)):
        x = torch.randn(*shape, generator=g)
        k = 2 * r + 1
        count = F.avg_pool2d(F.pad(torch.ones_like(x), (r,) * 4), k, stride=1)
        ref = F.avg_pool2d(F.pad(x, (r,) * 4), k, stride=1) / count
        torch.testing.assert_close(box_mean(x, r).float(), ref, rtol=1e-5, atol=1e-6)


def test_guided_filter_properties():
    g = torch.Generator().manual_seed(12)
    guide = torch.rand(1, 1, 31, 40, generator=g)
    # zero stays exactly zero (far from every hint nothing changes); a constant stays that constant
    assert torch.equal(guided_filter(guide, torch.zeros(1, 2, 31, 40), 4, 1e-4), torch.zeros(1, 2, 31, 40))
    torch.testing.assert_close(guided_filter(guide, torch.full((1, 2, 31, 40), 7.0), 4, 1e-4),
                               torch.full((1, 2, 31, 40), 7.0))
    # an input that is a linear function of the guide is kept (eps -> 0)
    x = torch.cat([3 * guide - 1, -2 * guide + 5], 1)
    torch.testing.assert_close(guided_filter(guide, x, 3, 1e-9), x, rtol=1e-4, atol=1e-4)
    # a step that follows a guide's edge comes out sharper than its blurred version went in
    step = torch.zeros(1, 1, 16, 32)
    step[..., 17:] = 1.0
    blurred = F.avg_pool2d(F.pad(step, (3, 3, 0, 0), mode="replicate"), (1, 7), stride=1)
    out = guided_filter(step, blurred, 4, 1e-4)
    assert (out - step).abs().max() < 0.5 * (blurred - step).abs().max()


def test_point_lightness_reads_the_hint_pixel():
    fine = torch.full((64, 64), 0.1)
    fine[20:23, 30:33] = 0.9  # a small bright object inside a 4 x 4 cell
    hints = [Hint.point(31, 21, "#ff0000"), Hint.point(5, 5, "#00ff00")]
    pl = point_lightness(hints, fine, (64, 64), (16, 16))
    seeds = seed_cells(hints, (64, 64), (16, 16))
    assert float(pl[0][seeds[0]].nan_to_num(-1).max()) == pytest.approx(0.9)  # not the cell's mean (0.1 + 0.8 x 5/16)
    assert float(pl[1][seeds[1]].nan_to_num(-1).max()) == pytest.approx(0.1)
    assert torch.isnan(pl[~seeds]).all()
