"""The colour maths: conversions, colour-space records, codebooks and priors.

* ``fastcolor.color.convert``: sRGB <-> CIE L*a*b* / BT.601 YUV, batched and
  differentiable (``rgb_to_lab``, ``lab_to_rgb``, ...).
* ``fastcolor.color.spaces``: ``LAB`` and ``YUV`` as records (split, join,
  lightness normalisation, gray threshold, default grid, regression scale).
* ``fastcolor.color.codebook``: ``Codebook``, the quantised chroma bins.
* ``fastcolor.color.prior``: colour priors and class-rebalancing weights.
"""

from .convert import lab_to_rgb, rgb_to_gray, rgb_to_lab, rgb_to_yuv, yuv_to_rgb
from .spaces import LAB, SPACES, YUV, ColorSpace, color_space
from .codebook import Codebook

__all__ = [
    "LAB",
    "SPACES",
    "YUV",
    "Codebook",
    "ColorSpace",
    "color_space",
    "lab_to_rgb",
    "rgb_to_gray",
    "rgb_to_lab",
    "rgb_to_yuv",
    "yuv_to_rgb",
]
