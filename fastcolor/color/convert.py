"""Batched, differentiable colour-space conversions in pure torch.

Every function takes a floating-point tensor of shape ``(..., 3, H, W)``
(channel dimension -3, any number of leading batch dimensions) and returns a
tensor of the same shape, dtype and device (``rgb_to_gray`` returns one
channel). RGB is sRGB in [0, 1].

* ``rgb_to_lab`` / ``lab_to_rgb``: CIE L*a*b*, D65 white, 2-degree observer,
  with the same constants, thresholds and out-of-range behaviour as
  ``skimage.color.rgb2lab`` / ``lab2rgb``.
* ``rgb_to_yuv`` / ``yuv_to_rgb``: BT.601 analogue YUV, exact inverses.
* ``rgb_to_gray``: BT.601 luma Y.

float32/float64 inputs are computed in their own dtype; float16/bfloat16 are
computed in float32 and cast back. The 3x3 matrices are applied as scalar
multiply-adds rather than a matmul, so no constant tensors are needed on the
device and TF32 matmul settings cannot degrade the result.
"""
import torch

__all__ = ["rgb_to_lab", "lab_to_rgb", "rgb_to_yuv", "yuv_to_rgb", "rgb_to_gray"]

_XYZ_FROM_RGB = [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
]
_D65 = (0.95047, 1.0, 1.08883)  # reference white (X, Y, Z), 2-degree observer

_KR, _KB, _UMAX, _VMAX = 0.299, 0.114, 0.436, 0.615
_YUV_FROM_RGB = [
    [_KR, 1.0 - _KR - _KB, _KB],
    [-_UMAX * _KR / (1 - _KB), -_UMAX * (1 - _KR - _KB) / (1 - _KB), _UMAX],
    [_VMAX, -_VMAX * (1 - _KR - _KB) / (1 - _KR), -_VMAX * _KB / (1 - _KR)],
]


def _inv(m):
    return torch.linalg.inv(torch.tensor(m, dtype=torch.float64)).tolist()


_RGB_FROM_XYZ = _inv(_XYZ_FROM_RGB)
_RGB_FROM_YUV = _inv(_YUV_FROM_RGB)
# Fold the white-point scaling into the matrices: rgb_lin -> XYZ / white and
# XYZ / white -> rgb_lin (changes float64 results only at the 1e-16 level).
_XYZN_FROM_RGB = [[v / w for v in row] for row, w in zip(_XYZ_FROM_RGB, _D65)]
_RGB_FROM_XYZN = [[v * w for v, w in zip(row, _D65)] for row in _RGB_FROM_XYZ]


