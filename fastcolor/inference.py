"""Colorize photos with a trained model: the inference of Zhang et al. (ECCV 2016).

    colorizer = fastcolor.inference.Colorizer.load("run")     # or a model.safetensors
    result = colorizer.colorize("photo.jpg")                  # any size, gray or colour
    result.rgb        # uint8 (3, H, W), the input's size
    result.alpha      # uint8 (1, H, W) or None: the input's alpha, unchanged

Method (docs/design.md, section 2.8): take the lightness of the input
(L* of Lab, or Y of YUV: the codebook's space), resize it to the network size
(input_size x input_size, bilinear with antialiasing, as the paper does),
predict logits, decode them with the annealed mean at temperature T (T = 0:
the mode), upsample the chroma bilinearly to the original size, join it with
the ORIGINAL full-resolution lightness and convert to sRGB (clipped to the
gamut). Colour inputs are reduced to their lightness first, so the output
keeps the input's lightness exactly except where the gamut clip changes it.

Confidence (the Stanford ColorUNet report): per pixel C1 = the top class
probability and C2 = top / second probability of softmax(logits) at T = 1,
upsampled to the original size; C1 in (0, 1], C2 >= 1.
"""

import contextlib
import dataclasses
import importlib.resources
from pathlib import Path

import torch

from .color.spaces import color_space
from .data.images import read_image_float, to_uint8
from .data.transforms import resize
from .models.modelfile import Regression
from .nn import AnnealedMeanDecoder
from .ops.backend import resolve as resolve_backend
from .ops.functional import check_temperature

__all__ = ["Colorizer", "ColorizeResult", "Prepared", "bundled_model_path", "DEFAULT_TEMPERATURE", "DEFAULT_INPUT_SIZE"]

DEFAULT_TEMPERATURE = 0.38  # the paper's annealed-mean temperature
DEFAULT_INPUT_SIZE = 256  # the network sees input_size x input_size lightness
MODEL_FILE = "model.safetensors"  # the weights inside a training run directory


def bundled_model_path():
    """Where the model shipped with fastcolor lives (it may be absent)."""
    return Path(str(importlib.resources.files(__package__).joinpath("assets", "colorizer.safetensors")))


