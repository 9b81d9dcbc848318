"""Export a model to ONNX: the network and its decoding in standard operators.

    from fastcolor.export import export_onnx
    export_onnx("run", "model.onnx")                 # or None: the bundled model
    export_onnx("run", "vivid.onnx", temperature=0)  # the arg-max bin

    fastcolor export run -o model.onnx [--temperature T]

The ONNX model (opset 17, standard operators only, float32):

* input ``light``: the normalised lightness (N, 1, H, W) the network expects,
  (L* - 50) / 100 for Lab models, Y - 0.5 for YUV models; N, H and W are
  dynamic. Any H, W >= 1: the graph pads the bottom and right edges
  (replicating them) to a multiple of the network's input multiple and
  crops the result, as fastcolor.models.predict_padded does.
* output ``chroma``: (N, 2, ceil(H / s), ceil(W / s)) with s the network's
  output stride (4 for ECCV16, 1 for ColorUNet): a*b* for Lab models, UV for
  YUV models. Classification models: the annealed mean
  sum_q softmax(z / T)_q c_q at the temperature fixed at export (default:
  the model's; T = 0: the centre of the first largest logit, as
  fastcolor.ops.annealed_mean). L2 models: scale * output[:, :2].

Resizing the photo to the model's input size, upsampling the chroma and the
colour conversions stay outside (README, "Export to ONNX"). The model's
metadata_props say what they need: ``space``, ``input_size``,
``light_offset``, ``light_scale``, ``output_stride``, ``temperature``,
``loss``.

Needs the ``onnx`` package (pip install onnx); the exporter is the
TorchScript one of torch.onnx (dynamo=False), which needs nothing else. The
file is written atomically (fastcolor.atomic) after onnx.checker accepts it.
"""

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .ops.functional import check_temperature

__all__ = ["OnnxColorizer", "export_onnx", "require_onnx", "OPSET", "INPUT_NAME", "OUTPUT_NAME"]

OPSET = 17
INPUT_NAME = "light"
OUTPUT_NAME = "chroma"
_FLOAT32_MAX = 3.4028234663852886e38


def require_onnx():
    """The onnx module; ImportError saying how to install it when it is missing."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ImportError("ONNX export needs the onnx package: pip install onnx "
                          "(and onnxruntime to run the exported model)") from None
    return onnx


class OnnxColorizer(nn.Module):
    """Normalised lightness (N, 1, H, W) -> chroma at the network's output
    resolution, in operators the ONNX exporter maps to standard ones.

    network: a fastcolor network (input_multiple, output_stride).
    centres: (Q, 2) bin centres (classification) or None (L2 model, with
    scale: chroma = scale * output[:, :2]). temperature: the annealed-mean T
    (0: the arg-max bin)."""

    def __init__(self, network, centres=None, temperature=1.0, scale=None):
        super().__init__()
        self.network = network
        self.input_multiple = int(network.input_multiple)
        self.output_stride = int(network.output_stride)
        self.temperature = check_temperature(temperature, "export")
        if (centres is None) == (scale is None):
            raise ValueError("give centres (a classification model) or scale (an L2 model), not both")
        self.scale = None if scale is None else float(scale)
        if centres is not None:
            centres = centres.detach().float().cpu()
            self.register_buffer("centres", centres.clone())  # (Q, 2): the arg-max gathers from it
            self.register_buffer("weight", centres.t().contiguous()[:, :, None, None])  # (2, Q, 1, 1)
        else:
            self.centres = self.weight = None

    def forward(self, x):
        h, w = x.shape[-2], x.shape[-1]
        m, s = self.input_multiple, self.output_stride
        pad_h, pad_w = (m - h % m) % m, (m - w % m) % m
        # Always pad (a zero pad is a no-op): the graph must not depend on the export size.
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        z = self.network(x)
        z = z[:, :, : (h + s - 1) // s, : (w + s - 1) // s]
        if self.scale is not None:
            return z[:, :2] * self.scale
        if self.temperature == 0:
            idx = torch.argmax(z, dim=1)  # the first largest logit, as ONNX ArgMax (select_last_index=0)
            return F.embedding(idx, self.centres).permute(0, 3, 1, 2)
        inv = min(1.0 / self.temperature, _FLOAT32_MAX)
        p = torch.softmax((z - z.amax(dim=1, keepdim=True)) * inv, dim=1)
        return F.conv2d(p, self.weight)  # sum_q p_q c_q as a 1x1 convolution


def _load(model):
    """(network, centres or None, scale or None, meta, space, name) of a model path/None or a Colorizer."""
    from .inference import Colorizer, resolve_model_path
    from .models import load_model, unwrap

    if isinstance(model, Colorizer):
        network, codebook, meta, name = model.model, model.codebook, model.meta, str(model.path or "model")
    else:
        file = resolve_model_path(model)
        network, codebook, meta = load_model(file, map_location="cpu")
        name = str(file)
    network = unwrap(network)
    if codebook is not None:
        return network, codebook.centres, None, meta, codebook.space, name
    regression = meta.get("regression")
    if not isinstance(regression, dict):
        raise ValueError(f"{name}: a model without a codebook must be an L2 model with a regression")
    return network, None, float(regression["scale"]), meta, regression["space"], name


def export_onnx(model, output, temperature=None, opset=OPSET):
    """Export a model to an ONNX file; returns its Path.

    model: a model file, a training run directory, None (the bundled model)
        or a fastcolor.inference.Colorizer.
    output: the .onnx file (written atomically; its folder is created).
    temperature: the annealed-mean T fixed in the graph (default: the
        model's; 0: the arg-max bin); refused for L2 models.
    """
    from .atomic import atomic_path
    from .color.spaces import color_space
    from .inference import DEFAULT_INPUT_SIZE, DEFAULT_TEMPERATURE

    onnx = require_onnx()
    output = Path(output)
    if output.suffix.lower() != ".onnx":
        raise ValueError(f"the ONNX file must end in .onnx, got {str(output)!r}")
    if temperature is not None:
        temperature = check_temperature(temperature, "export")
    network, centres, scale, meta, space, name = _load(model)
    if scale is not None and temperature is not None:
        raise ValueError(f"{name} is an L2 model (it regresses chroma): it has no temperature to set")
    t = check_temperature(meta.get("temperature", DEFAULT_TEMPERATURE) if temperature is None else temperature,
                          "export")
    wrapper = OnnxColorizer(network, centres, t, scale)
    training = network.training
    device = next(network.parameters()).device
    wrapper.cpu().eval()
    space_rec = color_space(space)
    m = wrapper.input_multiple
    example = torch.zeros(2, 1, 3 * m + 3, 2 * m + 5)  # not multiples: the padding is traced
    props = {
        "producer": "fastcolor", "space": space_rec.name, "loss": "l2" if scale is not None else "rebalanced",
        "input_size": str(int(meta.get("input_size", DEFAULT_INPUT_SIZE))),
        "light_offset": repr(space_rec.light_offset), "light_scale": repr(space_rec.light_scale),
        "output_stride": str(wrapper.output_stride), "input_multiple": str(m),
        "temperature": "" if scale is not None else repr(t),
    }
    try:
        with atomic_path(output, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer and deprecation warnings: the graph is checked below
            torch.onnx.export(
                wrapper, (example,), tmp, dynamo=False, opset_version=opset,
                input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                              OUTPUT_NAME: {0: "batch", 2: "out_height", 3: "out_width"}},
            )
            proto = onnx.load(tmp)
            for key, value in props.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = key, value
            onnx.checker.check_model(proto, full_check=True)
            onnx.save(proto, tmp)
    finally:
        network.to(device).train(training)
    return output
