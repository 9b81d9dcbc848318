"""Colorization networks and their model file.

* ``fastcolor.models.networks``: ``ECCV16`` and ``ColorUNet``, ``build_model``,
  ``predict_padded`` (any input size).
* ``fastcolor.models.modelfile``: ``save_model`` / ``load_model``, the
  versioned one-file format (weights, codebook or regression, metadata).
"""

from .networks import (
    ARCHITECTURES,
    ColorUNet,
    ECCV16,
    build_model,
    normalize_light,
    predict_padded,
    unwrap,
)
from .modelfile import Regression, convert, load_model, save_model

__all__ = [
    "ARCHITECTURES",
    "ColorUNet",
    "ECCV16",
    "build_model",
    "load_model",
    "normalize_light",
    "predict_padded",
    "save_model",
    "Regression",
    "convert",
    "unwrap",
]
