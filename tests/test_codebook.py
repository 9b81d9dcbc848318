"""Tests for fastcolor.codebook: the zhang313 bins, data-driven bins, I/O."""
import os
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from PIL import Image

from fastcolor.color.codebook import Codebook
from fastcolor.data.images import rgb_batch
from fastcolor.color import rgb_to_lab, rgb_to_yuv

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")

# Colours chosen with their chroma at least 0.2 of a cell away from every cell
# boundary of both default grids; A2 shares A's cell in both spaces.
A, A2, B, C, D, E = (163, 254, 203), (148, 227, 186), (34, 128, 128), (105, 42, 186), (31, 120, 1), (232, 78, 143)
ROWS = [(A, 6), (A2, 2), (B, 7), (C, 5), (D, 3), (E, 1)]  # 5 pixels per row
# (axis0, axis1) cells of A, B, C, D, E in the default grids.
CELLS = {
    "yuv": {A: (4, 3), B: (5, 3), C: (7, 5), D: (3, 3), E: (5, 7)},
    "lab": {A: (7, 12), B: (8, 10), C: (16, 4), D: (6, 15), E: (17, 10)},
}
GRID = {"yuv": ((-0.45, -0.65), (0.09, 0.13)), "lab": ((-110.0, -110.0), (10.0, 10.0))}
TOL = {"yuv": 1e-6, "lab": 1e-4}  # the codebook converts in float32


def patches(rows=ROWS, width=5):
    """uint8 (H, W, 3) image of flat horizontal bands."""
    return np.concatenate([np.tile(np.uint8(c), (n, width, 1)) for c, n in rows])


def chroma64(colour, space):
    x = torch.tensor(colour, dtype=torch.float64).view(3, 1, 1) / 255
    return (rgb_to_lab(x) if space == "lab" else rgb_to_yuv(x))[1:, 0, 0]


def as_float(img):
    return torch.from_numpy(img).permute(2, 0, 1).float() / 255


# ------------------------------------------------------------------ zhang313


def test_zhang313_equals_released_points():
    cb = Codebook.zhang313()
    ref = np.load(REFERENCE / "pts_in_hull.npy")
    assert cb.centres.dtype == torch.float32 and cb.centres.is_contiguous()
    np.testing.assert_array_equal(cb.centres.numpy(), ref.astype(np.float32))
    a, b = cb.centres.T
    assert (a.min(), a.max(), b.min(), b.max()) == (-90, 100, -110, 100)
    assert (cb.name, cb.space, cb.grid_step, len(cb), cb.default_sigma) == ("zhang313", "lab", (10.0, 10.0), 313, 5.0)


def test_zhang313_fresh_objects():
    first, second = Codebook.zhang313(), Codebook.zhang313()
    assert first is not second and first == second
    first.centres.zero_()  # must not corrupt the cache
    assert torch.equal(Codebook.zhang313().centres, second.centres)


def test_repr_and_nearest():
    cb = Codebook.zhang313()
    assert repr(cb) == "Codebook(name='zhang313', space='lab', bins=313, grid_step=(10.0, 10.0), device=cpu)"
    ab = cb.centres[[0, 120, 312]].T.reshape(1, 2, 1, 3) + 1.0
    assert cb.nearest(ab).tolist() == [[[0, 120, 312]]]


# ------------------------------------------------------------ construction


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(centres=torch.zeros(4, 3)), r"shape \(Q, 2\)"),
        (dict(centres=torch.zeros(8)), r"shape \(Q, 2\)"),
        (dict(centres=torch.zeros(0, 2)), "1 <= Q <= 4096"),
        (dict(centres=torch.zeros(4097, 2)), "1 <= Q <= 4096"),
        (dict(centres=torch.tensor([[0.0, float("nan")]])), "non-finite"),
        (dict(centres=torch.zeros(3, 2), space="rgb"), "space"),
        (dict(centres=torch.zeros(3, 2), grid_step=(0.0, 10.0)), "positive"),
        (dict(centres=torch.zeros(3, 2), grid_step=(10.0, -1.0)), "positive"),
        (dict(centres=torch.zeros(3, 2), grid_step=(10.0,)), "pair"),
        (dict(centres=torch.zeros(3, 2), name=3), "name"),
    ],
)
def test_constructor_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Codebook(**kwargs)


