"""The model file: a network, what its output means, and metadata, in one safetensors file.

Format "fastcolor.model", version 2. Tensors:

* ``model.<state_dict key>``: the network's weights (CPU, contiguous);
* ``codebook.centres``: (Q, 2) bin centres, classification models only;
* ``class_weights``: (Q,) rebalancing weights, when given.

The safetensors metadata holds ``format``, ``version`` and ``fastcolor``, a
JSON object with

* ``network``: ``{"arch", "num_bins", "width"}``, what build_model needs;
* ``head``: what the output means. ``{"kind": "classification", "codebook":
  Codebook.to_header()}`` for a network that predicts logits over the bins,
  or ``{"kind": "regression", "space": "lab" | "yuv", "scale": s}`` for an
  L2 model whose two output channels are chroma / s;
* ``meta``: free-form JSON metadata (temperature, input_size, loss, a
  training summary...).

Version 1 files (the header keys ``config``, ``space``, ``codebook_name``,
``grid_step`` with the metadata beside them; L2 models with a stand-in
"regression" codebook) still load: load_model converts them on the fly, and
``fastcolor.models.convert(OLD, NEW)`` rewrites one as version 2.
"""

import json
import math
import os

import safetensors
import safetensors.torch
import torch

from ..atomic import atomic_path
from ..color.codebook import Codebook
from ..color.spaces import color_space
from ..finite import check_finite
from .networks import ARCHITECTURES, build_model, unwrap

__all__ = ["FORMAT", "VERSION", "Regression", "save_model", "load_model", "read_header", "convert"]

FORMAT, VERSION = "fastcolor.model", 2


class Regression(dict):
    """The head of an L2 model: {"space": "lab" | "yuv", "scale": s}; the
    network's two output channels are chroma / s."""

    def __init__(self, space, scale=None):
        record = color_space(space)
        scale = record.regression_scale if scale is None else float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"the regression scale must be a positive finite number, got {scale}")
        super().__init__(space=record.name, scale=scale)

    @property
    def space(self):
        return self["space"]

    @property
    def scale(self):
        return self["scale"]


def _check_meta(meta):
    meta = dict(meta or {})
    try:
        json.dumps(meta, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"meta must be JSON-serialisable with finite numbers: {exc}") from None
    return meta


def save_model(path, model, codebook=None, meta=None, class_weights=None, regression=None):
    """Write a model file (see the module docstring), atomically.

    A classification model is saved with its ``codebook`` (the network predicts
    len(codebook) logits); an L2 model with ``regression`` (a Regression, or a
    space name for the space's default scale) and no codebook. ``meta`` must be
    JSON-serialisable; ``class_weights`` (Q,) may also come as a tensor under
    meta["class_weights"]. The file is written to a temporary file in the same
    folder and renamed over ``path`` only once complete, so a failed write
    leaves any previous file intact. A model with NaN/inf weights is refused
    (ValueError naming the tensor), so no such file is ever written.
    """
    path = os.fspath(path)
    inner = unwrap(model)
    config = getattr(inner, "config", None)
    if not isinstance(config, dict) or config.get("arch") not in ARCHITECTURES:
        raise ValueError(f"save_model needs a fastcolor model (ECCV16 or ColorUNet), got {type(inner).__name__}")
    if (codebook is None) == (regression is None):
        raise ValueError("save_model: give a codebook (classification) or a regression (L2 model), exactly one")
    meta = dict(meta or {})
    if isinstance(meta.get("class_weights"), torch.Tensor):
        if class_weights is not None:
            raise ValueError("class_weights given twice (argument and meta)")
        class_weights = meta.pop("class_weights")
    meta = _check_meta(meta)

    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in inner.state_dict().items()}
    if codebook is not None:
        if not isinstance(codebook, Codebook):
            raise ValueError(f"codebook must be a fastcolor Codebook, got {type(codebook).__name__}")
        if len(codebook) != config["num_bins"]:
            raise ValueError(f"the codebook has {len(codebook)} bins but the model predicts {config['num_bins']}")
        head = {"kind": "classification", "codebook": codebook.to_header()}
        tensors["codebook.centres"] = codebook.centres.detach().cpu().contiguous().clone()
    else:
        regression = regression if isinstance(regression, Regression) else Regression(regression)
        if config["num_bins"] != 2:
            raise ValueError(f"a regression model has 2 output channels, this one has {config['num_bins']}")
        head = {"kind": "regression", **regression}
    if class_weights is not None:
        cw = torch.as_tensor(class_weights).detach().cpu().to(torch.float32).contiguous()
        if codebook is None or cw.shape != (len(codebook),):
            raise ValueError(f"class_weights must have one entry per bin of the codebook, got {tuple(cw.shape)}")
        tensors["class_weights"] = cw
    check_finite(tensors, f"refusing to write {path}")
    header = {"network": config, "head": head, "meta": meta}
    metadata = {"format": FORMAT, "version": str(VERSION), "fastcolor": json.dumps(header)}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata=metadata)


