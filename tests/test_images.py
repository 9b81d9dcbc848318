import struct
import zlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastcolor.data.images import (IMAGE_EXTENSIONS, ImageReadError, composite_over_white, find_images, load_image,
                                   read_image, read_image_float, rgb_batch, save_image_atomic, to_float, to_uint8)
from fastcolor.data.transforms import centre_crop, fit_within, resize


def _rng(gen):
    return np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))


def write_png16(path, arr):
    """A 16-bit PNG written by hand (Pillow cannot write 16-bit RGB): arr uint16
    (H,W) gray or (H,W,3) RGB."""
    h, w = arr.shape[:2]
    color_type = 0 if arr.ndim == 2 else 2
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_gray_L(tmp_path, gen):
    a = _rng(gen).integers(0, 256, (7, 9), dtype=np.uint8)
    Image.fromarray(a, "L").save(tmp_path / "g.png")
    rgb, alpha = load_image(tmp_path / "g.png")
    assert rgb.dtype == torch.uint8 and rgb.shape == (3, 7, 9) and alpha is None
    for c in range(3):
        assert torch.equal(rgb[c], torch.from_numpy(a))


def test_LA_and_RGBA(tmp_path, gen):
    r = _rng(gen)
    la = r.integers(0, 256, (5, 6, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    rgb, alpha = load_image(tmp_path / "la.png")
    assert torch.equal(rgb[1], torch.from_numpy(la[..., 0]))
    assert alpha.shape == (1, 5, 6) and torch.equal(alpha[0], torch.from_numpy(la[..., 1]))

    rgba = r.integers(0, 256, (4, 3, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    rgb, alpha = load_image(tmp_path / "a.png")
    assert torch.equal(rgb.permute(1, 2, 0), torch.from_numpy(rgba[..., :3]))
    assert torch.equal(alpha[0], torch.from_numpy(rgba[..., 3]))


def test_palette_with_transparency(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    im.info["transparency"] = 1
    im.save(tmp_path / "p.png", transparency=1)
    rgb, alpha = load_image(tmp_path / "p.png")
    assert rgb.shape == (3, 2, 4)
    assert rgb[:, 0, 0].tolist() == [255, 0, 0]
    assert alpha[0, 0].tolist() == [255, 0, 255, 0]
    # without transparency: no alpha
    im.info.pop("transparency")
    im.save(tmp_path / "q.png")
    rgb, alpha = load_image(tmp_path / "q.png")
    assert alpha is None and rgb[:, 0, 1].tolist() == [0, 255, 0]


def test_16bit_gray_and_rgb(tmp_path, gen):
    r = _rng(gen)
    g16 = r.integers(0, 65536, (6, 5), dtype=np.uint16)
    g16[0, 0], g16[0, 1] = 0, 65535
    write_png16(tmp_path / "g16.png", g16)
    rgb, _ = load_image(tmp_path / "g16.png")
    want = np.rint(g16 / 257.0).astype(np.uint8)
    assert torch.equal(rgb[0], torch.from_numpy(want)) and torch.equal(rgb[2], rgb[0])
    assert rgb[0, 0, 0] == 0 and rgb[0, 0, 1] == 255

    # Pillow's own I;16 image saved as 16-bit PNG
    Image.fromarray(g16).save(tmp_path / "i16.png")
    rgb2, _ = load_image(tmp_path / "i16.png")
    assert torch.equal(rgb2, rgb)

    c16 = r.integers(0, 65536, (4, 7, 3), dtype=np.uint16)
    write_png16(tmp_path / "c16.png", c16)
    rgb, alpha = load_image(tmp_path / "c16.png")
    assert rgb.shape == (3, 4, 7) and alpha is None
    # 8-bit value within 1 of value / 257
    diff = rgb.permute(1, 2, 0).int() - torch.from_numpy(c16 / 257.0).round().int()
    assert diff.abs().max() <= 1


def test_float_gray(tmp_path, gen):
    f = _rng(gen).random((5, 5)).astype(np.float32)
    Image.fromarray(f, "F").save(tmp_path / "f.tif")
    rgb, _ = load_image(tmp_path / "f.tif")
    assert torch.equal(rgb[0], torch.from_numpy(np.rint(f * 255).astype(np.uint8)))


def test_cmyk_jpeg(tmp_path):
    im = Image.new("CMYK", (16, 8), (0, 255, 255, 0))  # pure red in CMYK
    im.save(tmp_path / "c.jpg", quality=95)
    rgb, alpha = load_image(tmp_path / "c.jpg")
    assert rgb.shape == (3, 8, 16) and alpha is None
    m = rgb.float().mean(dim=(1, 2))
    assert m[0] > 200 and m[1] < 60 and m[2] < 60


def test_webp(tmp_path, gen):
    a = _rng(gen).integers(0, 256, (10, 12, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "x.webp", lossless=True)
    rgb, alpha = load_image(tmp_path / "x.webp")
    assert torch.equal(rgb.permute(1, 2, 0), torch.from_numpy(a)) and alpha is None


def test_exif_orientation_6(tmp_path):
    # stored 4 wide x 2 high; orientation 6 = rotate 90 degrees clockwise to display
    a = np.zeros((2, 4, 3), np.uint8)
    a[0, 0] = (255, 0, 0)  # red at stored top-left
    im = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(tmp_path / "o.png", exif=exif.tobytes())
    rgb, _ = load_image(tmp_path / "o.png")
    assert rgb.shape == (3, 4, 2)  # upright: 2 wide, 4 high
    # clockwise rotation moves the stored top-left pixel to the top-right
    assert rgb[:, 0, 1].tolist() == [255, 0, 0]
    assert rgb[:, 0, 0].tolist() == [0, 0, 0]


def test_unreadable_files(tmp_path):
    (tmp_path / "text.jpg").write_text("this is not a jpeg\n")
    with pytest.raises(ImageReadError, match="text.jpg"):
        load_image(tmp_path / "text.jpg")
    Image.new("RGB", (64, 64), (10, 200, 30)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="trunc.jpg"):
        load_image(tmp_path / "trunc.jpg")
    with pytest.raises(ValueError, match="missing.png"):
        load_image(tmp_path / "missing.png")


def test_find_images(tmp_path):
    for rel in ["a.jpg", "sub/b.PNG", "sub/deeper/c.webp", "sub/notes.txt", ".hidden/d.jpg", "sub/.e.jpg"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    got = find_images(tmp_path)
    assert got == sorted([tmp_path / "a.jpg", tmp_path / "sub/b.PNG", tmp_path / "sub/deeper/c.webp"], key=str)
    # a file named explicitly is taken whatever its suffix; duplicates removed
    got = find_images([tmp_path / "sub/notes.txt", tmp_path / "a.jpg", str(tmp_path / "a.jpg")])
    assert got == [tmp_path / "a.jpg", tmp_path / "sub/notes.txt"]
    got = find_images(str(tmp_path / "**" / "*.webp"))
    assert got == [tmp_path / "sub/deeper/c.webp"]
    assert find_images(str(tmp_path / "*.gif")) == []
    with pytest.raises(FileNotFoundError):
        find_images(tmp_path / "nope.jpg")
    assert ".jpg" in IMAGE_EXTENSIONS and ".webp" in IMAGE_EXTENSIONS


@pytest.mark.parametrize("suffix", [".png", ".webp", ".jpg"])
def test_save_image_atomic_roundtrip(tmp_path, gen, suffix):
    rgb = torch.randint(0, 256, (3, 9, 11), dtype=torch.uint8, generator=gen)
    alpha = torch.randint(0, 256, (1, 9, 11), dtype=torch.uint8, generator=gen)
    path = tmp_path / f"out{suffix}"
    # exact: lossless WebP may otherwise rewrite the colour of fully transparent pixels
    kw = {"lossless": True, "exact": True} if suffix == ".webp" else {}
    save_image_atomic(path, rgb, alpha, **kw)
    back, back_alpha = load_image(path)
    if suffix == ".jpg":
        assert back_alpha is None and back.shape == rgb.shape
    else:
        assert torch.equal(back, rgb) and torch.equal(back_alpha, alpha)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


def test_save_float_and_errors(tmp_path):
    x = torch.tensor([0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 4).expand(3, 1, 4)
    save_image_atomic(tmp_path / "f.png", x)
    back, _ = load_image(tmp_path / "f.png")
    assert back[0, 0].tolist() == [0, 128, 255, 255]
    with pytest.raises(ValueError, match="suffix"):
        save_image_atomic(tmp_path / "f.unknown", x)
    with pytest.raises(ValueError, match="shape"):
        save_image_atomic(tmp_path / "g.png", x[0])
    # a failed save leaves the previous good file in place
    before = (tmp_path / "f.png").read_bytes()
    with pytest.raises(ValueError):
        save_image_atomic(tmp_path / "f.png", x, alpha=torch.zeros(1, 2, 2, dtype=torch.uint8))
    assert (tmp_path / "f.png").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


# ------------------------------------------------------------------ one loader, every input type


def _picture_files(tmp_path, gen):
    """{name: (path, PIL image as written)} of one picture in several modes."""
    r = _rng(gen)
    rgb = r.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    alpha = r.integers(0, 256, (6, 7), dtype=np.uint8)
    files = {
        "rgb": Image.fromarray(rgb),
        "gray": Image.fromarray(rgb[..., 0], "L"),
        "rgba": Image.fromarray(np.dstack([rgb, alpha]), "RGBA"),
        "la": Image.fromarray(np.dstack([rgb[..., 1], alpha]), "LA"),
        "palette": Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16),
    }
    out = {}
    for name, im in files.items():
        path = tmp_path / f"{name}.png"
        im.save(path, **({"transparency": 2} if name == "palette" else {}))
        out[name] = path
    write_png16(tmp_path / "g16.png", r.integers(0, 65536, (5, 4), dtype=np.uint16))
    write_png16(tmp_path / "c16.png", r.integers(0, 65536, (5, 4, 3), dtype=np.uint16))
    Image.new("CMYK", (5, 3), (0, 255, 128, 10)).save(tmp_path / "cmyk.jpg", quality=95)
    out.update(g16=tmp_path / "g16.png", c16=tmp_path / "c16.png", cmyk=tmp_path / "cmyk.jpg")
    return out


def test_every_input_type_gives_the_file_result(tmp_path, gen):
    """A path, the PIL image, and the decoded picture as a tensor (uint8, uint16,
    float, (C,H,W)) or numpy array (H,W,C) all read to the same uint8 rgb and alpha."""
    for name, path in _picture_files(tmp_path, gen).items():
        rgb, alpha = read_image(path)
        assert torch.equal(rgb, load_image(path)[0])
        assert (alpha is not None) == (name in ("rgba", "la", "palette")), name
        with Image.open(path) as im:
            from_pil = read_image(im)
        chw = rgb if alpha is None else torch.cat([rgb, alpha])
        forms = {
            "pil": from_pil,
            "uint8 tensor": read_image(chw),
            "uint16 tensor": read_image(chw.to(torch.int32).mul(257).to(torch.uint16)),
            "float tensor": read_image(chw.float() / 255),
            "float64 tensor": read_image(chw.double() / 255),
            "uint8 numpy": read_image(chw.permute(1, 2, 0).numpy()),
            "uint16 numpy": read_image(chw.permute(1, 2, 0).numpy().astype(np.uint16) * 257),
            "float numpy": read_image(chw.permute(1, 2, 0).numpy().astype(np.float32) / 255),
        }
        for form, (rgb2, alpha2) in forms.items():
            assert torch.equal(rgb2, rgb), (name, form)
            assert (alpha2 is None) == (alpha is None) and (alpha is None or torch.equal(alpha2, alpha)), (name, form)
        # float reading: the same values / 255, alpha as uint8
        f, a = read_image_float(path)
        assert f.dtype == torch.float32 and torch.equal(f, rgb.float() / 255)
        assert (a is None and alpha is None) or torch.equal(a, alpha)
    # gray channels: one channel, a (H, W) array and a bool mask
    g = torch.tensor([[0, 255], [255, 0]], dtype=torch.uint8)
    assert torch.equal(read_image(g[None])[0], g.expand(3, 2, 2))
    assert torch.equal(read_image(g.numpy())[0], g.expand(3, 2, 2))
    assert torch.equal(read_image(g.bool()[None])[0], g.expand(3, 2, 2))


def test_float_reading_keeps_precision():
    x = torch.rand(4, 5, 6, generator=torch.Generator().manual_seed(0))
    rgb, alpha = read_image_float(x)
    assert torch.equal(rgb, x[:3]) and torch.equal(alpha, to_uint8(x[3:]))
    u16 = torch.arange(30, dtype=torch.int32).mul(2000).reshape(1, 5, 6).to(torch.uint16)
    assert torch.equal(read_image_float(u16)[0], (u16.float() / 65535).expand(3, -1, -1))
    assert torch.equal(read_image(u16)[0][0], (u16[0].double() / 257).round().to(torch.uint8))


def test_loader_rejects():
    with pytest.raises(TypeError, match="pass a path"):
        read_image(12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        read_image(torch.full((3, 2, 2), 1.5))
    with pytest.raises(ValueError, match="1 to 4 channels"):
        read_image(torch.zeros(5, 2, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        read_image(np.zeros((2, 2, 3), np.int64))
    with pytest.raises(ValueError, match="empty"):
        read_image(torch.zeros(3, 0, 2))


def test_composite_over_white_and_float_conversion():
    rgb = torch.tensor([200, 10, 10], dtype=torch.uint8)[:, None, None].expand(3, 1, 3).contiguous()
    alpha = torch.tensor([[[0, 128, 255]]], dtype=torch.uint8)
    out = composite_over_white(rgb, alpha)
    assert out.dtype == torch.uint8 and out[:, 0].T.tolist() == [[255, 255, 255], [227, 132, 132], [200, 10, 10]]
    f = composite_over_white(to_float(rgb), alpha)
    assert f.dtype == torch.float32 and torch.equal(to_uint8(f), out)
    assert composite_over_white(rgb, None) is rgb
    assert torch.equal(to_float(rgb), rgb.float() / 255) and torch.equal(to_uint8(to_float(rgb)), rgb)
    # rgb_batch (codebooks, priors) composites over white
    assert torch.equal(rgb_batch(torch.cat([rgb, alpha])), to_float(out)[None])


# ------------------------------------------------------------------ one resize


def test_resize_is_bilinear_antialiased():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 20, 30, generator=g)
    for size in ((10, 15), (7, 40), (33, 31)):
        want = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        assert torch.equal(resize(x, size), want)
        assert torch.equal(resize(x[0], size), want[0])  # (C, H, W) too
    assert resize(x, (20, 30)) is x
    u8 = (x[0] * 255).round().to(torch.uint8)
    small = resize(u8, (9, 11))
    want = F.interpolate(u8[None].float(), size=(9, 11), mode="bilinear", align_corners=False, antialias=True)
    assert small.dtype == torch.uint8 and torch.equal(small, want[0].round().clamp(0, 255).to(torch.uint8))
    with pytest.raises(ValueError, match="resize"):
        resize(x[0, 0], (3, 3))


def test_fit_within_and_centre_crop():
    x = torch.rand(3, 40, 100, generator=torch.Generator().manual_seed(0))
    assert fit_within(x, 100) is x and fit_within(x, None) is x
    y = fit_within(x, 50)
    assert y.shape == (3, 20, 50) and 0 <= y.min() and y.max() <= 1
    assert torch.equal(y, resize(x, (20, 50)).clamp(0, 1))
    assert fit_within(torch.zeros(3, 1, 300, dtype=torch.uint8), 30).shape == (3, 1, 30)
    c = centre_crop(x, (10, 20))
    assert torch.equal(c, x[:, 15:25, 40:60])
    assert centre_crop(x, 40).shape == (3, 40, 40)
    with pytest.raises(ValueError, match="does not fit"):
        centre_crop(x, 41)