@dataclasses.dataclass
class ColorizeResult:
    """One colorized image, at the input's resolution.

    rgb: uint8 (3, H, W), the colorized image.
    alpha: uint8 (1, H, W), the input's alpha channel unchanged, or None.
    light: float32 (1, H, W), the input's lightness the result was built on
        (L* in [0, 100] for "lab" models, Y in [0, 1] for "yuv").
    chroma: float32 (2, H, W), the predicted chroma (a*b* or UV) before the
        conversion to RGB and its gamut clip.
    space: "lab" or "yuv".
    confidence_top: float32 (H, W), C1 = top class probability, or None.
    confidence_ratio: float32 (H, W), C2 = top / second probability, or None.
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None
    light: torch.Tensor
    chroma: torch.Tensor
    space: str
    confidence_top: torch.Tensor | None = None
    confidence_ratio: torch.Tensor | None = None

    @property
    def size(self):
        """(H, W)."""
        return tuple(self.rgb.shape[-2:])

    def gray_rgb(self):
        """uint8 (3, H, W): the input as the network saw it, its lightness with zero chroma."""
        return to_uint8(color_space(self.space).join(self.light[None], torch.zeros_like(self.chroma[None]))[0])


# ------------------------------------------------------------------ input images


def load_input(image):
    """Any supported image as (rgb float32 (3, H, W) in [0, 1], alpha uint8 (1, H, W) or None), on the CPU.

    fastcolor.data.images.read_image_float: a path or PIL image (decoded with
    EXIF orientation, palettes, 16-bit files, ...), a torch tensor (C, H, W)
    with C = 1, 2, 3 or 4 (gray, gray+alpha, RGB, RGBA; uint8, uint16, bool,
    or float in [0, 1], kept at its precision), or a numpy array (H, W),
    (H, W, C) of the same kinds.
    """
    return read_image_float(image)


# ------------------------------------------------------------------ helpers


def _resolve_device(device):
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for but no CUDA device is available")
    return device


def resolve_model_path(path=None):
    """The model file a path names: a .safetensors file, or a training run
    directory holding model.safetensors; None = the bundled model."""
    if path is None:
        bundled = bundled_model_path()
        if not bundled.is_file():
            raise FileNotFoundError(
                f"no bundled model: {bundled} does not exist. Train one "
                "(fastcolor data --out photos; fastcolor train --data photos --out run) "
                "and pass its run directory or model.safetensors (--model run, Colorizer.load('run'))"
            )
        return bundled
    path = Path(path)
    if path.is_dir():
        inner = path / MODEL_FILE
        if not inner.is_file():
            raise FileNotFoundError(f"{path} is a directory without a {MODEL_FILE} (not a training run?)")
        return inner
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist")
    return path


# ------------------------------------------------------------------ the colorizer


class Colorizer:
    """A trained colorization model, ready to colorize images of any size.

    Build it with Colorizer.load(path); or directly from a model and its codebook.

    Args:
        model: a network from fastcolor.models (logits (N, Q, H/s, W/s) of the
            normalised lightness (N, 1, H, W)), or an L2 regressor (N, 2, ...).
        codebook: its fastcolor.Codebook (gives the colour space), or None
            for an L2 model.
        meta: the model file's metadata: "temperature" (default 0.38),
            "input_size" (default 256), "loss" ("rebalanced" or "l2"), and
            for L2 models "regression" (a fastcolor.models.Regression: the
            space, and the scale with chroma = scale * output).
        device: "auto" (CUDA when available), "cpu", "cuda" or a torch.device.
        backend: "kernels" (compiled kernels, where they exist), "reference"
            (pure PyTorch) or None (the process default) for the
            annealed-mean decode; kept per Colorizer, so Colorizers with
            different backends can run side by side in threads.
        autocast: run the network under bfloat16 autocast on CUDA.
    """

    def __init__(self, model, codebook, meta=None, device="auto", backend=None, autocast=False):
        meta = dict(meta or {})
        self.path = None  # the model file, when loaded from one
        self.backend = None if backend is None else resolve_backend(backend)
        self.device = _resolve_device(device)
        self.model = model.to(self.device).eval()
        self.codebook = codebook
        self.meta = meta
        self.autocast = bool(autocast)
        self.temperature = check_temperature(meta.get("temperature", DEFAULT_TEMPERATURE), "the model's metadata")
        self.input_size = int(meta.get("input_size", DEFAULT_INPUT_SIZE))
        if self.input_size < 8:
            raise ValueError(f"input_size must be at least 8, got {self.input_size}")
        if codebook is None:
            regression = meta.get("regression")
            if not isinstance(regression, dict):
                raise ValueError("a model without a codebook must be an L2 model with meta['regression'] "
                                 "(fastcolor.models.Regression(space, scale))")
            regression = Regression(regression["space"], regression["scale"])
            self.loss, self.space, self.regression_scale = "l2", regression.space, regression.scale
            self.decoder = None
        else:
            self.loss = meta.get("loss", "rebalanced")
            if self.loss != "rebalanced":
                raise ValueError(f"a model with a codebook is a classification model; its metadata says "
                                 f"loss={self.loss!r} (an L2 model is saved with a regression, not a codebook)")
            self.space, self.regression_scale = codebook.space, None
            self.decoder = AnnealedMeanDecoder(codebook, self.temperature, backend=self.backend).to(self.device)
        self.color_space = color_space(self.space)

    @classmethod
    def load(cls, path=None, device="auto", backend=None, autocast=False):
        """Load a model file (models.save_model) or the model.safetensors of a
        training run directory; path=None loads the bundled model."""
        from .models import load_model

        if backend is not None:
            resolve_backend(backend)
        file = resolve_model_path(path)
        model, codebook, meta = load_model(file, map_location="cpu")
        colorizer = cls(model, codebook, meta, device=device, backend=backend, autocast=autocast)
        colorizer.path = file
        return colorizer

    def __repr__(self):
        return (f"Colorizer(path={str(self.path) if self.path else None!r}, space={self.space!r}, "
                f"bins={len(self.codebook) if self.codebook is not None else None}, loss={self.loss!r}, temperature={self.temperature:g}, "
                f"input_size={self.input_size}, device={str(self.device)!r})")

    def colorize(self, image, temperature=None, return_confidence=False, hints=None, palette=None,
                 hint_options=None):
        """Colorize one image (see load_input for the accepted types); returns a ColorizeResult.

        hints: colour hints for this image (fastcolor.hints: Hint, (x, y,
        "#RRGGBB"), {"x", "y", "color"} or {"points": [[x, y], ...], "color"};
        pixels of the image as displayed). palette: a fastcolor.hints.Palette
        or "#hex,#hex,..." / an image path. hint_options: a HintOptions, or a
        dict of its fields (e.g. {"propagation": "gaussian"}). Classification
        models only (ValueError for an L2 model)."""
        return self.colorize_batch([image], batch_size=1, temperature=temperature,
                                   return_confidence=return_confidence,
                                   hints=None if hints is None else [hints], palette=palette,
                                   hint_options=hint_options)[0]

    def colorize_batch(self, images, batch_size=8, temperature=None, return_confidence=False, progress=False,
                       hints=None, palette=None, hint_options=None):
        """Colorize many images of any sizes; the network sees them resized to
        input_size x input_size and stacked batch_size at a time. Returns a
        list of ColorizeResult in the input order. FloatingPointError when the
        network's output (or its chroma) is not finite: an error, never a black
        image. hints: one list of hints per image (None or [] for none);
        palette and hint_options: for every image (see colorize)."""
        if isinstance(images, torch.Tensor) and images.dim() == 4:
            images = list(images)
        images = list(images)
        steer = self.steering(len(images), hints, palette, hint_options)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        t = self.temperature if temperature is None else check_temperature(temperature, "colorize")
        if return_confidence and self.loss == "l2":
            raise ValueError("confidence maps need a classification model; this one regresses chroma (loss='l2')")
        results = []
        chunks = range(0, len(images), batch_size)
        if progress:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc="colorize", unit="batch")
        for start in chunks:
            loaded = [load_input(im) for im in images[start:start + batch_size]]
            part = None if steer is None else (steer[0][start:start + batch_size],) + steer[1:]
            results += self._colorize_loaded(loaded, t, return_confidence, part)
        return results

    def steering(self, n, hints, palette, hint_options):
        """(hints per image, Palette or None, HintOptions) or None when nothing steers."""
        from .hints import HintOptions, Palette, as_hints

        if hints is not None:
            hints = list(hints)
            if len(hints) != n:
                raise ValueError(f"hints must hold one list of hints per image: {len(hints)} lists for {n} images")
            hints = [as_hints(h) for h in hints]
        if isinstance(palette, str):
            palette = Palette.parse(palette)
        elif palette is not None and not isinstance(palette, Palette):
            raise ValueError(f"palette must be a fastcolor.hints.Palette or a string, got {type(palette).__name__}")
        if not (hints and any(hints)) and palette is None:
            return None
        if self.loss == "l2":
            raise ValueError("hints and palettes act on the predicted colour distribution; this model regresses "
                             "chroma (loss='l2') and has none: use a classification model")
        if isinstance(hint_options, dict):
            hint_options = HintOptions(**hint_options)
        elif hint_options is None:
            hint_options = HintOptions()
        elif not isinstance(hint_options, HintOptions):
            raise ValueError(f"hint_options must be a HintOptions or a dict, got {type(hint_options).__name__}")
        palette_chroma = None if palette is None else palette.chroma(self.codebook)
        return (hints or [[]] * n, palette, hint_options, palette_chroma)

    # One batch of already loaded (rgb float (3, H, W), alpha) pairs.
    @torch.inference_mode()
    def _colorize_loaded(self, loaded, t, return_confidence, steer=None):
        from .models import predict_padded

        size = (self.input_size, self.input_size)
        space = self.color_space
        lights = [space.lightness(rgb[None].to(self.device)) for rgb, _ in loaded]
        x = torch.cat([resize(space.normalize_light(light), size) for light in lights])
        amp = self.autocast and self.device.type == "cuda"
        with torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext():
            out = predict_padded(self.model, x).float()
        plain_small = {}  # image index -> its unhinted decode, where the hints' effect is refined
        if self.loss == "l2":
            chroma_small = out[:, :2] * self.regression_scale
        elif steer is not None:  # hints and palettes: fastcolor.hints
            from .hints import steer_logits

            sizes = [tuple(light.shape[-2:]) for light in lights]
            steered = steer_logits(out, x, sizes, steer[0], steer[1], self.codebook, steer[2], steer[3])
            chroma_small = self.decoder(steered, temperature=t)
            hinted = [i for i, image_hints in enumerate(steer[0]) if image_hints] if steer[2].refines else []
            if hinted:  # the hints' effect refined at full resolution: the plain decode of those images only
                plain_small = dict(zip(hinted, self.decoder(out[hinted], temperature=t).split(1)))
        else:
            chroma_small = self.decoder(out, temperature=t)
        # Finite or refuse, one check (one sync) per batch: NaN/inf would come out as a black image.
        if not (torch.isfinite(out).all() & torch.isfinite(chroma_small).all()):
            raise FloatingPointError(
                f"the network's output holds NaN/inf values (model {self.path or type(self.model).__name__}); "
                "its weights are not usable (a diverged run or a damaged file?)")
        if return_confidence:
            probs = torch.softmax(out, dim=1)
            top = probs.topk(min(2, probs.shape[1]), dim=1).values
            c1 = top[:, :1]
            # C2 = p1 / p2: a second probability that underflows to 0 makes it
            # huge, not inf, so upsampling stays finite.
            c2 = top[:, :1] / top[:, 1:2].clamp_min(1e-30) if top.shape[1] > 1 else torch.ones_like(c1)

        results = []
        for i, ((rgb, alpha), light) in enumerate(zip(loaded, lights)):
            full = tuple(light.shape[-2:])
            chroma = _full_chroma(self, chroma_small[i:i + 1], plain_small.get(i), light, steer)
            rgb_out = to_uint8(space.join(light, chroma)[0]).cpu()
            result = ColorizeResult(rgb=rgb_out, alpha=alpha, light=light[0].float().cpu(),
                                    chroma=chroma[0].cpu(), space=self.space)
            if return_confidence:
                result.confidence_top = resize(c1[i:i + 1], full)[0, 0].clamp_(0, 1).cpu()
                result.confidence_ratio = resize(c2[i:i + 1], full)[0, 0].clamp_min_(1).cpu()
            results.append(result)
        return results


class Prepared:
    """One photo with the network run once: the lightness, the network input
    and its logits (what Colorizer._colorize_loaded computes before steering),
    so that hints, palettes and temperatures can be tried without running the
    network again (the web page and benchmarks/bench_hints.py do)."""

    def __init__(self, colorizer, rgb):
        from .models import predict_padded

        space = colorizer.color_space
        with torch.inference_mode():
            self.light = space.lightness(rgb[None].to(colorizer.device))
            n = colorizer.input_size
            self.x = resize(space.normalize_light(self.light), (n, n))
            self.logits = predict_padded(colorizer.model, self.x).float()
        if not torch.isfinite(self.logits).all():
            raise FloatingPointError("the network's output holds NaN/inf values; the model is not usable")
        self.size = tuple(self.light.shape[-2:])

    def render(self, colorizer, temperature=None, hints=None, palette=None, hint_options=None):
        """uint8 (3, H, W): what colorizer.colorize(photo, temperature, hints, palette).rgb gives."""
        t = colorizer.temperature if temperature is None else check_temperature(temperature, "temperature")
        steer = colorizer.steering(1, None if not hints else [hints], palette, hint_options)
        with torch.inference_mode():
            z = self.logits
            if steer is not None:
                from .hints import steer_logits

                z = steer_logits(z, self.x, [self.size], steer[0], steer[1], colorizer.codebook, steer[2], steer[3])
            small = colorizer.decoder(z, temperature=t)
            refined = steer is not None and steer[2].refines and steer[0][0]
            plain = colorizer.decoder(self.logits, temperature=t) if refined else None
            chroma = _full_chroma(colorizer, small, plain, self.light, steer)
            return to_uint8(colorizer.color_space.join(self.light, chroma)[0]).cpu()


def _full_chroma(colorizer, small, plain, light, steer):
    """(1, 2, H, W) chroma at the size of light (1, 1, H, W) from small, the
    decode on the logit grid: the hints' effect refined along the
    full-resolution lightness (fastcolor.hint_refine) when plain, the
    unhinted decode, is given, else a bilinear resize; then projected onto a
    restricting palette (steer: Colorizer.steering's tuple, or None)."""
    space = colorizer.color_space
    if plain is not None:
        from .hint_refine import refine_chroma

        chroma = refine_chroma(plain, small, space.normalize_light(light))
    else:
        chroma = resize(small, tuple(light.shape[-2:]))
    if steer is not None and steer[1] is not None and steer[1].mode == "restrict":
        from .hints import project_to_palette

        chroma = project_to_palette(chroma, steer[3], steer[1].restrict_distance(colorizer.codebook))
    return chroma
