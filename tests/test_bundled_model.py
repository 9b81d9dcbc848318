"""The model that ships with the package: present, small, documented, and
better than the gray baseline on photos it never saw."""

import os

import numpy as np
import pytest
import torch

from fastcolor import Codebook, Colorizer, rgb_to_lab
from fastcolor.inference import bundled_model_path
from fastcolor.metrics import ab_accuracy_auc, colourfulness, rebalanced_pixel_weights
from fastcolor.models import load_model


def test_bundled_model_is_shipped_small_and_documented():
    path = bundled_model_path()
    assert path.is_file(), path
    assert os.path.getsize(path) <= 15 * 2**20
    card = path.with_name("MODEL_CARD.md").read_text()
    model, codebook, meta = load_model(path)
    for word in (model.config["arch"], codebook.name, "rebalanced AuC", "colourfulness"):
        assert word in card
    v = meta["validation"]
    # The claims of the card, as measured when the model was packaged.
    assert v["auc_rebalanced"] > v["gray_auc_rebalanced"]
    assert v["colourfulness"] > v["l2_twin_colourfulness"]
    assert v["colourfulness"] < v["ground_truth_colourfulness"] * 1.5


def _held_out_photos():
    skimage_data = pytest.importorskip("skimage.data")
    # scikit-image's photos are validation-only in the recipe: never trained on.
    return {name: torch.from_numpy(np.ascontiguousarray(getattr(skimage_data, name)()[..., :3])).permute(2, 0, 1)
            for name in ("chelsea", "coffee")}


def test_bundled_model_colorizes_unseen_photos_better_than_gray():
    colorizer = Colorizer.load(device="cpu")
    for name, rgb in _held_out_photos().items():
        gray = rgb.float().mean(0, keepdim=True).round().to(torch.uint8)  # a black-and-white print of it
        result = colorizer.colorize(gray)
        assert result.rgb.shape == rgb.shape
        out = result.rgb[None].float() / 255
        truth = rgb[None].float() / 255
        lab_out, lab_true = rgb_to_lab(out), rgb_to_lab(truth)
        # It adds colour, and keeps the lightness it was given.
        assert float(colourfulness(out)) > 5.0, name
        lab_in = rgb_to_lab(gray[None].float().expand(1, 3, -1, -1) / 255)
        assert (lab_out[:, 0] - lab_in[:, 0]).abs().median() < 1.0
        # Per-pixel chroma closer to the truth than no colour at all, by the
        # paper's class-rebalanced accuracy (pixels weighted by the inverse
        # ImageNet prior of their true bin).
        true_ab = lab_true[:, 1:]
        weight = rebalanced_pixel_weights(true_ab, Codebook.zhang313(), "imagenet")
        model_auc = ab_accuracy_auc(lab_out[:, 1:], true_ab, pixel_weight=weight)
        gray_auc = ab_accuracy_auc(torch.zeros_like(true_ab), true_ab, pixel_weight=weight)
        assert model_auc > gray_auc, (name, model_auc, gray_auc)