def _prepare(x):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(
            "expected a tensor of shape (..., 3, H, W) with 3 channels in "
            f"dimension -3, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(
            f"expected a floating-point tensor, got {x.dtype}; "
            "convert with x.float() / 255")
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _mat3(m, x):
    c0, c1, c2 = x.unbind(-3)
    return torch.stack([r[0] * c0 + r[1] * c1 + r[2] * c2 for r in m], dim=-3)


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (..., 3, H, W) in [0, 1] -> CIE L*a*b* (..., 3, H, W).

    L is in [0, 100]; a and b are roughly in [-128, 127] for in-gamut colours.
    Steps: linearise ``c > 0.04045 ? ((c + 0.055) / 1.055) ** 2.4 : c / 12.92``;
    XYZ = M_srgb @ rgb_lin; t = XYZ / D65 white (0.95047, 1, 1.08883);
    ``f(t) = t > 0.008856 ? t ** (1/3) : 7.787 t + 16/116``;
    L = 116 f(Y) - 16, a = 500 (f(X) - f(Y)), b = 200 (f(Y) - f(Z)).
    The input is not clamped: values outside [0, 1] are converted as
    scikit-image does (negative values take the linear branches).

    Accuracy vs ``skimage.color.rgb2lab`` (float64 reference), for inputs
    in [-0.1, 1.1]: float64 ~1e-12; float32 max abs error < 1.5e-4
    (measured <= 7.7e-5, dominated by the 500x scaling of a*).
    """
    x = _prepare(rgb)
    # torch.where evaluates both branches: clamp each pow argument to its own
    # side of the threshold so the unused branch cannot produce NaN gradients.
    lin = torch.where(x > 0.04045,
                      ((x.clamp_min(0.04045) + 0.055) / 1.055) ** 2.4,
                      x / 12.92)
    f = [torch.where(t > 0.008856, t.clamp_min(0.008856) ** (1.0 / 3.0),
                     7.787 * t + 16.0 / 116.0)
         for t in _mat3(_XYZN_FROM_RGB, lin).unbind(-3)]
    lab = torch.stack([116.0 * f[1] - 16.0, 500.0 * (f[0] - f[1]),
                       200.0 * (f[1] - f[2])], dim=-3)
    return lab.to(rgb.dtype)


def lab_to_rgb(lab: torch.Tensor, *, clamp: bool = True) -> torch.Tensor:
    """CIE L*a*b* (..., 3, H, W) -> sRGB (..., 3, H, W).

    Inverse of :func:`rgb_to_lab` (L in [0, 100], a/b roughly [-128, 127]).
    fy = (L + 16) / 116, fx = fy + a / 500, fz = max(fy - b / 200, 0);
    ``t = f > 0.2068966 ? f ** 3 : (f - 16/116) / 7.787``; XYZ = t * white;
    rgb_lin = M_srgb^-1 @ XYZ;
    ``c = lin > 0.0031308 ? 1.055 lin ** (1/2.4) - 0.055 : 12.92 lin``.
    Like ``skimage.color.lab2rgb``, negative fz is clipped to 0 (silently) and
    with ``clamp=True`` the result is clipped to [0, 1]. ``clamp=False`` skips
    that final clip (out-of-gamut colours keep a useful gradient, e.g. for
    losses); the fz clip is always applied.

    Accuracy vs ``skimage.color.lab2rgb``: float64 ~1e-14; float32 max abs
    error < 2e-5 (measured <= 8e-6) over L in [0, 100], a, b in [-128, 127].
    """
    x = _prepare(lab)
    L, a, b = x.unbind(-3)
    fy = (L + 16.0) / 116.0
    f = torch.stack([fy + a / 500.0, fy, (fy - b / 200.0).clamp_min(0.0)], dim=-3)
    t = torch.where(f > 0.2068966, f ** 3, (f - 16.0 / 116.0) / 7.787)
    lin = _mat3(_RGB_FROM_XYZN, t)
    rgb = torch.where(lin > 0.0031308,
                      1.055 * lin.clamp_min(0.0031308) ** (1.0 / 2.4) - 0.055,
                      12.92 * lin)
    if clamp:
        rgb = rgb.clamp(0.0, 1.0)
    return rgb.to(lab.dtype)


def rgb_to_yuv(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3, H, W) in [0, 1] -> BT.601 analogue YUV (..., 3, H, W).

    Y = .299 R + .587 G + .114 B in [0, 1];
    U = 0.436 (B - Y) / (1 - .114) = -.14713 R - .28886 G + .436 B, in
    [-0.436, 0.436]; V = 0.615 (R - Y) / (1 - .299) = .615 R - .51499 G
    - .10001 B, in [-0.615, 0.615]. No clamping.
    ``skimage.color.rgb2yuv`` uses slightly different U/V coefficients; for
    RGB in [0, 1] the two differ by at most ~1.1e-5 (U) and ~2.5e-5 (V).
    """
    x = _prepare(rgb)
    return _mat3(_YUV_FROM_RGB, x).to(rgb.dtype)


def yuv_to_rgb(yuv: torch.Tensor) -> torch.Tensor:
    """BT.601 analogue YUV (..., 3, H, W) -> RGB (..., 3, H, W).

    Exact inverse of :func:`rgb_to_yuv` (matrix inverted in float64 at
    import); e.g. R = Y + 1.13984 V, B = Y + 2.03211 U. No clamping. Differs
    from ``skimage.color.yuv2rgb`` by at most ~3e-5 for YUV of RGB in [0, 1].
    """
    x = _prepare(yuv)
    return _mat3(_RGB_FROM_YUV, x).to(yuv.dtype)


def rgb_to_gray(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (..., 3, H, W) -> luma (..., 1, H, W), Y = .299 R + .587 G + .114 B."""
    x = _prepare(rgb)
    return _mat3(_YUV_FROM_RGB[:1], x).to(rgb.dtype)
