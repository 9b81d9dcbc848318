"""The run: train() sets up the processes, the run folder and the statistics,
then a Run steps through the data order, logging, validating and writing its
files as it goes.

RUN holds config.json (the final TrainConfig), log.jsonl (one JSON record per
line: the mean training loss every --log-every steps, validation every
--val-every steps, a "stopped" record when --time-limit ends the run),
checkpoint.safetensors and model.safetensors (both every --ckpt-every steps and
at the last step). A resumed run drops the log lines past its checkpoint (written
by a run killed after it) and continues the log.

Finite or refuse: every step's loss is watched on the device (no host sync per
step) and checked at every log, validation and checkpoint step, the weights and
Adam state before every write; a run whose loss or weights stop being finite
raises FloatingPointError naming the step and writes nothing more, so the last
good checkpoint and model stay on disk. Writes are atomic: an error or Ctrl-C
(KeyboardInterrupt, re-raised after a one-line note of the step to --resume
from) leaves the previous files whole.
"""

import dataclasses
import json
import math
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..atomic import write_bytes_atomic
from ..color.spaces import color_space
from ..finite import describe_tensor, first_nonfinite
from .checkpoint import (check_resume, checkpoint_step, flatten_optimizer, read_checkpoint, restore_training_state, rng_state,
                         save_checkpoint, saved_statistics)
from .config import parse_args
from .distributed import Distributed, use_device
from .losses import build_decoder, build_model_and_loss, save_trained_model
from .order import DataOrder, KeyedDataset, StepBatches, noise_seed
from .schedule import lr_at, time_limited_step
from .statistics import build_statistics
from .validation import validate, validation_set

__all__ = ["train", "main", "Run", "LossWindow", "DivergenceWatch", "prepare_out", "truncate_log",
           "shared_statistics", "CHECKPOINT_FILE"]

CHECKPOINT_FILE = "checkpoint.safetensors"
_RUN_FILES = (CHECKPOINT_FILE, "model.safetensors", "log.jsonl")


def train(config):
    """Run (or --resume) a training run; returns the run folder (Path).

    Raises ValueError with a message naming the problem on bad configuration,
    data or checkpoint; FloatingPointError when the run diverges (the last good
    checkpoint kept); OSError when a file cannot be written (the previous one
    kept); KeyboardInterrupt on Ctrl-C (after a note of the step to resume from).
    """
    from ..data.dataset import ImageFolder
    from ..data.images import find_images

    ctx = Distributed()
    config = dataclasses.replace(config, world_size=ctx.world_size).resolved()
    if not find_images([config.data]):
        raise ValueError(f"no images found under {config.data}")
    ckpt_path = prepare_out(config, ctx.main)
    resume = None
    if config.resume:
        resume = read_checkpoint(ckpt_path)
        check_resume(resume[1]["config"], config)

    device_name = ctx.process_device(config.device)
    device = use_device(device_name)
    ctx.init(device)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        dataset = ImageFolder(config.data, crop_size=config.crop, augment=True, max_side=config.max_side,
                              cache=config.cache, seed=config.seed)
        # Codebook, prior and class weights: from the checkpoint, or from the data (rank 0, broadcast).
        if resume is not None:
            codebook, prior, class_weights, sigma = saved_statistics(*resume)
        else:
            codebook, prior, class_weights, sigma = shared_statistics(config, ctx, dataset.paths)
        config = config.for_run(sigma=sigma, device=device_name)
        return Run(config, ctx, device, dataset, (codebook, prior, class_weights), resume).train()
    finally:
        ctx.close()


def main(argv=None):
    """Entry point of `fastcolor train` and `python -m fastcolor.train`; returns 0.

    Errors propagate (ValueError, OSError, FloatingPointError, KeyboardInterrupt;
    see train()): the command line's one handler (fastcolor.errors) turns them
    into one line and the exit code. argparse exits 2 on bad flags itself."""
    config = parse_args(argv)
    out = train(config)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"fastcolor train: wrote {out / 'model.safetensors'}")
    return 0


