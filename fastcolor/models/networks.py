"""Colorization networks and their one-file format.

Two architectures (docs/design.md, section 2.7), both mapping normalised lightness
(N, 1, H, W) to chroma-bin logits:

* ``ECCV16``: the network of Zhang, Isola, Efros (ECCV 2016): eight blocks of
  3x3 convolutions (dilated in blocks 5 and 6), logits at 1/4 resolution.
  32,235,385 parameters at width 1 and Q = 313 (the paper's "32.2M").
* ``ColorUNet``: the small U-Net of the Stanford project (arXiv 1811.03120),
  logits at full resolution; 148,928 parameters at width 1 and Q = 32.

``width`` multiplies every channel count (rounded to a multiple of 8, at
least 8), for quick experiments and tests. The model file (a network, its
codebook or regression, and metadata) is fastcolor.models.modelfile.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..color.spaces import color_space
from ..ops import MAX_BINS

__all__ = [
    "ECCV16",
    "ColorUNet",
    "ARCHITECTURES",
    "build_model",
    "normalize_light",
    "predict_padded",
    "unwrap",
]

def _channels(c, width):
    """c * width rounded to the nearest multiple of 8, at least 8."""
    return max(8, int(math.floor(c * width / 8 + 0.5)) * 8)


def _check_config(num_bins, width):
    if isinstance(num_bins, bool) or not isinstance(num_bins, int) or not 1 <= num_bins <= MAX_BINS:
        raise ValueError(f"num_bins must be an integer in [1, {MAX_BINS}], got {num_bins!r}")
    try:
        width = float(width)
    except (TypeError, ValueError):
        raise ValueError(f"width must be a positive number, got {width!r}") from None
    if not 0 < width < float("inf"):
        raise ValueError(f"width must be a positive finite number, got {width!r}")
    return num_bins, width


def _init_weights(module, head):
    """He (Kaiming) normal init for training from scratch.

    Every convolution feeds a ReLU except ``head``, which gets the linear
    (gain 1) variant so that the initial logits stay O(1). For a transposed
    convolution each output pixel sums in_channels * k^2 / stride^2 inputs
    on average, which is the fan-in used for it. Biases start at 0,
    BatchNorm at the identity.
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            k = m.kernel_size[0] * m.kernel_size[1]
            if isinstance(m, nn.ConvTranspose2d):
                fan_in = m.in_channels * k / (m.stride[0] * m.stride[1])
            else:
                fan_in = m.in_channels // m.groups * k
            gain = 1.0 if m is head else 2.0
            nn.init.normal_(m.weight, 0.0, math.sqrt(gain / fan_in))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _check_input(model, x):
    if x.dim() != 4 or x.shape[1] != 1:
        raise ValueError(f"{type(model).__name__} expects lightness of shape (N, 1, H, W), got {tuple(x.shape)}")
    m = model.input_multiple
    if x.shape[-2] % m or x.shape[-1] % m:
        raise ValueError(
            f"{type(model).__name__} needs H and W divisible by {m}, got {tuple(x.shape[-2:])}; "
            "use fastcolor.models.predict_padded for other sizes"
        )


class _ConfigMixin:
    arch = None

    @property
    def config(self):
        """{"arch", "num_bins", "width"}: what build_model needs to rebuild it."""
        return {"arch": self.arch, "num_bins": self.num_bins, "width": self.width}

    def extra_repr(self):
        return f"num_bins={self.num_bins}, width={self.width}"


def _conv_block(c_in, c_out, n, stride_last=1, dilation=1):
    """n 3x3 convolutions with ReLU, the last one of stride ``stride_last``,
    then BatchNorm (after the block's last ReLU, as in the released model)."""
    layers = []
    for i in range(n):
        stride = stride_last if i == n - 1 else 1
        layers += [
            nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, stride=stride, padding=dilation, dilation=dilation),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.BatchNorm2d(c_out))
    return nn.Sequential(*layers)


