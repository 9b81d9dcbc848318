"""Validation during training: a fixed set of centre crops of the validation
folder, scored by rank 0 every --val-every steps and at the last step.

The log record holds val_loss (the training loss on the crops), val_images, and
the scores of fastcolor.evaluation.score prefixed with "val_" (val_auc,
val_auc_rebalanced, val_colourfulness, val_colourfulness_true, val_psnr), the
same numbers under the same names as ``fastcolor evaluate`` reports: measured on
the predicted RGB (after the gamut clip) in Lab a*b*, auc_rebalanced weighted by
the prior of the validation crops themselves over Zhang's 313 bins
(evaluation.photo_prior, computed once).
"""

import torch

from ..color.spaces import color_space
from ..evaluation import photo_prior, score
from .losses import decode_chroma

__all__ = ["ValidationSet", "validation_set", "validate"]


class ValidationSet:
    """The validation crops (N, 3, crop, crop) float RGB in [0, 1] and their
    (313,) photo prior."""

    def __init__(self, rgb):
        self.rgb = rgb
        self.prior = photo_prior(rgb)

    def __len__(self):
        return self.rgb.shape[0]


def validation_set(config, rank):
    """The fixed validation set of a run: up to val_images centre crops of the
    validation folder, on rank 0; None on the other ranks or without validation."""
    if config.val is None or config.val_images == 0 or rank != 0:
        return None
    from ..data.dataset import ImageFolder

    ds = ImageFolder(config.val, crop_size=config.crop, augment=False, max_side=config.max_side, seed=config.seed)
    n = min(len(ds), config.val_images)
    if n == 0:
        return None
    return ValidationSet(torch.stack([ds[i]["rgb"] for i in range(n)]))


@torch.no_grad()
def validate(config, model, criterion, decoder, val, device, amp):
    """The record of the module docstring for the model on a ValidationSet."""
    space = color_space(config.space)
    was_training = model.training
    model.eval()
    losses, preds = [], []
    for rgb in val.rgb.split(max(1, config.batch)):
        rgb = rgb.to(device)
        light, chroma = space.split(rgb)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(space.normalize_light(light))
        losses.append(criterion(out, chroma).float().item() * rgb.shape[0])
        preds.append(decode_chroma(config, decoder, out, tuple(rgb.shape[-2:])).cpu())
    model.train(was_training)

    pred_rgb = space.join(space.lightness(val.rgb), torch.cat(preds))
    scores = score(pred_rgb, val.rgb, val.prior)
    return {"val_loss": sum(losses) / len(val), **{f"val_{k}": v for k, v in scores.items()}, "val_images": len(val)}