def _upgrade_v1(header):
    """A version 1 header as version 2 (in memory)."""
    header = dict(header)
    config = header.pop("config")
    space, name, step = header.pop("space"), header.pop("codebook_name"), header.pop("grid_step")
    if header.get("loss") == "l2":
        head = {"kind": "regression", **Regression(space, header.pop("regression_scale", None))}
    else:
        head = {"kind": "classification", "codebook": {"name": name, "space": space, "grid_step": step}}
    return {"network": config, "head": head, "meta": header}


def read_header(path):
    """(version 2 header, tensors) of a model file; ValueError naming the
    problem for anything that is not a readable fastcolor model."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model file at {path}")
    try:
        with safetensors.safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != FORMAT or "fastcolor" not in metadata:
                raise ValueError(f"{path} is a safetensors file but not a fastcolor model")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except safetensors.SafetensorError as exc:
        raise ValueError(f"{path} is not a fastcolor model (not a readable safetensors file: {exc})") from exc
    try:
        version = int(metadata["version"])
        header = json.loads(metadata["fastcolor"])
        if version > VERSION:
            raise ValueError(f"model format version {version} is newer than this fastcolor ({VERSION}); "
                             "upgrade fastcolor to read it")
        if version == 1:
            header = _upgrade_v1(header)
        network, head, meta = header["network"], header["head"], header["meta"]
        if head["kind"] not in ("classification", "regression") or not isinstance(meta, dict):
            raise ValueError(f"unknown head {head!r}")
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path}: damaged fastcolor model metadata ({exc})") from exc
    if not isinstance(network, dict) or set(network) != {"arch", "num_bins", "width"}:
        raise ValueError(f"{path}: damaged model config {network!r}")
    return header, tensors


def load_model(path, map_location="cpu"):
    """Read a model file (version 2, or version 1 converted on the fly).

    Returns (model, codebook, meta): the network rebuilt from its config with
    the saved weights, on ``map_location``, in eval mode (ValueError naming the
    tensor when one holds NaN/inf values); its Codebook (on the
    same device), or None for an L2 model; and the metadata given to
    save_model, plus meta["class_weights"] ((Q,) float32 tensor) when the file
    holds them and meta["regression"] (a Regression) for an L2 model.
    """
    header, tensors = read_header(path)
    check_finite(tensors, os.fspath(path), hint="a diverged run or a damaged file")
    network, head, meta = header["network"], header["head"], dict(header["meta"])
    model = build_model(**network)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: the weights do not fit a {network['arch']} model with config {network}: {exc}") from exc
    model.to(map_location).eval()
    codebook = None
    try:
        if head["kind"] == "classification":
            if "codebook.centres" not in tensors:
                raise ValueError("the file has no codebook (tensor 'codebook.centres')")
            codebook = Codebook.from_header(head["codebook"], tensors["codebook.centres"]).to(map_location)
        else:
            meta["regression"] = Regression(head["space"], head["scale"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: damaged model head ({exc})") from exc
    if "class_weights" in tensors:
        meta["class_weights"] = tensors["class_weights"].to(map_location)
    return model, codebook, meta


def convert(src, dst):
    """Rewrite a model file of any older version as the current version (the
    weights, codebook and metadata unchanged)."""
    model, codebook, meta = load_model(src)
    regression = meta.pop("regression", None)
    save_model(dst, model, codebook, meta, regression=regression)