class ECCV16(_ConfigMixin, nn.Module):
    """The colorization network of Zhang et al. (ECCV 2016).

    Blocks (channels at width 1; every conv 3x3 with ReLU; BN closes blocks 1-7):
    1: 64, 64 (stride 2) | 2: 128, 128 (stride 2) | 3: 256 x3 (stride 2 on the
    last) | 4: 512 x3 | 5, 6: 512 x3, dilation 2 | 7: 512 x3 | 8: 4x4
    transposed conv stride 2 to 256, ReLU, 256, 256, then a 1x1 conv to Q logits.

    forward: x (N, 1, H, W) normalised lightness ((L - 50) / 100, see
    normalize_light), H and W multiples of 8 -> logits (N, Q, H/4, W/4).
    Works in channels_last memory format (convolutions, ReLU and BatchNorm
    only).
    """

    arch = "eccv16"
    output_stride = 4
    input_multiple = 8

    def __init__(self, num_bins=313, width=1.0):
        super().__init__()
        self.num_bins, self.width = _check_config(num_bins, width)
        c64, c128, c256, c512 = (_channels(c, self.width) for c in (64, 128, 256, 512))
        self.block1 = _conv_block(1, c64, 2, stride_last=2)
        self.block2 = _conv_block(c64, c128, 2, stride_last=2)
        self.block3 = _conv_block(c128, c256, 3, stride_last=2)
        self.block4 = _conv_block(c256, c512, 3)
        self.block5 = _conv_block(c512, c512, 3, dilation=2)
        self.block6 = _conv_block(c512, c512, 3, dilation=2)
        self.block7 = _conv_block(c512, c512, 3)
        self.block8 = nn.Sequential(
            nn.ConvTranspose2d(c512, c256, 4, stride=2, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c256, c256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c256, c256, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(c256, self.num_bins, 1)
        _init_weights(self, self.head)

    def forward(self, x):
        _check_input(self, x)
        for block in (self.block1, self.block2, self.block3, self.block4,
                      self.block5, self.block6, self.block7, self.block8):
            x = block(x)
        return self.head(x)


def _up(c_in, c_out):
    """3x3 transposed convolution of stride 2 (exactly doubles H and W), ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1), nn.ReLU(inplace=True)
    )


class _Down(nn.Sequential):
    """conv3-ReLU-conv3-ReLU-maxpool2-BN."""

    def __init__(self, c_in, c_out):
        super().__init__(
            nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.BatchNorm2d(c_out),
        )


class _Up(nn.Module):
    """Transposed conv (x2), concatenation with the skip features, two conv3, BN."""

    def __init__(self, c_in, c_up, c_skip, c_out):
        super().__init__()
        self.up = _up(c_in, c_up)
        self.convs = nn.Sequential(
            nn.Conv2d(c_up + c_skip, c_out, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True),
            nn.BatchNorm2d(c_out),
        )

    def forward(self, x, skip):
        return self.convs(torch.cat([self.up(x), skip], dim=1))


class ColorUNet(_ConfigMixin, nn.Module):
    """The small U-Net of the Stanford ColorUNet project (arXiv 1811.03120).

    Channels at width 1, for a 256 x 256 input:

    * down groups (conv3-ReLU-conv3-ReLU-maxpool2-BN): 16 (-> 128^2), 32
      (-> 64^2), 64 (-> 32^2);
    * up groups (3x3 transposed conv stride 2 halving the channels, as in the
      U-Net paper; concatenation with the skip features; two conv3; BN):
      64 -> 32 (+ the 32 channels at 64^2) -> 32, then 32 -> 16 (+ the 16
      channels at 128^2) -> 32;
    * output group: transposed conv 32 -> 16 back to 256^2, conv3 16, conv1
      to Q logits.

    148,928 parameters at Q = 32 (the report says "about 142k"; its exact
    layer widths are not published, this is the plain reading of its figure).

    forward: x (N, 1, H, W) normalised lightness (Y - 0.5, see
    normalize_light), H and W multiples of 8 -> logits (N, Q, H, W).
    """

    arch = "colorunet"
    output_stride = 1
    input_multiple = 8

    def __init__(self, num_bins=32, width=1.0):
        super().__init__()
        self.num_bins, self.width = _check_config(num_bins, width)
        c16, c32, c64 = (_channels(c, self.width) for c in (16, 32, 64))
        self.down1 = _Down(1, c16)
        self.down2 = _Down(c16, c32)
        self.down3 = _Down(c32, c64)
        self.up1 = _Up(c64, c32, c32, c32)
        self.up2 = _Up(c32, c16, c16, c32)
        self.out = nn.Sequential(
            _up(c32, c16),
            nn.Conv2d(c16, c16, 3, padding=1),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Conv2d(c16, self.num_bins, 1)
        _init_weights(self, self.head)

    def forward(self, x):
        _check_input(self, x)
        d1 = self.down1(x)  # 1/2 resolution
        d2 = self.down2(d1)  # 1/4
        d3 = self.down3(d2)  # 1/8
        u = self.up2(self.up1(d3, d2), d1)
        return self.head(self.out(u))


ARCHITECTURES = {"eccv16": ECCV16, "colorunet": ColorUNet}


def build_model(arch, num_bins, width=1.0):
    """A fresh, initialised network: arch "eccv16" or "colorunet"."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[arch](num_bins=num_bins, width=width)


def normalize_light(light, space):
    """The network input from lightness, centred near 0 (ColorSpace.normalize_light).

    lab: (L - 50) / 100 for L* in [0, 100]; yuv: Y - 0.5 for Y in [0, 1].
    Works on any tensor shape; returns a new tensor.
    """
    return color_space(space).normalize_light(light)


def unwrap(model):
    """The plain module inside torch.compile / DataParallel wrappers."""
    while True:
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        else:
            return model


def predict_padded(model, x):
    """Logits for lightness of any size.

    Pads x (N, 1, H, W) on the bottom and right (replicating the edge) up to
    a multiple of model.input_multiple, runs the model, and crops the logits
    to (N, Q, ceil(H / s), ceil(W / s)) with s = model.output_stride.
    """
    inner = unwrap(model)
    m, s = getattr(inner, "input_multiple", None), getattr(inner, "output_stride", None)
    if m is None or s is None:
        raise ValueError("predict_padded needs a model with input_multiple and output_stride (a fastcolor model)")
    if x.dim() != 4:
        raise ValueError(f"x must have shape (N, 1, H, W), got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h == 0 or w == 0:
        raise ValueError(f"x has an empty spatial size {(h, w)}")
    pad_h, pad_w = -h % m, -w % m
    if pad_h or pad_w:
        # Replicate padding is defined for any pad size, unlike reflect.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    logits = model(x)
    return logits[..., : -(-h // s), : -(-w // s)]
