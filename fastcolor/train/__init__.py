"""Training: ``fastcolor train --data DIR --out RUN [options]``.

One step: a batch of RGB crops (random crop + flip from fastcolor.dataset.ImageFolder)
-> Lab or YUV on the training device -> lightness normalised (models.normalize_light)
plus Gaussian noise of std --light-noise -> logits -> loss against the chroma at full
resolution -> Adam.

Losses:
  rebalanced  fastcolor.nn.RebalancedCrossEntropy over the codebook's bins with
              class weights from the training set's own prior (ECCV16, section 2.2);
              images without chroma get zero weight.
  l2          the regression baseline: the same architecture built with 2 output
              channels that predict the chroma directly, scaled to about unit range
              (ab / 100 in Lab, UV as is in YUV), mean squared error against the
              chroma subsampled to the output resolution (every 4th pixel for ECCV16).
              model.safetensors then has meta["loss"] = "l2" and meta["regression_scale"]
              (multiply the output by it to get chroma).

Schedule: Adam (betas 0.9, 0.99; weight decay 1e-3 as in the paper), linear warmup
over --warmup steps, then cosine decay to --final-lr-fraction (10%) of --lr at --steps.
The learning rate is a pure function of the step, so the schedule needs no state
beyond the step.

Determinism and resuming. The data order is a function of (seed, step): the stream
of training samples is the concatenation of per-epoch permutations (epoch e seeded by
(seed, e)); step s takes stream positions [s B W, (s + 1) B W) for batch B per process
and W processes, rank r the slice [s B W + r B, s B W + (r + 1) B). Each sample's
augmentation is drawn with the global RNGs (torch, numpy, random) reseeded from
(seed, epoch, index) for that one item, so DataLoader workers, their number and
their order change nothing. The lightness noise of step s on rank r comes from a
generator seeded by (seed, step, rank). RUN/checkpoint.safetensors holds the model,
the flattened Adam state, the step, the data order, the RNG states of every rank, the
codebook and the class weights; --resume restores them, and on the CPU the result
is bit-identical to an uninterrupted run (with the same torch thread count: CPU
reductions are split by thread). A run that differs from its checkpoint in what
matters (RESUME_MUST_MATCH: arch, codebook, batch, crop, steps, ...) is refused.

Multi-GPU / multi-node: launch with torchrun (WORLD_SIZE, RANK, LOCAL_RANK in the
environment). --batch is per process (global batch = batch x world size); the
codebook and prior are computed on rank 0 and broadcast; rank 0 alone validates,
logs and writes files, so RUN must be on a file system every node sees (every rank
reads the checkpoint on --resume).
"""

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np
import safetensors
import safetensors.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm.auto import tqdm

from .. import color, nn as fcnn
from ..atomic import atomic_path, write_bytes_atomic
from ..color.codebook import Codebook
from ..ops import bin_histogram
from ..color.prior import prior_from_counts, rebalance_weights

__all__ = ["TrainConfig", "train", "main", "lr_at", "DataOrder"]

ARCHS = ("eccv16", "colorunet")
CODEBOOKS = ("zhang313", "data")
LOSSES = ("rebalanced", "l2")
from ..ops.backend import BACKENDS
CHECKPOINT_FORMAT, CHECKPOINT_VERSION = "fastcolor.checkpoint", 1
# Fields that must not change between a run and its --resume (they change the model,
# the data order or the optimisation); the others (logging, workers, device...) may.
RESUME_MUST_MATCH = (
    "data", "arch", "width", "codebook", "bins", "space", "lam", "k", "sigma", "loss", "lr",
    "weight_decay", "warmup", "final_lr_fraction", "batch", "crop", "steps", "seed", "light_noise",
    "max_side", "world_size",
)