def shared_statistics(config, ctx, files):
    """(codebook, prior, class_weights, sigma) of the training files, computed
    on rank 0 and broadcast (a ValueError there is raised on every rank)."""
    result = None
    if ctx.main:
        try:
            result = build_statistics(config, files)
        except ValueError as exc:
            result = exc
    result = ctx.broadcast(result)
    if isinstance(result, Exception):
        raise result
    codebook, prior, class_weights, sigma, skipped = result
    if skipped and ctx.main:
        print(f"fastcolor train: skipped {len(skipped)} unreadable image(s), e.g. {skipped[0]}", file=sys.stderr)
    return codebook, prior, class_weights, sigma


def prepare_out(config, main):
    """Check --resume / --overwrite against RUN; returns the checkpoint path.
    The main process creates RUN (and empties it with --overwrite)."""
    out = Path(config.out)
    ckpt = out / CHECKPOINT_FILE
    if config.resume:
        if not ckpt.exists():
            raise ValueError(f"--resume: {ckpt} does not exist (nothing to resume)")
    elif ckpt.exists() and not config.overwrite:
        raise ValueError(
            f"{out} already holds a training run (checkpoint.safetensors); "
            "pass --resume to continue it or --overwrite to start over"
        )
    if main:
        out.mkdir(parents=True, exist_ok=True)
        if config.overwrite and not config.resume:
            for name in _RUN_FILES:
                (out / name).unlink(missing_ok=True)
    return ckpt


def truncate_log(path, step):
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


class LossWindow:
    """The training loss and throughput since the last loss log record."""

    def __init__(self):
        self.loss, self.steps, self.images = 0.0, 0, 0
        self.start = time.perf_counter()

    def add(self, loss, images):
        self.loss += loss.detach().float()
        self.steps += 1
        self.images += images

    def mean_loss(self):
        return self.loss.item() / self.steps

    def images_per_s(self):
        return self.images / max(time.perf_counter() - self.start, 1e-9)


