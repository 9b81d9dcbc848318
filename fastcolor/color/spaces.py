"""Colour spaces as records: everything fastcolor knows about Lab and YUV, in one place.

A colorization network sees the lightness of a photo and predicts its chroma.
Which lightness and which chroma depends on the colour space:

* ``LAB``: CIE L*a*b* (D65). Lightness L* in [0, 100], chroma a*b*
  (ECCV 2016, the 313-bin codebook).
* ``YUV``: BT.601 analogue YUV. Lightness Y in [0, 1], chroma UV (the
  Stanford ColorUNet project).

Code that needs to split a photo, join lightness and chroma back into RGB,
normalise the network input or decide whether a photo is gray asks the
record (``space = color_space("lab")``) instead of branching on the name.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .convert import lab_to_rgb, rgb_to_lab, rgb_to_yuv, yuv_to_rgb

__all__ = ["ColorSpace", "LAB", "YUV", "SPACES", "color_space"]


@dataclasses.dataclass(frozen=True)
class ColorSpace:
    """One lightness/chroma colour space.

    Attributes:
        name: "lab" or "yuv" (the name stored in model files and codebooks).
        light_offset, light_scale: the network input is
            (lightness - light_offset) / light_scale, centred near 0.
        gray_threshold: a photo whose chroma stays within this (|c0|, |c1| <=
            threshold at every pixel) counts as gray and gets no weight in
            the loss: 5 a*b* units in Lab (the paper), 0.02 in UV (the same
            fraction of the chroma range).
        default_grid: the chroma grid of data-driven codebooks,
            ((lo0, hi0), (lo1, hi1)) and (cells0, cells1).
        regression_scale: chroma units per unit of an L2 model's output (a
            regression network predicts chroma / scale, about unit range).
    """

    name: str
    light_offset: float
    light_scale: float
    gray_threshold: float
    default_grid: tuple
    regression_scale: float
    _forward: Callable = dataclasses.field(repr=False, compare=False)
    _inverse: Callable = dataclasses.field(repr=False, compare=False)

    def split(self, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lightness (..., 1, H, W), chroma (..., 2, H, W)) of sRGB (..., 3, H, W) in [0, 1]."""
        x = self._forward(rgb)
        return x[..., :1, :, :], x[..., 1:, :, :]

    def lightness(self, rgb: torch.Tensor) -> torch.Tensor:
        """(..., 1, H, W) lightness of sRGB (..., 3, H, W)."""
        return self.split(rgb)[0]

    def chroma(self, rgb: torch.Tensor) -> torch.Tensor:
        """(..., 2, H, W) chroma of sRGB (..., 3, H, W)."""
        return self.split(rgb)[1]

    def join(self, light: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
        """sRGB (..., 3, H, W) in [0, 1] from lightness and chroma, clipped to
        the gamut (in both spaces: the conversion alone would leave YUV
        results outside [0, 1])."""
        x = torch.cat([light, chroma.to(light.dtype)], dim=-3)
        return self._inverse(x).clamp(0.0, 1.0)

    def normalize_light(self, light: torch.Tensor) -> torch.Tensor:
        """The network input of a lightness tensor (any shape); a new tensor."""
        return (light - self.light_offset) / self.light_scale


# name, lightness offset and scale, gray threshold, default grid, regression scale, conversions
LAB = ColorSpace("lab", 50.0, 100.0, 5.0, (((-110.0, 110.0), (-110.0, 110.0)), (22, 22)), 100.0,
                 rgb_to_lab, lab_to_rgb)
YUV = ColorSpace("yuv", 0.5, 1.0, 0.02, (((-0.45, 0.45), (-0.65, 0.65)), (10, 10)), 1.0,
                 rgb_to_yuv, yuv_to_rgb)

SPACES = {space.name: space for space in (LAB, YUV)}


def color_space(space) -> ColorSpace:
    """The record of a space given by name ("lab", "yuv") or as a record."""
    if isinstance(space, ColorSpace):
        return space
    try:
        return SPACES[space]
    except (KeyError, TypeError):
        raise ValueError(f"unknown colour space {space!r}; choose one of {sorted(SPACES)}") from None
