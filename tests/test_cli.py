"""The fastcolor command line: colorize, evaluate, pass-through subcommands."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import fastcolor
from fastcolor import Codebook
from fastcolor.cli import main
from fastcolor.color import rgb_to_lab
from fastcolor.inference import Colorizer
from fastcolor.metrics import ab_accuracy_auc, colourfulness, rebalanced_pixel_weights


def _photo(gen, h, w):
    small = torch.rand(1, 3, 3, 4, generator=gen)
    x = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


@pytest.fixture
def photos(tmp_path, gen):
    """A folder with a colour photo, a gray one in a subfolder, an RGBA one and a corrupt file."""
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(_photo(gen, 30, 40)).save(folder / "colour.png")
    Image.fromarray(_photo(gen, 50, 25)[..., 0], "L").save(folder / "sub" / "gray.jpg")
    rgba = np.dstack([_photo(gen, 20, 20), (np.arange(400).reshape(20, 20) % 256).astype(np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder


def _size(path):
    with Image.open(path) as im:
        return im.size  # (W, H)


def test_colorize_folder_with_a_corrupt_file(photos, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["colorize", str(photos), "-o", str(out), "--model", str(model_file), "--device", "cpu",
                 "--compare", "--confidence", "--batch-size", "2"])
    err = capsys.readouterr().err
    assert code == 1
    bad_lines = [line for line in err.splitlines() if "broken.jpg" in line]
    assert len(bad_lines) == 1 and "error" in bad_lines[0], err
    # The others are written, names mirrored (subfolder kept, extension .png).
    assert _size(out / "colour.png") == (40, 30)
    assert _size(out / "sub" / "gray.png") == (25, 50)
    with Image.open(out / "alpha.png") as im:
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[..., 3], np.arange(400).reshape(20, 20) % 256)
    assert not (out / "broken.png").exists()
    # --compare: gray | colorized | original for colour inputs, gray | colorized for gray ones.
    assert _size(out / "colour_compare.png") == (3 * 40, 30)
    assert _size(out / "sub" / "gray_compare.png") == (2 * 25, 50)
    with Image.open(out / "colour_compare.png") as im:
        strip = np.asarray(im.convert("RGB"))
    assert np.array_equal(strip[:, 80:], np.asarray(Image.open(photos / "colour.png")))
    assert np.ptp(strip[:, :40].astype(int), axis=2).max() <= 1  # the first panel is gray
    assert _size(out / "colour_confidence.png") == (2 * 40, 30)
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary files left


def test_colorize_single_file_to_a_named_output(photos, model_file, tmp_path, capsys):
    target = tmp_path / "result.jpg"
    code = main(["colorize", str(photos / "colour.png"), "-o", str(target), "--model", str(model_file),
                 "--device", "cpu", "-t", "0", "--backend", "reference"])
    assert code == 0 and _size(target) == (40, 30)
    assert fastcolor.get_backend() == "kernels"
    # Same result as the library gives (up to JPEG): the CLI adds no processing of its own.
    want = Colorizer.load(model_file, device="cpu").colorize(photos / "colour.png", temperature=0).rgb
    got = torch.from_numpy(np.array(Image.open(target))).permute(2, 0, 1)
    assert (got.float() - want.float()).abs().mean() < 3


def test_missing_input_is_reported_and_the_rest_done(photos, model_file, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["colorize", str(photos / "colour.png"), str(tmp_path / "nope.png"), "-o", str(out),
                 "--model", str(model_file), "--device", "cpu", "--suffix", "webp"])
    err = capsys.readouterr().err
    assert code == 1 and sum("nope.png" in line for line in err.splitlines()) == 1
    assert _size(out / "colour.webp") == (40, 30)


def test_outputs_are_never_half_written(photos, model_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    args = ["colorize", str(photos / "colour.png"), str(photos / "alpha.png"), "-o", str(out),
            "--model", str(model_file), "--device", "cpu"]
    assert main(args) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"colour.png", "alpha.png"}

    real_save = Image.Image.save

    def failing_save(self, fp, *a, **k):
        if hasattr(fp, "write"):
            fp.write(b"\x89PNG half an image")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    assert main(args + ["-t", "0"]) == 1
    monkeypatch.setattr(Image.Image, "save", real_save)
    err = capsys.readouterr().err
    assert sum("disk full" in line for line in err.splitlines()) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # old files intact, no temporaries


def test_missing_model_and_bad_arguments(photos, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fastcolor.inference, "bundled_model_path", lambda: tmp_path / "colorizer.safetensors")
    assert main(["colorize", str(photos / "colour.png"), "-o", str(tmp_path / "o")]) == 2
    assert "colorizer.safetensors" in capsys.readouterr().err
    capsys.readouterr()
    # argparse errors: one line, exit code 2 (fastcolor.errors.run)
    assert main(["colorize", str(photos), "-o", str(tmp_path), "--temperature", "-1"]) == 2
    assert main(["colorize", str(photos)]) == 2  # -o is required
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.startswith("fastcolor colorize: error: ") for line in lines), lines


def test_evaluate_table_and_json(tmp_path, model_file, gen, capsys):
    """Photos already at the evaluation size, so the crop is the identity and the
    numbers can be recomputed here from the metric functions."""
    folder = tmp_path / "val"
    folder.mkdir()
    images = [_photo(gen, 32, 32) for _ in range(3)]
    for i, im in enumerate(images):
        Image.fromarray(im).save(folder / f"{i}.png")
    report_path = tmp_path / "metrics.json"
    code = main(["evaluate", "--data", str(folder), "--model", str(model_file), "--size", "32",
                 "--json", str(report_path), "--device", "cpu", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert code == 0
    for word in ("model", "gray", "ground_truth", "AuC", "PSNR"):
        assert word in out
    report = json.loads(report_path.read_text())
    assert report["images"] == 3 and report["prior"] == "data"

    true_rgb = torch.stack([torch.from_numpy(im).permute(2, 0, 1) for im in images]).float() / 255
    true_ab = rgb_to_lab(true_rgb)[:, 1:]
    zero = torch.zeros_like(true_ab)
    lab313 = Codebook.zhang313()
    prior = fastcolor.prior_from_counts(fastcolor.bin_histogram(true_ab, lab313), lab313)
    w = rebalanced_pixel_weights(true_ab, lab313, prior)
    assert report["gray"]["auc"] == pytest.approx(ab_accuracy_auc(zero, true_ab), abs=1e-9)
    assert report["gray"]["auc_rebalanced"] == pytest.approx(ab_accuracy_auc(zero, true_ab, w), rel=1e-6)
    assert report["ground_truth"]["colourfulness"] == pytest.approx(colourfulness(true_rgb).mean().item())
    # The same batches as the command (--batch-size 2): CPU convolutions may round differently
    # for another batch size, and one flipped uint8 pixel moves AuC by ~2e-6 here.
    pred = torch.stack([r.rgb for r in Colorizer.load(model_file, device="cpu").colorize_batch(
        list(true_rgb), batch_size=2)]).float() / 255
    assert report["model"]["auc"] == pytest.approx(ab_accuracy_auc(rgb_to_lab(pred)[:, 1:], true_ab), abs=1e-6)
    assert 0 <= report["model"]["auc"] <= 1 and report["gray"]["psnr"] > 0


def test_evaluate_names_unreadable_files_on_stderr(tmp_path, model_file, gen, capsys):
    folder = tmp_path / "val"
    folder.mkdir()
    Image.fromarray(_photo(gen, 20, 24)).save(folder / "ok.png")
    (folder / "broken.jpg").write_text("not a jpeg")
    code = main(["evaluate", "--data", str(folder), "--model", str(model_file), "--size", "16", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1 and "1 images of" in captured.out
    lines = [line for line in captured.err.splitlines() if line.startswith("fastcolor: error:")]
    assert len(lines) == 1 and lines[0].startswith(f"fastcolor: error: {folder / 'broken.jpg'}: cannot identify")


def test_pass_through_subcommands(monkeypatch):
    import fastcolor.data.photoset.recipe
    import fastcolor.train

    seen = []
    monkeypatch.setattr(fastcolor.train, "main", lambda argv: seen.append(("train", argv)))
    monkeypatch.setattr(fastcolor.data.photoset.recipe, "main", lambda argv: seen.append(("data", argv)) or 3)
    assert main(["train", "--data", "d", "--out", "r"]) == 0
    assert main(["data", "--out", "x"]) == 3
    assert seen == [("train", ["--data", "d", "--out", "r"]), ("data", ["--out", "x"])]


def test_python_dash_m_version_and_help():
    run = subprocess.run([sys.executable, "-m", "fastcolor", "--version"], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == f"fastcolor {fastcolor.__version__}"
    assert main(["colorize", "--help"]) == 0


def test_demo_writes_one_side_by_side_png(model_file, tmp_path, capsys):
    pytest.importorskip("skimage")
    from fastcolor.cli import DEMO_PHOTOS

    out = tmp_path / "demo.png"
    assert main(["demo", "--model", str(model_file), "-o", str(out), "--height", "48"]) == 0
    printed = capsys.readouterr().out
    assert str(out.resolve()) in printed
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.height == 48 * len(DEMO_PHOTOS)
        grid = np.asarray(im)
    # Each row: the input as gray (R = G = B), then the colorized photo, then the original.
    row = grid[:48]
    gray_panel = row[:, :10].astype(int)
    assert np.abs(gray_panel[..., 0] - gray_panel[..., 1]).max() <= 1
    assert row.shape[1] > 3 * 40