@contextmanager
def interrupts_deferred():
    """Hold a first Ctrl-C (SIGINT) back until the block ends, then raise it, so
    that the checkpoint and the model of a step are written as a pair; a
    second Ctrl-C interrupts at once. Only in the main thread (elsewhere, and
    when SIGINT is ignored, the block runs as it is)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    received = []

    def hold(signum, frame):
        received.append(signum)
        if len(received) > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if previous is signal.default_int_handler or not callable(previous):
            raise KeyboardInterrupt
        previous(signal.SIGINT, None)


class DivergenceWatch:
    """The first step whose loss is not finite, tracked on the loss's device:
    a few tiny tensor operations per step and no host sync until first_bad()."""

    def __init__(self):
        self.step = self.loss = None  # (), on the loss's device; step 0: none yet

    def add(self, loss, step):
        """Watch the loss of step `step` (1-based, the steps done)."""
        loss = loss.detach().float()
        if self.step is None:
            self.step = torch.zeros((), dtype=torch.int64, device=loss.device)
            self.loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        first = torch.logical_not(torch.isfinite(loss)) & (self.step == 0)
        self.step = torch.where(first, step, self.step)
        self.loss = torch.where(first, loss, self.loss)

    def first_bad(self):
        """(step, loss) of the first non-finite loss seen, or None (one sync)."""
        if self.step is None:
            return None
        step, loss = self.step.item(), self.loss.item()
        return (step, loss) if step else None


class Run:
    """One process's part of a training run: the model, the optimizer, the data
    order and the statistics, set up (or restored from a checkpoint) by the
    constructor; train() runs the steps.

    config: the final TrainConfig (TrainConfig.for_run). statistics: (codebook,
    prior, class_weights). resume: (tensors, meta) of a checkpoint, or None.
    """

    def __init__(self, config, ctx, device, dataset, statistics, resume=None):
        self.config, self.ctx, self.device = config, ctx, device
        self.out = Path(config.out)
        self.ckpt_path = self.out / CHECKPOINT_FILE
        self.space = color_space(config.space)
        self.amp = config.amp == "bf16"
        self.codebook, self.prior, self.class_weights = statistics
        self.dataset = dataset
        self.order = DataOrder(len(dataset), config.batch, config.seed, ctx.rank, ctx.world_size)

        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model, self.criterion = build_model_and_loss(config, self.codebook, self.class_weights)
        self.model.to(device)
        self.criterion.to(device)
        if device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
        self.decoder = build_decoder(config, self.codebook).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(0.9, 0.99),
                                          weight_decay=config.weight_decay)
        self.start = 0
        self.saved = None  # the step of the last checkpoint on disk (this run's, or the resumed one)
        if resume is not None:
            tensors, meta = resume
            self.start = self.saved = restore_training_state(tensors, meta, self.model, self.optimizer, ctx.rank,
                                                             device)
            if meta["data_order"]["n"] != self.order.n:
                raise ValueError(
                    f"cannot --resume: the training folder now has {self.order.n} readable images, "
                    f"the checkpoint was trained on {meta['data_order']['n']}"
                )
        self.net = ctx.wrap(self.model, device)
        self.noise_gen = torch.Generator(device=device)
        self.watch = DivergenceWatch()
        self.log_path = self.out / "log.jsonl"
        self.val = validation_set(config, ctx.rank)
        if ctx.main:
            if resume is not None:
                truncate_log(self.log_path, self.start)
            text = json.dumps(dataclasses.asdict(config), indent=2) + "\n"
            write_bytes_atomic(self.out / "config.json", text.encode())

    # ------------------------------------------------------------------ files

    def log(self, record):
        """Append a record to log.jsonl (rank 0)."""
        if self.ctx.main:
            with open(self.log_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    def kept(self):
        """Which checkpoint a failed or interrupted run leaves, in words."""
        if self.saved is None:
            return "no checkpoint was written yet"
        return f"the last good checkpoint (step {self.saved}) is kept"

    def diverged(self, step, what):
        """Log and raise the divergence found at `step` (nothing more is written)."""
        self.log({"step": step, "stopped": "diverged", "reason": what})
        return FloatingPointError(f"training diverged at step {step}: {what}; {self.kept()}")

    def check_loss(self):
        """FloatingPointError naming the first step whose loss was not finite
        (on any rank: all ranks agree), if there was one."""
        bad = self.watch.first_bad()
        first = self.ctx.min(float(bad[0]) if bad else math.inf, self.device)
        if math.isfinite(first):
            value = bad[1] if bad and bad[0] == first else float("nan")
            raise self.diverged(int(first), f"the loss is {value}")

    def check_state(self, step):
        """FloatingPointError when a weight, buffer or Adam state is not finite
        (the same on every rank: DDP keeps them equal)."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        tensors.update(flatten_optimizer(self.optimizer)[0])
        name = first_nonfinite(tensors)
        if name is not None:
            raise self.diverged(step, f"{describe_tensor(name)} holds NaN/inf values")

    def write_files(self, step, steps):
        """checkpoint + model.safetensors at `step` of a run of `steps` steps (all
        ranks call it; rank 0 writes), once the losses and the state are known
        to be finite. steps is config.steps, or the step the time limit ended
        the run at (the checkpoint's config then says so). An OSError (disk
        full...) is raised with the file as its filename and what is kept in
        its strerror; the previous file is left intact (atomic writes)."""
        c, ctx = self.config, self.ctx
        self.check_loss()
        self.check_state(step)
        rng = ctx.gather(rng_state(self.device))
        ctx.barrier()
        if ctx.main:
            path = self.ckpt_path
            try:
                with interrupts_deferred():
                    save_checkpoint(path, config=dataclasses.replace(c, steps=steps), step=step, model=self.model,
                                    optimizer=self.optimizer, codebook=self.codebook, prior=self.prior,
                                    class_weights=self.class_weights, data_order=self.order.state(step), rng=rng)
                    self.saved, path = step, self.out / "model.safetensors"
                    save_trained_model(path, c, self.model, self.codebook, self.class_weights, step, self.order.n)
            except OSError as exc:
                raise OSError(exc.errno, f"{exc.strerror or exc}; {self.kept()}", os.fspath(path)) from exc
        self.saved = step
        ctx.barrier()

    # ------------------------------------------------------------------ steps

    def loader(self):
        """The DataLoader of the remaining steps' batches."""
        c = self.config
        return torch.utils.data.DataLoader(
            KeyedDataset(self.dataset, c.seed),
            batch_sampler=StepBatches(self.order, self.start, c.steps),
            num_workers=c.workers,
            persistent_workers=c.workers > 0,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator(),  # keeps the global RNG untouched by the loader
        )

    def learning_rate(self, step, train_start):
        """(lr, time up) of step. With --time-limit the schedule runs on whichever
        is further along, the steps or the clock, and the run ends when the time
        is up (ranks agree through rank 0's clock)."""
        c, ctx = self.config, self.ctx
        if not c.time_limit:
            return lr_at(step, c), False
        elapsed = ctx.mean(time.perf_counter() - train_start if ctx.main else 0.0, self.device) * ctx.world_size
        scheduled, time_up = time_limited_step(step, c.steps, elapsed, c.time_limit)
        return lr_at(scheduled, c), time_up

    def train_step(self, step, batch, lr):
        """One optimisation step on a batch of RGB crops; returns the loss."""
        c, device = self.config, self.device
        rgb = batch["rgb"].to(device, non_blocking=True)
        light, chroma = self.space.split(rgb)
        x = self.space.normalize_light(light)
        if c.light_noise > 0:
            self.noise_gen.manual_seed(noise_seed(c.seed, step, self.ctx.rank))
            x = x + c.light_noise * torch.randn(x.shape, generator=self.noise_gen, device=device, dtype=x.dtype)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp):
            logits = self.net(x)
        loss = self.criterion(logits, chroma)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss

    def log_loss(self, done, lr, window, bar):
        """The loss record of the window ending at step `done`."""
        mean_loss = self.ctx.mean(window.mean_loss(), self.device)
        ips = window.images_per_s()
        self.log({"step": done, "loss": mean_loss, "lr": lr, "images_per_s": ips,
                  "epoch": self.order.state(done)["epoch"]})
        bar.set_postfix(loss=f"{mean_loss:.4f}", img_s=f"{ips:.1f}", lr=f"{lr:.2e}")

    def validate(self, done, bar):
        """Validate (rank 0, which alone has validation crops) and log the record."""
        record = validate(self.config, self.model, self.criterion, self.decoder, self.val, self.device, self.amp)
        self.log({"step": done, **record})
        bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))

    def train(self):
        """Run the steps from the start (0 or the checkpoint's) to the end; returns RUN."""
        c, ctx = self.config, self.ctx
        batches = iter(self.loader())
        bar = tqdm(total=c.steps, initial=self.start, desc="train", disable=not (ctx.main and c.progress),
                   dynamic_ncols=True)
        if ctx.main:
            print(f"fastcolor train: training from step {self.start} to {c.steps} on {self.device}",
                  file=sys.stderr, flush=True)
        self.progress = self.start  # steps done
        try:
            self._steps(batches, bar)
        except KeyboardInterrupt:
            bar.close()
            if ctx.main:
                try:  # what is on disk, whatever the interrupt cut short
                    self.saved = checkpoint_step(self.ckpt_path) if self.ckpt_path.exists() else None
                except ValueError:
                    pass
                print(f"fastcolor train: interrupted after step {self.progress}; {self.kept()}"
                      + (" (continue with --resume)" if self.saved is not None else ""), file=sys.stderr)
            raise
        finally:
            bar.close()
            # The DataLoader workers stop now, not when the traceback is collected.
            getattr(batches, "_shutdown_workers", lambda: None)()
        if self.start >= c.steps:  # resumed a finished run: rewrite its files
            self.write_files(self.start, c.steps)
        return self.out

    def _steps(self, batches, bar):
        c, ctx = self.config, self.ctx
        window = LossWindow()
        train_start = window.start
        end = c.steps  # the step the run ends at: c.steps, or earlier when the time is up
        self.net.train()
        for step, batch in enumerate(batches, start=self.start):
            lr, time_up = self.learning_rate(step, train_start)
            loss = self.train_step(step, batch, lr)
            done = self.progress = step + 1
            window.add(loss, batch["rgb"].shape[0] * ctx.world_size)
            self.watch.add(loss, done)
            if time_up:  # finish as if this were the last step
                end = done
            if c.log_data_order:
                self.log({"step": done, "data": ctx.gather([list(k) for k in self.order.keys(step)])})
            log_now = done % c.log_every == 0 or done == end
            val_now = self.val is not None and (done % c.val_every == 0 or done == end)
            if log_now or val_now:
                self.check_loss()  # nothing non-finite reaches the log
            if log_now:
                self.log_loss(done, lr, window, bar)
                window = LossWindow()
            if val_now:
                self.validate(done, bar)
            if done % c.ckpt_every == 0 or done == end:
                self.write_files(done, end)
            bar.update(1)
            if time_up:
                self.log({"step": done, "stopped": "time limit", "seconds": c.time_limit})
                break
