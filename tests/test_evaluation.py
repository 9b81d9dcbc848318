"""fastcolor.evaluation: evaluate is photo_prior + score over square crops."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastcolor import Codebook, imagenet_prior
from fastcolor.color import rgb_to_lab
from fastcolor.data.images import read_image, to_float, to_uint8
from fastcolor.evaluation import Scorer, evaluate, format_table, photo_prior, score, square_crop
from fastcolor.inference import Colorizer
from fastcolor.metrics import ab_accuracy_auc, colourfulness, psnr, rebalanced_pixel_weights


@pytest.fixture
def folder(tmp_path, gen):
    """Four photos of different shapes (one RGBA) and a corrupt file."""
    d = tmp_path / "val"
    d.mkdir()
    for i, (h, w) in enumerate([(32, 32), (40, 56), (50, 33), (36, 36)]):
        small = torch.rand(1, 3, 3, 4, generator=gen)
        x = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)[0]
        a = (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        if i == 3:
            a = np.dstack([a, np.full((h, w), 100, np.uint8)])
        Image.fromarray(a).save(d / f"{i}.png")
    (d / "broken.jpg").write_text("not a jpeg")
    return d


def test_evaluate_is_photo_prior_and_score(folder, model_file):
    skipped = []
    reports = {prior: evaluate(str(model_file), folder, size=32, prior=prior, batch_size=3, device="cpu",
                               progress=False, on_skip=lambda path, exc: skipped.append((path.name, str(exc))))
               for prior in ("data", "imagenet")}
    assert [name for name, _ in skipped] == ["broken.jpg", "broken.jpg"]
    report = reports["data"]
    assert report["images"] == 4 and [p.split("/")[-1] for p, _ in report["skipped"]] == ["broken.jpg"]
    assert "cannot read image" in report["skipped"][0][1]

    # The same pipeline by hand: read, square crop, uint8; the photos' prior; colorize; score.
    paths = sorted(p for p in folder.iterdir() if p.suffix == ".png")
    photos = [to_uint8(square_crop(read_image(p)[0], 32))[0] for p in paths]
    true_rgb = to_float(torch.stack(photos))
    prior = photo_prior([true_rgb])
    lab313 = Codebook.zhang313()
    true_ab = rgb_to_lab(true_rgb)[:, 1:]
    counts = torch.bincount(lab313.nearest(true_ab).flatten(), minlength=313).double()
    import fastcolor

    torch.testing.assert_close(prior, fastcolor.prior_from_counts(counts, lab313), rtol=0, atol=0)
    results = Colorizer.load(model_file, device="cpu").colorize_batch(photos, batch_size=3)
    pred_rgb = to_float(torch.stack([r.rgb for r in results]))
    gray_rgb = to_float(torch.stack([r.gray_rgb() for r in results]))
    for name, p in (("data", prior), ("imagenet", "imagenet")):
        model = score(pred_rgb, true_rgb, p)
        gray = score(gray_rgb, true_rgb, p, pred_ab=torch.zeros_like(true_ab))
        assert set(model) == {"auc", "auc_rebalanced", "colourfulness", "colourfulness_true", "psnr"}
        for key in ("auc", "auc_rebalanced", "colourfulness", "psnr"):
            assert reports[name]["model"][key] == pytest.approx(model[key], rel=1e-12), (name, key)
            assert reports[name]["gray"][key] == pytest.approx(gray[key], rel=1e-12), (name, key)
        assert reports[name]["ground_truth"]["colourfulness"] == pytest.approx(model["colourfulness_true"], rel=1e-12)
    assert reports["imagenet"]["model"]["auc"] == report["model"]["auc"]
    assert reports["imagenet"]["model"]["auc_rebalanced"] != report["model"]["auc_rebalanced"]
    assert "rebal. AuC %" in format_table(report) and "ground_truth" in format_table(report)


def test_score_definitions(gen):
    true_rgb = torch.rand(3, 3, 8, 10, generator=gen)
    pred_rgb = torch.rand(3, 3, 8, 10, generator=gen)
    true_ab, pred_ab = rgb_to_lab(true_rgb)[:, 1:], rgb_to_lab(pred_rgb)[:, 1:]
    prior = photo_prior(true_rgb)
    s = score(pred_rgb, true_rgb, prior)
    lab313 = Codebook.zhang313()
    assert s["auc"] == pytest.approx(ab_accuracy_auc(pred_ab, true_ab), rel=1e-12)
    w = rebalanced_pixel_weights(true_ab, lab313, prior)
    assert s["auc_rebalanced"] == pytest.approx(ab_accuracy_auc(pred_ab, true_ab, w), rel=1e-6)
    assert s["colourfulness"] == pytest.approx(colourfulness(pred_rgb).mean().item(), rel=1e-12)
    assert s["colourfulness_true"] == pytest.approx(colourfulness(true_rgb).mean().item(), rel=1e-12)
    assert s["psnr"] == pytest.approx(psnr(pred_rgb, true_rgb).mean().item(), rel=1e-12)
    # a perfect prediction
    perfect = score(true_rgb, true_rgb, "imagenet")
    assert perfect["auc"] == 1 and perfect["auc_rebalanced"] == 1 and math.isinf(perfect["psnr"])
    # batches pool like one batch
    pooled = Scorer(prior).add(pred_rgb[:1], true_rgb[:1]).add(pred_rgb[1:], true_rgb[1:]).result()
    for key in s:
        assert pooled[key] == pytest.approx(s[key], rel=1e-12)
    assert torch.equal(photo_prior([true_rgb[:1], true_rgb[1:]]), prior)
    assert photo_prior(true_rgb).shape == imagenet_prior().shape == (313,)


def test_square_crop():
    x = torch.arange(2 * 6, dtype=torch.uint8).reshape(1, 2, 6).expand(3, 2, 6) * 20
    out = square_crop(x, 2)
    assert out.shape == (1, 3, 2, 2) and torch.equal(out[0], to_float(x)[:, :, 2:4])
    assert square_crop(torch.rand(3, 10, 30), 5).shape == (1, 3, 5, 5)
