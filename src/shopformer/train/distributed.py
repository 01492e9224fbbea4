"""Data-parallel training over the processes ``torchrun`` starts (one node or many,
with its usual rendezvous flags): PyTorch's DistributedDataParallel, gloo on CPU and
NCCL on CUDA.

Every rank builds the same windows and the same shuffled global batches from the shared
seed; each trains on its contiguous slice of each global batch's rows (``Ranks.shard``),
so the ranks together see exactly the single-process batch. The loss of a slice is
weighted by its share of the global batch's targets (``shard_weight``), so DDP's mean of
the ranks' gradients is the gradient of the single-process loss over the whole batch,
uneven slices included. Validation, early stopping and the run folder are rank 0's; its
decisions are broadcast so every rank stops at the same step. Each rank reads the data
folder of its own host; ``prepare_on_every_rank`` checks that they all prepared the same
data (or stops them all with the reason) before the first step.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

from shopformer.train.device import resolve_device

T = TypeVar("T")


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


def stop(together: bool = False) -> None:
    """Leave the process group (when one was joined). ``together``: wait first until
    every rank is here (after a run that succeeded on all of them: rank 0 is still
    writing the run folder when the others finish, and a rank that tore its gloo group
    down meanwhile was once killed by std::terminate in CI). Not after an error, which
    other ranks may not have met."""
    if dist.is_available() and dist.is_initialized():
        if together:
            dist.barrier()
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


class RanksDisagree(ValueError):
    """Raised on every rank when another rank could not prepare its data, or prepared
    different data (hosts with different copies of the data folder)."""


def prepare_on_every_rank(device_name: str, prepare: Callable[[], T], fingerprint: Callable[[T], str],
                          writes_cache: bool = False) -> T:
    """``prepare()`` (each rank reads its own host's data folder), checked across ranks.

    One process: just ``prepare()``. Under torchrun the process group is joined first
    and the ranks compare outcomes before any training step, because across hosts a
    failure is otherwise silent: on one host torchrun stops a failed rank's siblings,
    but a rank whose host lacks the data folder leaves the other hosts' ranks waiting in
    ``init_process_group`` until its timeout (30 min). Every rank gets the same error
    (its own, or ``RanksDisagree`` naming the rank and host that failed), and the ranks
    must agree on ``fingerprint``: each builds the batches from its own copy, so
    different copies would train something else or desynchronise the collectives.

    ``writes_cache``: preparing writes next to the data (the bounded-memory path), so
    rank 0 prepares first, then the first process of each other host, then the rest:
    no two processes write one folder at once, shared filesystem or not (the later ones
    find the cache valid where the folder is shared)."""
    rank, world, local = ranks_from_env()
    if world == 1:
        return prepare()
    start(device_name)
    result, error, mark = None, None, None
    waves = (rank == 0, rank != 0 and local == 0, local != 0) if writes_cache else (True,)
    for mine in waves:
        if mine:
            try:
                result = prepare()
                mark = fingerprint(result)
            except Exception as exc:  # noqa: BLE001 - reported to every rank below, re-raised here
                error = exc
        if writes_cache:
            dist.barrier()
    reports: list = [None] * world
    dist.all_gather_object(reports, (socket.gethostname(), None if error is None else f"{type(error).__name__}: "
                                                                                      f"{error}", mark))
    if error is not None:
        raise error
    failed = [f"rank {r} on {host} could not prepare its data: {why}" for r, (host, why, _) in enumerate(reports) if why]
    if failed:
        raise RanksDisagree("; ".join(failed))
    if len({m for _, _, m in reports}) > 1:
        raise RanksDisagree("the ranks prepared different data (" + "; ".join(
            f"rank {r} on {host}: {m}" for r, (host, _, m) in enumerate(reports)) + "): every host needs the same "
            "data folder (a copy of it, or a shared filesystem) at the --data path")
    return result