def test_constructor_converts():
    cb = Codebook(np.array([[1, 2], [3, 4]]), space="yuv", grid_step=(0.1, 0.2))
    assert cb.centres.dtype == torch.float32 and cb.centres.tolist() == [[1, 2], [3, 4]]
    assert cb.default_sigma == pytest.approx(0.075) and cb.name is None and cb.num_bins == 2


def test_to_cpu_is_equal():
    cb = Codebook.zhang313()
    moved = cb.to("cpu")
    assert moved is not cb and moved == cb and moved.device == torch.device("cpu")
    assert cb != Codebook(cb.centres, "lab", (10.0, 10.0), "other")


@requires_cuda
@pytest.mark.cuda
def test_to_cuda():
    cb = Codebook.zhang313().to("cuda")
    assert cb.device.type == "cuda" and cb.name == "zhang313"
    assert torch.equal(cb.to("cpu").centres, Codebook.zhang313().centres)
    ab = cb.centres[[5, 200]].T.reshape(1, 2, 1, 2)
    assert cb.nearest(ab).tolist() == [[[5, 200]]]


# ---------------------------------------------------------- data-driven bins


@pytest.mark.parametrize("space", ["yuv", "lab"])
def test_from_images_keeps_most_frequent_cells(space):
    cb = Codebook.from_images([patches()], n=4, space=space, progress=False)
    # Cell pixel counts: A+A2 40, B 35, C 25, D 15, E 5: E is dropped; bins in cell order.
    kept = sorted([A, B, C, D], key=lambda c: CELLS[space][c])
    assert (cb.space, cb.name, len(cb)) == (space, f"{space}4-data", 4)
    assert cb.grid_step == pytest.approx(GRID[space][1])
    expect = {c: chroma64(c, space) for c in kept}
    expect[A] = (30 * chroma64(A, space) + 10 * chroma64(A2, space)) / 40
    torch.testing.assert_close(cb.centres.double(), torch.stack([expect[c] for c in kept]), atol=TOL[space], rtol=0)

    centre = Codebook.from_images([patches()], n=4, space=space, represent="centre", progress=False)
    lo, step = (torch.tensor(v, dtype=torch.float64) for v in GRID[space])
    cells = torch.tensor([CELLS[space][c] for c in kept], dtype=torch.float64)
    torch.testing.assert_close(centre.centres.double(), lo + (cells + 0.5) * step, atol=1e-6, rtol=0)


def test_from_images_ties_go_to_lower_cell():
    img = patches([(A, 2), (E, 1), (D, 1)])  # D and E tie; D has the lower yuv cell index
    cb = Codebook.from_images([img], n=2, progress=False)
    torch.testing.assert_close(cb.centres.double(), torch.stack([chroma64(D, "yuv"), chroma64(A, "yuv")]),
                               atol=1e-6, rtol=0)


def test_from_images_clamps_to_edge_cells():
    # Blue (U, V) = (0.436, -0.100) and green (-0.289, -0.515) lie outside a
    # narrow grid: they must land in the nearest edge cells, not be dropped.
    img = patches([((0, 0, 255), 1), ((0, 255, 0), 1)])
    cb = Codebook.from_images([img], n=2, extent=((-0.2, 0.2), (-0.2, 0.2)), cells=(4, 5),
                              represent="centre", progress=False)
    torch.testing.assert_close(cb.centres, torch.tensor([[-0.15, -0.16], [0.15, -0.08]]), atol=1e-6, rtol=0)


@pytest.mark.parametrize("space", ["yuv", "lab"])
def test_from_images_streaming_equals_one_batch(space):
    img = as_float(patches())

    def batches():  # single images and a 4-D batch, as a generator (no len)
        yield img[:, :5]
        yield torch.stack([img[:, 5:10], img[:, 10:15]])
        yield img[:, 15:]

    streamed = Codebook.from_images(batches(), n=5, space=space, progress=False)
    whole = Codebook.from_images(img[None], n=5, space=space, progress=False)
    torch.testing.assert_close(streamed.centres, whole.centres, atol=TOL[space], rtol=0)


