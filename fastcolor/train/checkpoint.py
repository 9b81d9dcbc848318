"""The training checkpoint: RUN/checkpoint.safetensors, everything a --resume
needs to continue bit-identically (on the CPU, with the same thread count).

Tensors: "model.<name>" (the state dict), "optim.<param>.<name>" (Adam's state,
flattened), "codebook.centres", "prior", "class_weights" and "rng.<rank>.<name>"
(each rank's torch / CUDA / numpy RNG state). The safetensors metadata holds
{"format": "fastcolor.checkpoint", "fastcolor.checkpoint": JSON} with the
version, the run's config (the final TrainConfig as a dict), the step, the
scheduler's position, the data order state, the optimizer's param groups and
non-tensor state, each rank's RNG values and the codebook header
(Codebook.to_header(); checkpoints with the older {"space", "grid_step", "name"}
header read as well).
"""

import dataclasses
import json
import os
import random

import numpy as np
import safetensors
import safetensors.torch
import torch

from ..atomic import atomic_path
from ..color.codebook import Codebook
from ..finite import check_finite
from .config import RESUME_MUST_MATCH
from .schedule import lr_at

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "rng_state", "set_rng_state", "flatten_optimizer",
           "unflatten_optimizer", "save_checkpoint", "read_checkpoint", "checkpoint_step", "check_resume",
           "saved_statistics", "restore_training_state"]

CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "fastcolor.checkpoint", 1


def rng_state(device):
    """This process's RNG states: (tensors, JSON-able values)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(device)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    py = random.getstate()
    return tensors, {"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": [py[0], list(py[1]), py[2]]}


def set_rng_state(tensors, info, device):
    """Restore the RNG states saved by rng_state."""
    torch.set_rng_state(tensors["torch_cpu"])
    if device.type == "cuda" and "cuda" in tensors:
        torch.cuda.set_rng_state(tensors["cuda"], device)
    name, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = info["python"]
    random.setstate((version, tuple(state), gauss))


def flatten_optimizer(optimizer):
    """Adam's state_dict as tensors {"optim.<param>.<name>"} plus JSON metadata."""
    sd = optimizer.state_dict()
    tensors, state_meta = {}, {}
    for pid, state in sd["state"].items():
        extra = {}
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{name}"] = value
            else:
                extra[name] = value
        state_meta[str(pid)] = extra
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def unflatten_optimizer(tensors, meta):
    """The optimizer state_dict of flatten_optimizer's (tensors, meta)."""
    state = {int(pid): dict(extra) for pid, extra in meta["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    groups = [dict(g) for g in meta["param_groups"]]
    for g in groups:
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(path, *, config, step, model, optimizer, codebook, prior, class_weights, data_order, rng):
    """Write the full training state (see the module docstring) atomically.

    rng: one (tensors, info) pair per rank, from rng_state."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = flatten_optimizer(optimizer)
    tensors.update(opt_tensors)
    tensors["codebook.centres"] = codebook.centres
    tensors["prior"] = prior
    tensors["class_weights"] = class_weights
    rng_info = []
    for rank, (rt, info) in enumerate(rng):
        tensors.update({f"rng.{rank}.{k}": v for k, v in rt.items()})
        rng_info.append(info)
    meta = {
        "version": CHECKPOINT_VERSION,
        "config": dataclasses.asdict(config),
        "step": step,
        "scheduler": {"kind": "warmup_cosine", "step": step, "lr": lr_at(min(step, config.steps - 1), config)},
        "data_order": data_order,
        "optimizer": opt_meta,
        "rng": rng_info,
        "codebook": codebook.to_header(),
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    check_finite(tensors, f"refusing to write {path}")
    metadata = {"format": CHECKPOINT_FORMAT, "fastcolor.checkpoint": json.dumps(meta)}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata=metadata)


_START_OVER = "start over with --overwrite, or delete it"
_META_KEYS = ("config", "step", "data_order", "optimizer", "rng", "codebook")


def read_checkpoint(path):
    """(tensors, meta) of a checkpoint written by save_checkpoint.

    ValueError saying what is wrong and what to do for a file that is not a
    readable fastcolor checkpoint (damaged, cut short, foreign, newer) or one
    whose model weights, optimizer state, codebook, prior or class weights hold
    NaN/inf values (the RNG states are integers)."""
    try:
        with safetensors.safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{path} is not a fastcolor training checkpoint; {_START_OVER}")
            meta = json.loads(metadata["fastcolor.checkpoint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        if not isinstance(meta, dict):
            raise TypeError(f"the header is a {type(meta).__name__}, not an object")
        if meta.get("version", 0) > CHECKPOINT_VERSION:
            raise ValueError(f"{path}: checkpoint version {meta['version']} is newer than this fastcolor; "
                             "upgrade fastcolor to resume it")
        missing = [k for k in _META_KEYS if k not in meta]
        if missing:
            raise KeyError(f"no {', '.join(missing)} in the header")
    except (safetensors.SafetensorError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is a damaged training checkpoint ({exc}); {_START_OVER}") from exc
    check_finite(tensors, os.fspath(path),
                 hint=f"the run diverged before it was written, or the file is damaged; {_START_OVER}")
    return tensors, meta


def checkpoint_step(path):
    """The step a checkpoint was written at (reads only the header)."""
    try:
        with safetensors.safe_open(os.fspath(path), framework="pt") as f:
            return json.loads(f.metadata()["fastcolor.checkpoint"])["step"]
    except (safetensors.SafetensorError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable training checkpoint ({exc}); {_START_OVER}") from exc


def check_resume(saved, config):
    """ValueError listing the RESUME_MUST_MATCH fields in which the resolved
    config differs from the checkpoint's config dict `saved` (sigma None: the
    checkpoint's)."""
    diffs = []
    for name in RESUME_MUST_MATCH:
        old, new = saved.get(name), getattr(config, name)
        if name == "sigma" and new is None:
            continue  # the default is whatever the saved codebook implies
        if old != new:
            diffs.append(f"{name}: checkpoint has {old!r}, this run {new!r}")
    if diffs:
        raise ValueError(
            "cannot --resume: the configuration differs from the checkpoint's in what matters:\n  "
            + "\n  ".join(diffs)
            + "\n(use the same options, or start a new run with another --out or --overwrite)"
        )


def saved_statistics(tensors, meta):
    """(codebook, prior, class_weights, sigma) stored in a checkpoint."""
    try:
        codebook = Codebook.from_header(meta["codebook"], tensors["codebook.centres"])
        return codebook, tensors["prior"], tensors["class_weights"], meta["config"]["sigma"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"damaged training checkpoint: its statistics do not read ({exc}); {_START_OVER}") from exc


def restore_training_state(tensors, meta, model, optimizer, rank, device):
    """Load the model weights, the optimizer state and this rank's RNG states of
    a checkpoint; returns the step to continue from."""
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
        optimizer.load_state_dict(unflatten_optimizer(tensors, meta["optimizer"]))
        rank_t = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"rng.{rank}.")}
        set_rng_state(rank_t, meta["rng"][rank], device)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"damaged training checkpoint: its training state does not load ({exc}); "
                         f"{_START_OVER}") from exc
    return meta["step"]
