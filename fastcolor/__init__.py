"""fastcolor: learned image colorization on fused CUDA/C++ kernels.

Colorization as classification (Zhang, Isola, Efros, ECCV 2016): predict a
distribution over quantised chroma bins from lightness, train it with a
class-rebalanced cross-entropy against soft-encoded targets, decode it with
the annealed mean.
"""

from . import color, nn, ops
from .ops import reference
from .ops import backend_info, get_backend, set_backend
from .color import Codebook
from .color.prior import estimate_prior, imagenet_prior, prior_from_counts, rebalance_weights, smooth_prior
from .color import lab_to_rgb, rgb_to_gray, rgb_to_lab, rgb_to_yuv, yuv_to_rgb
from .ops import annealed_mean, bin_histogram, nearest_bin, rebalanced_cross_entropy, soft_encode
from .inference import Colorizer

__version__ = "0.1.0"

__all__ = [
    "Codebook",
    "Colorizer",
    "annealed_mean",
    "estimate_prior",
    "imagenet_prior",
    "prior_from_counts",
    "rebalance_weights",
    "smooth_prior",
    "backend_info",
    "bin_histogram",
    "color",
    "get_backend",
    "lab_to_rgb",
    "nn",
    "nearest_bin",
    "ops",
    "rebalanced_cross_entropy",
    "reference",
    "rgb_to_gray",
    "rgb_to_lab",
    "rgb_to_yuv",
    "set_backend",
    "soft_encode",
    "yuv_to_rgb",
]
