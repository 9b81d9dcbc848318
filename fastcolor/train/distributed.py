"""The processes of a run: torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK)
or a single process, and the few collective operations the loop needs.

--batch is per process (global batch = batch x world size); the codebook and
prior are computed on rank 0 and broadcast; rank 0 alone validates, logs and
writes files, so RUN must be on a file system every node sees (every rank reads
the checkpoint on --resume).
"""

import os

import torch
import torch.distributed as dist

__all__ = ["Distributed", "use_device"]


class Distributed:
    """torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK), or one process."""

    def __init__(self):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.enabled = self.world_size > 1
        self.main = self.rank == 0

    def process_device(self, device):
        """This process's device name for a resolved --device: "cuda:LOCAL_RANK"
        for "cuda" under torchrun, the name itself otherwise."""
        return f"cuda:{self.local_rank}" if self.enabled and device == "cuda" else device

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
        """The mean of value over the ranks."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.item() / self.world_size

    def min(self, value, device):
        """The smallest of value over the ranks (what every rank agrees on)."""
        if not self.enabled:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return t.item()

    def wrap(self, model, device):
        """The model under DistributedDataParallel when there are several processes."""
        if not self.enabled:
            return model
        return torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    def close(self):
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()


def use_device(name):
    """The torch.device of a device name, made current when it is a GPU (with an
    explicit index: some torch versions refuse a bare "cuda" in set_device)."""
    device = torch.device(name)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(device)
    return device