@dataclasses.dataclass
class TrainConfig:
    """Everything a run depends on. None means "resolved at the start" (see resolved())."""

    data: str
    out: str
    arch: str = "eccv16"
    width: float = 1.0
    codebook: str = "zhang313"  # "zhang313" (Lab, 313 bins) or "data" (Codebook.from_images)
    bins: int = 32  # data codebooks only
    space: str = "lab"
    lam: float = 0.5
    k: Optional[int] = None  # soft-encoding neighbours: 5 for zhang313, 1 for data codebooks
    sigma: Optional[float] = None  # soft-encoding / prior smoothing width: codebook.default_sigma
    loss: str = "rebalanced"
    backend: str = "kernels"
    lr: float = 3e-4
    weight_decay: float = 1e-3
    warmup: Optional[int] = None  # steps; default steps // 10, at most 1000
    final_lr_fraction: float = 0.1
    batch: int = 16  # per process
    crop: int = 176
    steps: int = 10000
    seed: int = 0
    light_noise: float = 0.02  # std of the noise on the normalised lightness
    workers: int = 0
    cache: bool = False
    max_side: Optional[int] = None
    val: Optional[str] = "auto"  # a folder, "auto" (DATA/../val when DATA ends in /train) or "none"
    val_every: int = 500
    val_images: int = 64
    ckpt_every: int = 1000
    time_limit: Optional[float] = None  # seconds of training: the schedule is stretched to end then
    log_every: int = 10
    amp: str = "auto"  # "bf16" or "off"; auto: bf16 on CUDA, off on the CPU
    device: str = "auto"
    threads: Optional[int] = None  # torch CPU threads (default: torch's); CPU results depend on it
    temperature: float = 0.38
    input_size: int = 256  # the size inference resizes the lightness to (model meta)
    stats_max_side: int = 256  # images are downscaled to this for the codebook and prior
    resume: bool = False
    overwrite: bool = False
    log_data_order: bool = False  # log every step's (epoch, index) keys of every rank
    progress: bool = True
    world_size: int = 1  # set from the environment

    def resolved(self):
        """A copy with the defaults that depend on other fields filled in (except
        sigma, which needs the codebook) and the values checked."""
        c = dataclasses.replace(self)
        _check_choice("arch", c.arch, ARCHS)
        _check_choice("codebook", c.codebook, CODEBOOKS)
        _check_choice("space", c.space, ("lab", "yuv"))
        _check_choice("loss", c.loss, LOSSES)
        _check_choice("backend", c.backend, tuple(BACKENDS))
        _check_choice("amp", c.amp, ("auto", "bf16", "off"))
        if c.codebook == "zhang313" and c.space != "lab":
            raise ValueError(
                f"--codebook zhang313 is a Lab codebook and cannot be used with --space {c.space}; "
                "use --codebook data for YUV"
            )
        for name in ("batch", "crop", "steps", "val_every", "ckpt_every", "log_every", "bins", "input_size",
                     "stats_max_side"):
            if int(getattr(c, name)) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(c, name)!r}")
        if c.crop % 8:
            raise ValueError(f"crop must be a multiple of 8 (the networks' input multiple), got {c.crop}")
        if c.threads is not None and c.threads < 1:
            raise ValueError(f"threads must be >= 1, got {c.threads}")
        if c.workers < 0 or c.val_images < 0:
            raise ValueError("workers and val_images must be >= 0")
        if not (c.lr > 0 and c.weight_decay >= 0 and c.light_noise >= 0 and 0 <= c.final_lr_fraction <= 1):
            raise ValueError("need lr > 0, weight_decay >= 0, light_noise >= 0, 0 <= final_lr_fraction <= 1")
        if not 0 <= c.lam <= 1:
            raise ValueError(f"lam must be in [0, 1], got {c.lam}")
        c.data = os.path.abspath(c.data)
        c.out = os.path.abspath(c.out)
        if c.k is None:
            c.k = 5 if c.codebook == "zhang313" else 1
        if c.k < 1:
            raise ValueError(f"k must be >= 1, got {c.k}")
        if c.warmup is None:
            c.warmup = min(1000, c.steps // 10)
        if c.device == "auto":
            c.device = "cuda" if torch.cuda.is_available() else "cpu"
        if c.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError("--device cuda, but torch sees no CUDA device")
        if c.amp == "auto":
            c.amp = "bf16" if c.device.startswith("cuda") else "off"
        if c.val == "auto":
            guess = os.path.join(os.path.dirname(c.data), "val")
            c.val = guess if os.path.basename(c.data) == "train" and os.path.isdir(guess) else None
        elif c.val in (None, "", "none"):
            c.val = None
        else:
            c.val = os.path.abspath(c.val)
            if not os.path.isdir(c.val):
                raise ValueError(f"validation folder {c.val} does not exist")
        return c


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def lr_at(step, config):
    """Learning rate of step (0-based): linear warmup from lr / warmup to lr over
    the first `warmup` steps, then cosine decay from lr to final_lr_fraction * lr."""
    base, warmup, total = config.lr, config.warmup, config.steps
    if step < warmup:
        return base * (step + 1) / warmup
    span = max(1, total - warmup)
    t = min(1.0, (step - warmup) / span)
    floor = config.final_lr_fraction
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


# ----------------------------------------------------------------------------- data order


def _mix(*values):
    """A 63-bit seed from integers (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(v) & (2**63 - 1) for v in values]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class DataOrder:
    """The resumable sample order: (epoch, index) keys as a function of the step.

    The sample stream is perm_0 + perm_1 + ..., perm_e a permutation of the n
    images seeded by (seed, e). Step s covers stream positions [s G, (s + 1) G)
    with G = batch * world_size; rank r takes the r-th slice of `batch`. Within
    an epoch the ranks' samples are disjoint.
    """

    _PERM_TAG = 0x5EED

    def __init__(self, n, batch, seed, rank=0, world_size=1):
        if n < 1:
            raise ValueError("the training set is empty")
        self.n, self.batch, self.seed, self.rank, self.world_size = n, batch, seed, rank, world_size
        self._perm_epoch, self._perm = None, None

    def permutation(self, epoch):
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(_mix(self.seed, self._PERM_TAG, epoch))
            self._perm, self._perm_epoch = torch.randperm(self.n, generator=g).tolist(), epoch
        return self._perm

    def keys(self, step, rank=None):
        """This rank's batch of step: a list of (epoch, index)."""
        rank = self.rank if rank is None else rank
        start = step * self.batch * self.world_size + rank * self.batch
        out = []
        for pos in range(start, start + self.batch):
            epoch = pos // self.n
            out.append((epoch, self.permutation(epoch)[pos % self.n]))
        return out

    def state(self, step):
        """The data order state after `step` steps (what a resume starts from)."""
        pos = step * self.batch * self.world_size
        return {"n": self.n, "batch": self.batch, "world_size": self.world_size, "seed": self.seed,
                "step": step, "epoch": pos // self.n, "position": pos % self.n}


class _StepBatches:
    """Batch sampler for a DataLoader: the keys of steps start..stop-1."""

    def __init__(self, order, start, stop):
        self.order, self.start, self.stop = order, start, stop

    def __iter__(self):
        for step in range(self.start, self.stop):
            yield self.order.keys(step)

    def __len__(self):
        return self.stop - self.start


class KeyedDataset(torch.utils.data.Dataset):
    """Wraps a dataset so that item (epoch, index) draws its augmentation from the
    global RNGs (torch, numpy, random) reseeded from (seed, epoch, index); the
    caller's RNG states are restored afterwards."""

    _AUG_TAG = 0xA116

    def __init__(self, dataset, seed):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        s = _mix(self.seed, self._AUG_TAG, epoch, index)
        # ImageFolder seeds an item's crop and flip from (its seed, index,
        # torch.initial_seed(), a per-process count of calls for that index); the
        # count depends on the process history (workers, resume), so it is reset
        # and the reseeded torch.initial_seed() carries (epoch, index).
        calls = getattr(self.dataset, "_calls", None)
        if isinstance(calls, dict):
            calls.pop(index, None)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            random.seed(s)
            np.random.seed(s % 2**32)
            try:
                item = self.dataset[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)
        return item


# ----------------------------------------------------------------------------- statistics


def _light_chroma(rgb, space):
    """(N,1,H,W) lightness and (N,2,H,W) chroma of (N,3,H,W) RGB in [0, 1]."""
    x = color.rgb_to_lab(rgb) if space == "lab" else color.rgb_to_yuv(rgb)
    return x[:, :1], x[:, 1:]


def _gray_threshold(space):
    """Chroma below which an image counts as gray: |a|, |b| <= 5 in Lab (ECCV16),
    the same fraction of the chroma range (0.02) in UV."""
    return 5.0 if space == "lab" else 0.02


def _stats_images(files, max_side, progress):
    """The training images as float (3, h, w) tensors in [0, 1], downscaled to at
    most max_side (area-like antialiasing); unreadable files are skipped.
    Decoded by a few threads (Pillow releases the GIL), in the order of files."""
    from ..data.images import ImageReadError, load_image

    def read(path):
        try:
            rgb, alpha = load_image(path)
        except ImageReadError as exc:
            return None, str(exc)
        x = rgb.float().div_(255)[None]
        if alpha is not None:  # over white, as ImageFolder serves it
            a = alpha.float().div_(255)[None]
            x = x * a + (1 - a)
        h, w = x.shape[-2:]
        if max(h, w) > max_side:
            s = max_side / max(h, w)
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
        return x[0], None

    out, skipped = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        results = pool.map(read, files)
        for path, (x, reason) in tqdm(zip(files, results), total=len(files), desc="reading", leave=False,
                                      disable=not progress):
            if x is None:
                skipped.append((str(path), reason))
            else:
                out.append(x)
    return out, skipped


def build_statistics(config, files):
    """(codebook, prior (Q,) float64, class_weights (Q,) float32, sigma) of the training set.

    Codebook: zhang313, or Codebook.from_images(n=bins, space) over the training
    images. Prior: fastcolor.bin_histogram of every image with chroma (images
    without chroma are skipped, as in the loss), then prior_from_counts(sigma);
    weights: rebalance_weights(prior, lam).
    """
    images, skipped = _stats_images(files, config.stats_max_side, config.progress)
    if not images:
        raise ValueError(f"none of the {len(files)} image files under {config.data} could be read")
    if config.codebook == "zhang313":
        codebook = Codebook.zhang313()
    else:
        codebook = Codebook.from_images(images, n=config.bins, space=config.space, progress=config.progress)
    sigma = codebook.default_sigma if config.sigma is None else float(config.sigma)
    counts = torch.zeros(len(codebook), dtype=torch.float64)
    for x in tqdm(images, desc="prior", leave=False, disable=not config.progress):
        _, chroma = _light_chroma(x[None], config.space)
        if fcnn.has_chroma(chroma, _gray_threshold(config.space)).item():
            counts += bin_histogram(chroma, codebook)
    if counts.sum() == 0:
        raise ValueError(f"the training images under {config.data} have no colour (all gray): nothing to learn")
    prior = prior_from_counts(counts, codebook, sigma)
    return codebook, prior, rebalance_weights(prior, config.lam), sigma, skipped


# ----------------------------------------------------------------------------- model and loss


def _regression_scale(space):
    """Chroma units per unit of the L2 head's output: ab / 100 in Lab, UV as is."""
    return 100.0 if space == "lab" else 1.0


class L2Loss(torch.nn.Module):
    """MSE between a 2-channel output (chroma / scale) and the chroma, subsampled
    to the output's resolution."""

    def __init__(self, scale):
        super().__init__()
        self.scale = scale

    def forward(self, out, chroma):
        target = fcnn.subsample_to(chroma, out.shape[-2:], "chroma") / self.scale
        return F.mse_loss(out.float(), target)


def _build(config, codebook, class_weights):
    from ..models import build_model

    if config.loss == "rebalanced":
        model = build_model(config.arch, num_bins=len(codebook), width=config.width)
        criterion = fcnn.RebalancedCrossEntropy(
            codebook, prior=None, class_weights=class_weights, k=config.k, sigma=config.sigma,
            skip_gray_images=True, gray_threshold=_gray_threshold(config.space), backend=config.backend,
        )
    else:
        model = build_model(config.arch, num_bins=2, width=config.width)
        criterion = L2Loss(_regression_scale(config.space))
    return model, criterion


def _decode(config, decoder, out, size):
    """Predicted chroma at full size from the network output."""
    if config.loss == "l2":
        ab = out.float() * _regression_scale(config.space)
        return F.interpolate(ab, size=size, mode="bilinear", align_corners=False) if ab.shape[-2:] != size else ab
    return decoder(out.float(), size=size)


# ----------------------------------------------------------------------------- checkpoints


def _rng_state(device):
    """This process's RNG states: tensors and JSON-able values."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if device.type == "cuda":
        tensors["cuda"] = torch.cuda.get_rng_state(device)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["numpy_keys"] = torch.from_numpy(keys.astype(np.int64))
    py = random.getstate()
    return tensors, {"numpy": [name, int(pos), int(has_gauss), float(cached)], "python": [py[0], list(py[1]), py[2]]}


def _set_rng_state(tensors, info, device):
    torch.set_rng_state(tensors["torch_cpu"])
    if device.type == "cuda" and "cuda" in tensors:
        torch.cuda.set_rng_state(tensors["cuda"], device)
    name, pos, has_gauss, cached = info["numpy"]
    np.random.set_state((name, tensors["numpy_keys"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, state, gauss = info["python"]
    random.setstate((version, tuple(state), gauss))


def _flatten_optimizer(optimizer):
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


def _unflatten_optimizer(tensors, meta):
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

    rng: one (tensors, info) pair per rank, from _rng_state."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = _flatten_optimizer(optimizer)
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
        "codebook": {"space": codebook.space, "grid_step": list(codebook.grid_step), "name": codebook.name},
    }
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    metadata = {"format": CHECKPOINT_FORMAT, "fastcolor.checkpoint": json.dumps(meta)}
    with atomic_path(path) as tmp:
        safetensors.torch.save_file(tensors, tmp, metadata=metadata)


def read_checkpoint(path):
    """(tensors, meta) of a checkpoint written by save_checkpoint."""
    try:
        with safetensors.safe_open(os.fspath(path), framework="pt") as f:
            metadata = f.metadata() or {}
            if metadata.get("format") != CHECKPOINT_FORMAT:
                raise ValueError(f"{path} is not a fastcolor training checkpoint")
            meta = json.loads(metadata["fastcolor.checkpoint"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except safetensors.SafetensorError as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {exc}") from exc
    if meta.get("version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint version {meta['version']} is newer than this fastcolor")
    return tensors, meta


def checkpoint_step(path):
    """The step a checkpoint was written at (reads only the header)."""
    with safetensors.safe_open(os.fspath(path), framework="pt") as f:
        return json.loads(f.metadata()["fastcolor.checkpoint"])["step"]


def _check_resume(saved, config):
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


# ----------------------------------------------------------------------------- validation


def _val_batch(config, rank):
    """The fixed validation set: up to val_images centre crops, (N, 3, crop, crop)."""
    if config.val is None or config.val_images == 0 or rank != 0:
        return None
    from ..data.dataset import ImageFolder

    ds = ImageFolder(config.val, crop_size=config.crop, augment=False, max_side=config.max_side, seed=config.seed)
    n = min(len(ds), config.val_images)
    if n == 0:
        return None
    return torch.stack([ds[i]["rgb"] for i in range(n)])


@torch.no_grad()
def validate(config, model, criterion, decoder, codebook, prior, rgb_all, device, amp):
    """Loss and metrics on the fixed validation crops: val_loss, val_auc (AuC of
    the per-pixel Lab ab accuracy, thresholds 0..150), val_auc_rebalanced (pixels
    weighted by the inverse prior of their true bin), val_colourfulness (mean over
    the predictions) and val_colourfulness_true."""
    from .. import metrics

    was_training = model.training
    model.eval()
    losses, preds = [], []
    for rgb in rgb_all.split(max(1, config.batch)):
        rgb = rgb.to(device)
        light, chroma = _light_chroma(rgb, config.space)
        x = _normalize(light, config.space)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            out = model(x)
        losses.append(criterion(out, chroma).float().item() * rgb.shape[0])
        preds.append(_decode(config, decoder, out, tuple(rgb.shape[-2:])).cpu())
    model.train(was_training)

    rgb = rgb_all
    light, true_chroma = _light_chroma(rgb, config.space)
    pred_chroma = torch.cat(preds)
    if config.space == "lab":
        pred_rgb = color.lab_to_rgb(torch.cat([light, pred_chroma], 1))
        pred_ab, true_ab = pred_chroma, true_chroma
    else:
        pred_rgb = color.yuv_to_rgb(torch.cat([light, pred_chroma], 1)).clamp(0, 1)
        pred_ab, true_ab = color.rgb_to_lab(pred_rgb)[:, 1:], color.rgb_to_lab(rgb)[:, 1:]
    weights = metrics.rebalanced_pixel_weights(true_chroma, codebook, prior.to(torch.float32))
    return {
        "val_loss": sum(losses) / rgb.shape[0],
        "val_auc": float(metrics.ab_accuracy_auc(pred_ab, true_ab)),
        "val_auc_rebalanced": float(metrics.ab_accuracy_auc(pred_ab, true_ab, pixel_weight=weights)),
        "val_colourfulness": float(metrics.colourfulness(pred_rgb).mean()),
        "val_colourfulness_true": float(metrics.colourfulness(rgb).mean()),
        "val_images": rgb.shape[0],
    }


def _normalize(light, space):
    from ..models import normalize_light

    return normalize_light(light, space)


# ----------------------------------------------------------------------------- distributed


class _Dist:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK), or one process."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        self.main = self.rank == 0

    def init(self, device):
        if self.enabled and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    def barrier(self):
        if self.enabled:
            dist.barrier()

    def broadcast(self, obj):
        """rank 0's obj on every rank (pickled)."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj):
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if not self.enabled:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def mean(self, value, device):
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def close(self):
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- the run


def _prepare_out(config, ctx):
    """Check --resume / --overwrite against RUN; returns the checkpoint path."""
    out = Path(config.out)
    ckpt = out / "checkpoint.safetensors"
    if config.resume:
        if not ckpt.exists():
            raise ValueError(f"--resume: {ckpt} does not exist (nothing to resume)")
    elif ckpt.exists() and not config.overwrite:
        raise ValueError(
            f"{out} already holds a training run (checkpoint.safetensors); "
            "pass --resume to continue it or --overwrite to start over"
        )
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
        if config.overwrite and not config.resume:
            for name in ("checkpoint.safetensors", "model.safetensors", "log.jsonl"):
                (out / name).unlink(missing_ok=True)
    return ckpt


def _truncate_log(path, step):
    """Drop log lines past `step` (written by a run killed after its last checkpoint)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:  # a line cut short by the kill
            continue
        if record.get("step", 0) <= step:
            keep.append(line)
    write_bytes_atomic(path, "".join(line + "\n" for line in keep).encode())


def train(config):
    """Run (or --resume) a training run; returns the run folder (Path).

    Raises ValueError with a message naming the problem on bad configuration or data.
    """
    from ..data.images import find_images

    ctx = _Dist()
    config = dataclasses.replace(config, world_size=ctx.world_size).resolved()
    if not os.path.isdir(config.data):
        raise ValueError(f"training folder {config.data} does not exist")
    files = find_images([config.data])
    if not files:
        raise ValueError(f"no images found under {config.data}")
    ckpt_path = _prepare_out(config, ctx)
    resume = None
    if config.resume:
        resume = read_checkpoint(ckpt_path)
        _check_resume(resume[1]["config"], config)

    if ctx.enabled and config.device == "cuda":
        config.device = f"cuda:{ctx.local_rank}"
    device = torch.device(config.device)
    if device.type == "cuda":
        if device.index is None:  # an explicit index: some torch versions refuse a bare "cuda" below
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    ctx.init(device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        return _run(config, ctx, device, ckpt_path, resume)
    finally:
        ctx.close()


def _run(config, ctx, device, ckpt_path, resume):
    """The training loop of train(); resume is (tensors, meta) of a checkpoint or None."""
    from ..data.dataset import ImageFolder
    from ..models import Regression, save_model

    out = Path(config.out)
    amp = config.amp == "bf16"
    saved_tensors, saved = resume if resume is not None else (None, None)
    dataset = ImageFolder(config.data, crop_size=config.crop, augment=True, max_side=config.max_side,
                          cache=config.cache, seed=config.seed)
    # Codebook, prior and class weights: from the checkpoint, or from the data (rank 0, broadcast).
    if saved is not None:
        cb = saved["codebook"]
        codebook = Codebook(saved_tensors["codebook.centres"], cb["space"], tuple(cb["grid_step"]), cb["name"])
        prior, class_weights = saved_tensors["prior"], saved_tensors["class_weights"]
        config.sigma = saved["config"]["sigma"]
    else:
        result = None
        if ctx.main:
            try:
                result = build_statistics(config, dataset.paths)
            except ValueError as exc:
                result = exc
        result = ctx.broadcast(result)
        if isinstance(result, Exception):
            raise result
        codebook, prior, class_weights, config.sigma, skipped = result
        if skipped and ctx.main:
            print(f"fastcolor train: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", file=sys.stderr)

    order = DataOrder(len(dataset), config.batch, config.seed, ctx.rank, ctx.world_size)

    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model, criterion = _build(config, codebook, class_weights)
    model.to(device)
    criterion.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    decoder = fcnn.AnnealedMeanDecoder(codebook, config.temperature, backend=config.backend).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, betas=(0.9, 0.99),
                                 weight_decay=config.weight_decay)

    start = 0
    if saved is not None:
        state = {k[len("model."):]: v for k, v in saved_tensors.items() if k.startswith("model.")}
        model.load_state_dict(state)
        optimizer.load_state_dict(_unflatten_optimizer(saved_tensors, saved["optimizer"]))
        start = saved["step"]
        rank_t = {k.split(".", 2)[2]: v for k, v in saved_tensors.items() if k.startswith(f"rng.{ctx.rank}.")}
        _set_rng_state(rank_t, saved["rng"][ctx.rank], device)
        if saved["data_order"]["n"] != order.n:
            raise ValueError(
                f"cannot --resume: the training folder now has {order.n} readable images, "
                f"the checkpoint was trained on {saved['data_order']['n']}"
            )
    net = model
    if ctx.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    log_path = out / "log.jsonl"
    val_rgb = _val_batch(config, ctx.rank)
    if ctx.main:
        if saved is not None:
            _truncate_log(log_path, start)
        write_bytes_atomic(out / "config.json", (json.dumps(dataclasses.asdict(config), indent=2) + "\n").encode())

    def log(record):
        if ctx.main:
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def write_files(step):
        """checkpoint + model.safetensors at `step` (all ranks call it)."""
        rng = ctx.gather(_rng_state(device))
        ctx.barrier()
        if ctx.main:
            save_checkpoint(ckpt_path, config=config, step=step, model=model, optimizer=optimizer,
                            codebook=codebook, prior=prior, class_weights=class_weights,
                            data_order=order.state(step), rng=rng)
            meta = {"temperature": config.temperature, "input_size": config.input_size, "loss": config.loss,
                    "steps": step, "data": config.data, "crop": config.crop, "lam": config.lam, "k": config.k,
                    "sigma": config.sigma, "train_images": order.n}
            if config.loss == "l2":  # the output is chroma / scale
                save_model(out / "model.safetensors", model, meta=meta,
                           regression=Regression(config.space, _regression_scale(config.space)))
            else:
                save_model(out / "model.safetensors", model, codebook, meta, class_weights=class_weights)
        ctx.barrier()

    loader = torch.utils.data.DataLoader(
        KeyedDataset(dataset, config.seed),
        batch_sampler=_StepBatches(order, start, config.steps),
        num_workers=config.workers,
        persistent_workers=config.workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # keeps the global RNG untouched by the loader
    )
    noise_gen = torch.Generator(device=device)
    bar = tqdm(total=config.steps, initial=start, desc="train", disable=not (ctx.main and config.progress),
               dynamic_ncols=True)
    window_loss, window_steps, window_images = 0.0, 0, 0
    window_start = train_start = time.perf_counter()
    time_up = False
    net.train()
    step = start
    for step, batch in enumerate(loader, start=start):
        rgb = batch["rgb"].to(device, non_blocking=True)
        light, chroma = _light_chroma(rgb, config.space)
        x = _normalize(light, config.space)
        if config.light_noise > 0:
            noise_gen.manual_seed(_mix(config.seed, 0x7015E, step, ctx.rank))
            x = x + config.light_noise * torch.randn(x.shape, generator=noise_gen, device=device, dtype=x.dtype)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        if config.time_limit:
            # The schedule runs on whichever is further along, the steps or the
            # clock, and the run ends when the time is up (ranks agree through
            # rank 0's clock).
            elapsed = ctx.mean(time.perf_counter() - train_start if ctx.main else 0.0, device) * ctx.world_size
            time_up = elapsed >= config.time_limit
            lr = lr_at(max(step, int(config.steps * min(1.0, elapsed / config.time_limit))), config)
        else:
            lr = lr_at(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = net(x)
        loss = criterion(logits, chroma)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        window_loss += loss.detach().float()
        window_steps += 1
        window_images += rgb.shape[0] * ctx.world_size
        done = step + 1
        if time_up:  # finish as if this were the last step
            config = dataclasses.replace(config, steps=done)
        if config.log_data_order:
            log({"step": done, "data": ctx.gather([list(k) for k in order.keys(step)])})
        if done % config.log_every == 0 or done == config.steps:
            mean_loss = ctx.mean(window_loss.item() / window_steps, device)
            elapsed = time.perf_counter() - window_start
            ips = window_images / max(elapsed, 1e-9)
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"training loss became {mean_loss} at step {done}")
            log({"step": done, "loss": mean_loss, "lr": lr, "images_per_s": ips, "epoch": order.state(done)["epoch"]})
            bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.1f}", lr=f"{lr:.2e}")
            window_loss, window_steps, window_images = 0.0, 0, 0
            window_start = time.perf_counter()
        if val_rgb is not None and (done % config.val_every == 0 or done == config.steps):
            record = validate(config, model, criterion, decoder, codebook, prior, val_rgb, device, amp)
            log({"step": done, **record})
            bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
        if done % config.ckpt_every == 0 or done == config.steps:
            write_files(done)
        bar.update(1)
        if time_up:
            log({"step": done, "stopped": "time limit", "seconds": config.time_limit})
            break
    bar.close()
    if start >= config.steps:  # resumed a finished run: rewrite its files
        write_files(start)
    return out


# ----------------------------------------------------------------------------- CLI


def _parser():
    d = TrainConfig(data="", out="")
    p = argparse.ArgumentParser(
        prog="fastcolor train",
        description="Train a colorization network (ECCV16 or ColorUNet) on a folder of photos. "
        "Multi-GPU: torchrun --nproc_per_node N -m fastcolor.train ... (--batch is per process).",
    )
    p.add_argument("--data", required=True, help="folder of training images (searched recursively)")
    p.add_argument("--out", required=True, help="run folder: model.safetensors, checkpoint.safetensors, log.jsonl")
    p.add_argument("--val", default="auto", help="validation folder; default DATA/../val when DATA ends in /train; 'none'")
    p.add_argument("--arch", choices=ARCHS, default=d.arch)
    p.add_argument("--width", type=float, default=d.width, help="channel width multiplier")
    p.add_argument("--codebook", choices=CODEBOOKS, default=d.codebook)
    p.add_argument("--bins", type=int, default=d.bins, help="bins of a data codebook")
    p.add_argument("--space", choices=("lab", "yuv"), default=d.space)
    p.add_argument("--lam", type=float, default=d.lam, help="rebalancing: mixing with the uniform distribution")
    p.add_argument("--k", type=int, default=None, help="soft-encoding neighbours (default 5 zhang313, 1 data)")
    p.add_argument("--sigma", type=float, default=None, help="soft-encoding width (default: the codebook's)")
    p.add_argument("--loss", choices=LOSSES, default=d.loss)
    p.add_argument("--backend", choices=tuple(BACKENDS), default=d.backend,
                   help="kernels: the compiled C++/CUDA kernels; reference: the pure-PyTorch ops")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup", type=int, default=None, help="warmup steps (default steps/10, at most 1000)")
    p.add_argument("--final-lr-fraction", type=float, default=d.final_lr_fraction)
    p.add_argument("--batch", type=int, default=d.batch, help="images per step per process")
    p.add_argument("--crop", type=int, default=d.crop)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--light-noise", type=float, default=d.light_noise)
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--cache", action="store_true", help="keep decoded images in memory (small sets, GPU runs)")
    p.add_argument("--max-side", type=int, default=None, help="downscale images to this longest side first")
    p.add_argument("--val-every", type=int, default=d.val_every)
    p.add_argument("--val-images", type=int, default=d.val_images)
    p.add_argument("--ckpt-every", type=int, default=d.ckpt_every)
    p.add_argument("--time-limit", type=float, default=None, metavar="SECONDS",
                   help="end the run after this much training time, the learning-rate schedule stretched "
                        "to fit (for runs on a time budget; such a run is not bit-exactly resumable)")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--amp", choices=("auto", "bf16", "off"), default=d.amp)
    p.add_argument("--device", default=d.device, help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (1 is often fastest on a busy machine)")
    p.add_argument("--temperature", type=float, default=d.temperature)
    p.add_argument("--input-size", type=int, default=d.input_size)
    p.add_argument("--resume", action="store_true", help="continue RUN from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start over in a RUN that has a checkpoint")
    p.add_argument("--log-data-order", action="store_true", help="log the samples of every step and rank")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv=None):
    """Entry point of `fastcolor train` and `python -m fastcolor.train`; returns the exit code."""
    args = vars(_parser().parse_args(argv))
    config = TrainConfig(**args)
    try:
        out = train(config)
    except (ValueError, FileNotFoundError) as exc:
        print(f"fastcolor train: error: {exc}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fastcolor train: wrote {out / 'model.safetensors'}")
    return 0

