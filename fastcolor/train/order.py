"""The resumable data order: which samples a step takes, and the seeds of their
augmentation and of the lightness noise, all functions of (seed, step, rank).

The sample stream is the concatenation of per-epoch permutations (epoch e seeded
by (seed, e)); step s takes stream positions [s B W, (s + 1) B W) for batch B per
process and W processes, rank r the slice [s B W + r B, s B W + (r + 1) B). Each
sample's augmentation is drawn with the global RNGs (torch, numpy, random)
reseeded from (seed, epoch, index) for that one item, so DataLoader workers,
their number and their order change nothing. The lightness noise of step s on
rank r comes from a generator seeded by (seed, step, rank).
"""

import random

import numpy as np
import torch

__all__ = ["mix_seed", "noise_seed", "DataOrder", "StepBatches", "KeyedDataset"]

_NOISE_TAG = 0x7015E


def mix_seed(*values):
    """A 63-bit seed from integers (numpy's SeedSequence hashing)."""
    state = np.random.SeedSequence([int(v) & (2**63 - 1) for v in values]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def noise_seed(seed, step, rank):
    """The seed of the lightness noise of `step` on `rank`."""
    return mix_seed(seed, _NOISE_TAG, step, rank)


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
            g = torch.Generator().manual_seed(mix_seed(self.seed, self._PERM_TAG, epoch))
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


class StepBatches:
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
        s = mix_seed(self.seed, self._AUG_TAG, epoch, index)
        _reset_draws(self.dataset, index)
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


def _reset_draws(dataset, index):
    """ImageFolder seeds an item's crop and flip from (its seed, index,
    torch.initial_seed(), a per-process count of draws for that index); the count
    depends on the process history (workers, resume), so it is reset
    (ImageFolder.reset_draws) and the reseeded torch.initial_seed() carries
    (epoch, index). Datasets without draw counts need nothing."""
    reset = getattr(dataset, "reset_draws", None)
    if reset is not None:
        reset(index)
