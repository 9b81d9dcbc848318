"""The network and its loss, by --loss, and what follows from the choice: how
an output is decoded into chroma and how the trained model is saved.

  rebalanced  fastcolor.nn.RebalancedCrossEntropy over the codebook's bins with
              class weights from the training set's own prior (ECCV16, section
              3.1); images without chroma get zero weight. The output is decoded
              by the annealed mean (fastcolor.nn.AnnealedMeanDecoder).
  l2          the regression baseline: the same architecture built with 2 output
              channels that predict the chroma directly, scaled to about unit
              range (chroma / ColorSpace.regression_scale: ab / 100 in Lab, UV as
              is), mean squared error against the chroma subsampled to the output
              resolution (every 4th pixel for ECCV16). The model file then has a
              regression head (fastcolor.models.Regression).

The loss layers get the run's backend explicitly (config.backend).
"""

import torch
import torch.nn.functional as F

from .. import nn as fcnn
from ..color.spaces import color_space

__all__ = ["L2Loss", "build_model_and_loss", "build_decoder", "decode_chroma", "save_trained_model"]


class L2Loss(torch.nn.Module):
    """MSE between a 2-channel output (chroma / scale) and the chroma, subsampled
    to the output's resolution."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, out, chroma):
        target = fcnn.subsample_to(chroma, out.shape[-2:], "chroma") / self.scale
        return F.mse_loss(out.float(), target)


def build_model_and_loss(config, codebook, class_weights):
    """(model, criterion) of a run: a fresh network (initialised from the global
    torch RNG) and its loss(output, chroma) -> scalar."""
    from ..models import build_model

    space = color_space(config.space)
    if config.loss == "rebalanced":
        model = build_model(config.arch, num_bins=len(codebook), width=config.width)
        criterion = fcnn.RebalancedCrossEntropy(
            codebook, prior=None, class_weights=class_weights, k=config.k, sigma=config.sigma,
            skip_gray_images=True, gray_threshold=space.gray_threshold, backend=config.backend,
        )
    else:
        model = build_model(config.arch, num_bins=2, width=config.width)
        criterion = L2Loss(space.regression_scale)
    return model, criterion


def build_decoder(config, codebook):
    """The annealed-mean decoder of the bins at the run's temperature (used to
    validate a rebalanced model; an L2 model needs none, see decode_chroma)."""
    return fcnn.AnnealedMeanDecoder(codebook, config.temperature, backend=config.backend)


def decode_chroma(config, decoder, out, size):
    """Predicted chroma at full size (H, W) from the network output."""
    if config.loss == "l2":
        ab = out.float() * color_space(config.space).regression_scale
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False) if ab.shape[-2:] != size else ab
    return decoder(out.float(), size=size)


def save_trained_model(path, config, model, codebook, class_weights, step, train_images):
    """Write model.safetensors of a run at `step`: the network with its codebook
    and class weights (rebalanced) or its regression head (l2), and the run's
    facts in meta (temperature, input_size, loss, steps, data, crop, lam, k,
    sigma, train_images)."""
    from ..models import Regression, save_model

    meta = {"temperature": config.temperature, "input_size": config.input_size, "loss": config.loss,
            "steps": step, "data": config.data, "crop": config.crop, "lam": config.lam, "k": config.k,
            "sigma": config.sigma, "train_images": train_images}
    if config.loss == "l2":  # the output is chroma / scale
        space = color_space(config.space)
        save_model(path, model, meta=meta, regression=Regression(space.name, space.regression_scale))
    else:
        save_model(path, model, codebook, meta, class_weights=class_weights)
