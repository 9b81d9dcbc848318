"""Training: ``fastcolor train --data DIR --out RUN [options]`` (docs/design.md, section 5.1).

One step: a batch of RGB crops (random crop + flip from fastcolor.data.dataset.ImageFolder)
-> Lab or YUV on the training device (fastcolor.color.spaces) -> lightness normalised
plus Gaussian noise of std --light-noise -> logits -> loss against the chroma at full
resolution -> Adam (betas 0.9, 0.99; weight decay 1e-3 as in the paper).

Before the first step the run computes the statistics of its training set (the
codebook, the prior of the photos' chroma over it, the class-rebalancing weights);
every --val-every steps rank 0 scores fixed validation crops; every --ckpt-every
steps RUN/checkpoint.safetensors and RUN/model.safetensors are written.

Determinism and resuming: the data order, the augmentation and the lightness noise
are functions of (seed, step, rank), the learning rate of the step, and the
checkpoint holds everything else (model, Adam state, RNG states of every rank,
codebook, prior, class weights). --resume continues a killed run; on the CPU the
result is bit-identical to an uninterrupted run (with the same torch thread count:
CPU reductions are split by thread). A run that differs from its checkpoint in what
matters (RESUME_MUST_MATCH) is refused. Multi-GPU / multi-node: torchrun -m
fastcolor.train (--batch is per process).

One job per module:

  config.py       TrainConfig (resolution and checks, frozen), the command line, RESUME_MUST_MATCH
  schedule.py     the learning rate of a step: warmup + cosine decay, --time-limit stretch
  order.py        the resumable data order (DataOrder), per-sample augmentation seeds
  statistics.py   codebook, prior and class weights of the training set
  losses.py       the network + loss by --loss (rebalanced, l2), decoding, the model file
  checkpoint.py   the checkpoint format: save, read, resume checks and restore
  distributed.py  torchrun / DDP processes
  validation.py   the fixed validation crops and their metrics
  loop.py         train(): the run folder, the log, the step loop; main()
"""

from .checkpoint import checkpoint_step, read_checkpoint
from .config import RESUME_MUST_MATCH, TrainConfig
from .loop import main, train
from .order import DataOrder
from .schedule import lr_at

__all__ = ["TrainConfig", "train", "main", "lr_at", "DataOrder", "checkpoint_step", "read_checkpoint",
           "RESUME_MUST_MATCH"]
