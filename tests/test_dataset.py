import numpy as np
import pytest
import torch
from PIL import Image

from fastcolor.data.dataset import ImageFolder


def _rng(gen):
    return np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=gen)))


@pytest.fixture
def folder(tmp_path, gen):
    r = _rng(gen)
    d = tmp_path / "photos"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(r.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(d / "colour.png")
    Image.fromarray(r.integers(0, 256, (30, 45), dtype=np.uint8), "L").save(d / "gray.png")
    Image.fromarray(r.integers(0, 256, (12, 20, 4), dtype=np.uint8), "RGBA").save(d / "sub" / "small.webp", lossless=True)
    Image.new("CMYK", (33, 64), (0, 255, 255, 0)).save(d / "sub" / "cmyk.jpg")
    (d / "notes.txt").write_text("ignored: not an image suffix")
    (d / "text.jpg").write_text("not a jpeg")
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (d / "trunc.jpg").write_bytes(data[: len(data) // 2])
    return d


def test_skips_bad_files_and_shapes(folder):
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = ImageFolder(folder, crop_size=24, augment=True)
    assert len(ds) == 4
    assert sorted(p.split("/")[-1] for p, _ in ds.skipped) == ["text.jpg", "trunc.jpg"]
    assert all(reason for _, reason in ds.skipped)
    for i in range(len(ds)):
        item = ds[i]
        assert item["rgb"].shape == (3, 24, 24) and item["rgb"].dtype == torch.float32
        assert 0 <= item["rgb"].min() and item["rgb"].max() <= 1
        assert set(item) == {"rgb", "index"} and item["index"] == i
    # the dataset works in a DataLoader batch
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["rgb"].shape == (4, 3, 24, 24) and batch["index"].tolist() == [0, 1, 2, 3]


def test_items_are_the_loader_and_resize_of_the_file(folder):
    """An item is fastcolor.data's read_image, composite_over_white, fit_within and
    centre_crop of its file, nothing else (no colour conversion)."""
    from fastcolor.data.images import composite_over_white, read_image, to_float
    from fastcolor.data.transforms import centre_crop, fit_within

    with pytest.warns(UserWarning):
        ds = ImageFolder(folder, crop_size=16, augment=False, max_side=40)
    checked = 0
    for i, path in enumerate(ds.paths):
        image = fit_within(composite_over_white(*read_image(path)), 40)
        if min(image.shape[1:]) >= 16:  # small ones are upscaled first (test_small_images_are_upscaled)
            assert torch.equal(ds[i]["rgb"], to_float(centre_crop(image, 16)))
            checked += 1
    assert checked == 3


def test_reset_draws_replays_the_crop(folder):
    with pytest.warns(UserWarning):
        ds = ImageFolder(folder, crop_size=16, augment=True)
    torch.manual_seed(3)
    first = [ds[0]["rgb"] for _ in range(6)]
    assert any(not torch.equal(first[0], x) for x in first[1:])  # the count changes the draw
    ds.reset_draws(0)
    ds.reset_draws(0)  # no draws to forget: fine
    assert torch.equal(ds[0]["rgb"], first[0])
    assert torch.equal(ds[0]["rgb"], first[1])


def test_small_images_are_upscaled(tmp_path, gen):
    Image.fromarray(_rng(gen).integers(0, 256, (10, 30, 3), dtype=np.uint8)).save(tmp_path / "s.png")
    for augment in (False, True):
        ds = ImageFolder(tmp_path, crop_size=48, augment=augment)
        assert ds[0]["rgb"].shape == (3, 48, 48)


def test_centre_crop_and_flips(tmp_path):
    # a horizontal ramp: column x has value x, so a crop's first column tells its
    # left edge and a flip reverses the ramp
    w, h, c = 64, 20, 16
    ramp = np.tile(np.arange(w, dtype=np.uint8)[None, :, None] * 3, (h, 1, 3))
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    ds = ImageFolder(tmp_path, crop_size=c, augment=False)
    first = ds[0]["rgb"]
    assert torch.equal(first, ds[0]["rgb"])  # deterministic without augment
    assert round(float(first[0, 0, 0]) * 255) == 3 * ((w - c) // 2)
    assert (first[0, :, 1:] > first[0, :, :-1]).all()  # never flipped

    torch.manual_seed(int.from_bytes(__import__("os").urandom(4), "little"))
    ds = ImageFolder(tmp_path, crop_size=c, augment=True, seed=1)
    flipped = lefts = 0
    seen_lefts = set()
    for _ in range(60):
        x = ds[0]["rgb"][0, 0] * 255 / 3
        if x[0] > x[-1]:
            flipped += 1
            x = x.flip(0)
        else:
            lefts += 1
        assert torch.allclose(x, x[0] + torch.arange(c, dtype=torch.float32), atol=1e-3)
        seen_lefts.add(int(round(float(x[0]))))
    assert 10 <= flipped <= 50 and lefts > 0
    assert len(seen_lefts) > 5 and min(seen_lefts) >= 0 and max(seen_lefts) <= w - c


def test_cache_and_max_side(tmp_path, gen):
    Image.fromarray(_rng(gen).integers(0, 256, (100, 200, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    ds = ImageFolder(tmp_path, crop_size=32, augment=False, max_side=64, cache=True)
    assert ds._cached[0].shape == (3, 32, 64)
    a = ds[0]["rgb"]
    (tmp_path / "big.png").unlink()  # served from memory
    assert torch.equal(ds[0]["rgb"], a)


def test_file_broken_after_construction(tmp_path, gen):
    r = _rng(gen)
    for name in ("a.png", "b.png"):
        Image.fromarray(r.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / name)
    ds = ImageFolder(tmp_path, crop_size=8)
    (tmp_path / "a.png").write_text("broken now")
    with pytest.warns(UserWarning, match="a.png"):
        item = ds[0]
    assert item["index"] == 1 and ds.skipped[0][0].endswith("a.png")


def test_errors(tmp_path):
    (tmp_path / "x.jpg").write_text("no")
    with pytest.raises(ValueError, match="no readable images"), pytest.warns(UserWarning):
        ImageFolder(tmp_path)
    with pytest.raises(ValueError, match="max_side"):
        ImageFolder(tmp_path, crop_size=64, max_side=32)
