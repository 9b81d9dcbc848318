import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from fastcolor.data.images import IMAGE_EXTENSIONS, ImageReadError, find_images, load_image, save_image_atomic


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
