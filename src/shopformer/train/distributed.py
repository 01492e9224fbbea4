"""Data-parallel training over the processes ``torchrun`` starts (one node or many,
with its usual rendezvous flags): PyTorch's DistributedDataParallel, gloo on CPU and
NCCL on CUDA.

Every rank builds the same windows and the same shuffled global batches from the shared
seed; each trains on its contiguous slice of each global batch's rows (``Ranks.shard``),
so the ranks together see exactly the single-process batch. The loss of a slice is
weighted by its share of the global batch's targets (``shard_weight``), so DDP's mean of
the ranks' gradients is the gradient of the single-process loss over the whole batch,
uneven slices included. Validation, early stopping and the run folder are rank 0's; its
decisions are broadcast so every rank stops at the same step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist

from shopformer.train.device import resolve_device


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes; ``device`` is where it trains
    (``cuda:LOCAL_RANK`` for a multi-process CUDA run) and where collectives run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, n_rows: int) -> np.ndarray:
        """This rank's rows of a global batch of ``n_rows``: contiguous, sizes differing by
        at most one (ranks past the end of a short batch get none)."""
        return np.array_split(np.arange(n_rows), self.world_size)[self.rank]

    def broadcast(self, values: list[float]) -> list[float]:
        """Rank 0's ``values`` on every rank (validation scores, stop decisions)."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.broadcast(t, src=0)
        return t.tolist()

    def sum(self, value: float) -> float:
        """``value`` summed over the ranks."""
        if not self.distributed:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item())


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer (set by torchrun)") from None
    if value < 0:
        raise ValueError(f"environment variable {name}={value} must be >= 0")
    return value


def ranks_from_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun sets them; (0, 1, 0) outside torchrun."""
    rank, world, local = _env_int("RANK", 0), _env_int("WORLD_SIZE", 1), _env_int("LOCAL_RANK", 0)
    if world < 1 or rank >= world:
        raise ValueError(f"environment: RANK={rank} must be below WORLD_SIZE={world}")
    return rank, world, local


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single process): the one that writes files."""
    return ranks_from_env()[0] == 0


def start(device_name: str) -> Ranks:
    """This process's ``Ranks``; with WORLD_SIZE > 1 it joins the process group (once:
    later calls reuse it) on the backend of its device."""
    rank, world, local = ranks_from_env()
    device = resolve_device(device_name)
    if world == 1:
        return Ranks(device=device)
    if device.type == "cuda":
        if device.index is None:  # one GPU per process on each node
            device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if dist.get_world_size() != world or dist.get_rank() != rank:
        raise RuntimeError(f"process group has rank {dist.get_rank()} of {dist.get_world_size()}, "
                           f"the environment says {rank} of {world}")
    return Ranks(rank, world, local, device)


def stop() -> None:
    """Leave the process group (when one was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def wrap(module: torch.nn.Module, ranks: Ranks) -> torch.nn.Module:
    """``module`` in DistributedDataParallel when distributed (gradients averaged over
    the ranks in backward), else itself. Buffers are the same on every rank (same seed,
    same data) and never change in training, so they are not re-broadcast each step."""
    if not ranks.distributed:
        return module
    from torch.nn.parallel import DistributedDataParallel

    ids = [ranks.device.index] if ranks.device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


def shard_weight(local_targets: int, global_targets: int, world_size: int) -> float:
    """Factor on a rank's mean loss over its ``local_targets`` so that DDP's average of
    the ranks' gradients equals the gradient of the mean over all ``global_targets``:
    mean_r * n_r * world / n (then / world by DDP) sums to sum_all / n."""
    if global_targets <= 0:
        raise ValueError(f"a global batch needs targets, got {global_targets}")
    return local_targets * world_size / global_targets
