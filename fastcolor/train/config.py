"""What a training run depends on: TrainConfig, its resolution and checks, and
the command line (``fastcolor train --help``).

A config goes through two steps, each returning a new frozen TrainConfig:

1. ``resolved()`` (at the start of train()): the defaults that depend on other
   fields (k, warmup, device, amp, the validation folder) filled in, paths made
   absolute, the values checked.
2. ``for_run(sigma=..., device=...)`` (once the run has its codebook and its
   process): the soft-encoding width implied by the codebook (or stored in the
   checkpoint) and this process's device (``cuda:LOCAL_RANK`` under torchrun).

The final form is what the loop uses, what RUN/config.json holds and what the
checkpoint stores; nothing changes it afterwards.
"""

import argparse
import dataclasses
import math
import os
import re
from typing import Optional

import torch

from ..color.spaces import SPACES
from ..ops.backend import BACKENDS

__all__ = ["TrainConfig", "ARCHS", "CODEBOOKS", "LOSSES", "AMPS", "RESUME_MUST_MATCH", "build_parser",
           "parse_args"]

ARCHS = ("eccv16", "colorunet")
CODEBOOKS = ("zhang313", "data")
LOSSES = ("rebalanced", "l2")
AMPS = ("auto", "bf16", "off")
# Fields that must not change between a run and its --resume (they change the model,
# the data order or the optimisation); the others (logging, workers, device...) may.
RESUME_MUST_MATCH = (
    "data", "arch", "width", "codebook", "bins", "space", "lam", "k", "sigma", "loss", "lr",
    "weight_decay", "warmup", "final_lr_fraction", "batch", "crop", "steps", "seed", "light_noise",
    "max_side", "world_size",
)
_POSITIVE = ("batch", "crop", "steps", "val_every", "ckpt_every", "log_every", "bins", "stats_max_side")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. None means "resolved at the start" (see resolved()).

    Frozen: resolved() and for_run() return new configs."""

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
        sigma, which needs the codebook) and the values checked. Resolving a
        resolved config changes nothing."""
        _check(self)
        k = self.k if self.k is not None else (5 if self.codebook == "zhang313" else 1)
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        device = _resolve_device(self.device)
        amp = self.amp
        if amp == "auto":
            amp = "bf16" if device.startswith("cuda") else "off"
        data, out = os.path.abspath(self.data), os.path.abspath(self.out)
        if os.path.isfile(data):
            raise ValueError(f"--data {data} is a file; --data takes a folder of images")
        if not os.path.isdir(data):
            raise ValueError(f"training folder {data} does not exist")
        if os.path.exists(out) and not os.path.isdir(out):
            raise ValueError(f"--out {out} is a file; --out takes a run folder (new, or one to --resume)")
        return dataclasses.replace(
            self, data=data, out=out, k=k, device=device, amp=amp,
            warmup=min(1000, self.steps // 10) if self.warmup is None else self.warmup,
            val=_validation_folder(self.val, data),
        )

    def for_run(self, *, sigma, device):
        """The final config of a run: this resolved config with the values known
        only once the run has started, the codebook's soft-encoding width (sigma)
        and this process's device (e.g. "cuda:1" under torchrun)."""
        return dataclasses.replace(self, sigma=sigma, device=device)


# The smallest input the networks take (their input multiple): Colorizer refuses
# a model whose input_size is smaller (predict_padded pads any larger size).
MIN_INPUT_SIZE = 8
_DEVICE = re.compile(r"(auto|cpu|cuda(:\d+)?)")


def _resolve_device(device):
    """auto -> cuda or cpu; cpu, cuda, cuda:N checked against what torch sees."""
    if not isinstance(device, str) or not _DEVICE.fullmatch(device):
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}, but torch sees no CUDA device")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"--device {device}, but torch sees {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return device


def _check(c):
    _check_choice("arch", c.arch, ARCHS)
    _check_choice("codebook", c.codebook, CODEBOOKS)
    _check_choice("space", c.space, tuple(SPACES))
    _check_choice("loss", c.loss, LOSSES)
    _check_choice("backend", c.backend, tuple(BACKENDS))
    _check_choice("amp", c.amp, AMPS)
    if c.codebook == "zhang313" and c.space != "lab":
        raise ValueError(
            f"--codebook zhang313 is a Lab codebook and cannot be used with --space {c.space}; "
            "use --codebook data for YUV"
        )
    for name in _POSITIVE:
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
    for f in dataclasses.fields(c):
        value = getattr(c, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{f.name} must be a finite number, got {value}")
    if not c.width > 0:
        raise ValueError(f"width must be > 0, got {c.width}")
    if c.sigma is not None and not c.sigma > 0:
        raise ValueError(f"sigma must be > 0, got {c.sigma}")
    if c.warmup is not None and c.warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {c.warmup}")
    if c.max_side is not None and c.max_side < 1:
        raise ValueError(f"max_side must be a positive integer, got {c.max_side}")
    if not c.temperature >= 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0: the mode), got {c.temperature}")
    if c.input_size < MIN_INPUT_SIZE:
        raise ValueError(f"input_size must be at least {MIN_INPUT_SIZE} (the networks' input multiple; "
                         f"colorize refuses smaller), got {c.input_size}")
    if c.time_limit is not None and not c.time_limit > 0:
        raise ValueError(f"time_limit must be a finite number of seconds > 0, got {c.time_limit}")


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _validation_folder(val, data):
    """The validation folder (absolute) or None, from --val and the training folder."""
    if val == "auto":
        guess = os.path.join(os.path.dirname(data), "val")
        return guess if os.path.basename(data) == "train" and os.path.isdir(guess) else None
    if val in (None, "", "none"):
        return None
    val = os.path.abspath(val)
    if os.path.isfile(val):
        raise ValueError(f"--val {val} is a file; --val takes a folder of images, auto or none")
    if not os.path.isdir(val):
        raise ValueError(f"validation folder {val} does not exist")
    return val


# ----------------------------------------------------------------------------- command line


def build_parser():
    """The parser of ``fastcolor train``: one flag per TrainConfig field (but
    stats_max_side and world_size), each with its help text and default."""
    d = TrainConfig(data="", out="")
    p = argparse.ArgumentParser(
        prog="fastcolor train",
        description="Train a colorization network (ECCV16 or ColorUNet) on a folder of photos. "
        "Multi-GPU: torchrun --nproc_per_node N -m fastcolor.train ... (--batch is per process).",
    )
    dflt = " (default: %(default)s)"

    def flag(name, help, **kw):
        p.add_argument(name, help=help + (dflt if kw.get("default") is not None else ""), **kw)

    def switch(name, help, **kw):
        p.add_argument(name, action="store_true", help=help + " (default: off)", **kw)

    flag("--data", "folder of training images (searched recursively); required", required=True)
    flag("--out", "run folder: model.safetensors, checkpoint.safetensors, log.jsonl, config.json; required",
         required=True)
    flag("--val", "validation folder; 'auto': DATA/../val when DATA ends in /train and that folder exists; "
         "'none': no validation", default=d.val)
    flag("--crop", "training crop size in pixels (a multiple of 8)", type=int, default=d.crop)
    flag("--max-side", "downscale images to this longest side first (default: full size)", type=int, default=None)
    switch("--cache", "keep decoded images in memory (small sets, GPU runs)")
    flag("--workers", "DataLoader worker processes (0: load in the training process)", type=int,
         default=d.workers)

    flag("--arch", "network architecture", choices=ARCHS, default=d.arch)
    flag("--width", "channel width multiplier", type=float, default=d.width)
    flag("--codebook", "chroma bins: zhang313 (Zhang et al.'s 313 Lab bins) or data (k-means-like bins of "
         "the training set's chroma)", choices=CODEBOOKS, default=d.codebook)
    flag("--bins", "bins of a data codebook", type=int, default=d.bins)
    flag("--space", "colour space: lab (L*, a*b*) or yuv (Y, UV)", choices=tuple(SPACES), default=d.space)
    flag("--loss", "rebalanced: class-rebalanced cross-entropy over the bins; l2: regression of the chroma",
         choices=LOSSES, default=d.loss)
    flag("--lam", "rebalancing: weight of the uniform distribution mixed into the prior", type=float,
         default=d.lam)
    flag("--k", "soft-encoding neighbours (default: 5 for zhang313, 1 for data)", type=int, default=None)
    flag("--sigma", "soft-encoding and prior smoothing width (default: the codebook's, half its grid step)",
         type=float, default=None)
    flag("--backend", "kernels: the compiled C++/CUDA kernels; reference: the pure-PyTorch ops",
         choices=tuple(BACKENDS), default=d.backend)

    flag("--lr", "peak learning rate (Adam)", type=float, default=d.lr)
    flag("--weight-decay", "Adam weight decay", type=float, default=d.weight_decay)
    flag("--warmup", "linear warmup steps (default: steps/10, at most 1000)", type=int, default=None)
    flag("--final-lr-fraction", "the cosine decay ends at this fraction of --lr", type=float,
         default=d.final_lr_fraction)
    flag("--batch", "images per step per process", type=int, default=d.batch)
    flag("--steps", "optimisation steps", type=int, default=d.steps)
    flag("--seed", "seed of the initial weights, the data order, the augmentation and the noise", type=int,
         default=d.seed)
    flag("--light-noise", "std of the Gaussian noise added to the normalised lightness", type=float,
         default=d.light_noise)
    flag("--time-limit", "end the run after this much training time, the learning-rate schedule stretched "
         "to fit (for runs on a time budget; such a run is not bit-exactly resumable) (default: no limit)",
         type=float, default=None, metavar="SECONDS")

    flag("--val-every", "validate every this many steps", type=int, default=d.val_every)
    flag("--val-images", "validation crops (the first images of the validation folder)", type=int,
         default=d.val_images)
    flag("--ckpt-every", "write checkpoint.safetensors and model.safetensors every this many steps", type=int,
         default=d.ckpt_every)
    flag("--log-every", "log the mean loss every this many steps", type=int, default=d.log_every)
    flag("--amp", "mixed precision: auto is bf16 on CUDA and off on the CPU", choices=AMPS, default=d.amp)
    flag("--device", "auto (cuda when available), cpu, cuda or cuda:N", default=d.device)
    flag("--threads", "CPU threads for torch (1 is often fastest on a busy machine) (default: torch's)",
         type=int, default=None)
    flag("--temperature", "annealed-mean temperature stored in the model (and used to validate); >= 0, "
         "0 is the mode", type=float,
         default=d.temperature)
    flag("--input-size", "the size inference resizes the lightness to (stored in the model); at least 8",
         type=int,
         default=d.input_size)
    switch("--resume", "continue RUN from its checkpoint")
    switch("--overwrite", "start over in a RUN that has a checkpoint")
    switch("--log-data-order", "log the samples of every step and rank")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bars (default: shown)")
    return p


def parse_args(argv=None):
    """The TrainConfig of a ``fastcolor train`` command line (argparse exits on bad flags)."""
    return TrainConfig(**vars(build_parser().parse_args(argv)))