def test_from_images_input_forms(tmp_path):
    img = patches()
    path = tmp_path / "patches.png"
    Image.fromarray(img).save(path)
    # uint8 tensors are (C, H, W), numpy arrays (H, W, C); all read by fastcolor.data.images.read_image
    forms = [as_float(img), as_float(img)[None], img, torch.from_numpy(img).permute(2, 0, 1),
             img.astype(np.uint16) * 257, Image.fromarray(img), path, str(path)]
    results = [Codebook.from_images([x], n=5, progress=False).centres for x in forms]
    for r in results[1:]:
        assert torch.equal(r, results[0])


def test_from_images_too_few_cells():
    with pytest.raises(ValueError, match=r"only 5 cells .* n=6"):
        Codebook.from_images([patches()], n=6, progress=False)
    with pytest.raises(ValueError, match=r"only 0 cells"):
        Codebook.from_images([], n=1, progress=False)


def test_from_images_bad_arguments():
    with pytest.raises(ValueError, match="represent"):
        Codebook.from_images([patches()], represent="median")
    with pytest.raises(ValueError, match="n must be"):
        Codebook.from_images([patches()], n=101)


def test_rgb_batch_rejects_and_orients(tmp_path):
    """What Codebook.from_images and estimate_prior stream (fastcolor.data.images.rgb_batch)."""
    with pytest.raises(TypeError):
        rgb_batch([1, 2, 3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        rgb_batch(torch.full((3, 2, 2), 255.0))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        rgb_batch(torch.zeros(2, 4, 4, 4))
    with pytest.raises(ValueError, match="uint8 or uint16"):
        rgb_batch(torch.zeros(3, 4, 4, dtype=torch.int32))
    # uint8 tensors are (C, H, W) like every image tensor in fastcolor; numpy arrays (H, W, C).
    u8 = torch.arange(48, dtype=torch.uint8).reshape(3, 4, 4)
    assert torch.equal(rgb_batch(u8), u8[None].float() / 255)
    assert torch.equal(rgb_batch(u8.permute(1, 2, 0).numpy()), u8[None].float() / 255)
    # float batches are used as they are: no uint8 round trip
    x = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    assert torch.equal(rgb_batch(x), x.float())
    # EXIF orientation 6 (rotate 90 degrees clockwise to display): a 2x3 file shows as 3x2.
    img = Image.fromarray(np.zeros((2, 3, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rotated.png", exif=exif)
    assert rgb_batch(tmp_path / "rotated.png").shape == (1, 3, 3, 2)


def test_from_images_composites_alpha_over_white(tmp_path):
    """A transparent pixel counts as white (no chroma), whatever colour it hides:
    as ImageFolder serves it to training."""
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = (220, 20, 20)
    rgba[:2, :, 3] = 255  # top half opaque red, bottom half transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "half.png")
    cb = Codebook.from_images([tmp_path / "half.png"], n=2, space="lab", represent="centre", progress=False)
    red = rgb_to_lab(torch.tensor([220, 20, 20.0]).div(255)[None, :, None, None])[0, 1:, 0, 0]
    assert any(torch.allclose(c, torch.zeros(2), atol=10) for c in cb.centres)  # white is one of the two
    assert any(torch.allclose(c, red, atol=10) for c in cb.centres)


# ------------------------------------------------------------------ save/load


def test_save_load_round_trip(tmp_path):
    for cb in (Codebook.zhang313(), Codebook(torch.randn(7, 2) * 0.1, "yuv", (0.09, 0.13))):
        cb.save(tmp_path / "cb.safetensors")
        loaded = Codebook.load(tmp_path / "cb.safetensors")
        assert loaded == cb and loaded.name == cb.name and loaded.grid_step == cb.grid_step
    assert os.listdir(tmp_path) == ["cb.safetensors"]


def test_save_is_atomic(tmp_path, request):
    path = tmp_path / "cb.safetensors"
    old = Codebook.zhang313()
    old.save(path)

    request.getfixturevalue("full_disk")
    with pytest.raises(OSError, match="disk full"):
        Codebook(torch.zeros(2, 2)).save(path)
    assert Codebook.load(path) == old
    assert os.listdir(tmp_path) == ["cb.safetensors"]


def test_load_rejects_other_files(tmp_path):
    safetensors.torch.save_file({"centres": torch.zeros(3, 2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="not a fastcolor codebook"):
        Codebook.load(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="not a fastcolor codebook"):
        Codebook.load(tmp_path / "junk.safetensors")
