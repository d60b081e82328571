"""Distributed training with ``torchrun``: the process group, each rank's role, the launcher.

``torchrun --nproc-per-node N -m fastmc train STORE -o MODEL ...`` (or ``fastmc train --nproc N
...``, which runs that command) starts N processes; :func:`process_group` joins them (gloo on
CPU, NCCL on CUDA: the same code), and :func:`fastmc.workflows.train.train_model` then wraps
the model in ``DistributedDataParallel``.  The roles:

- every rank reads its own part of the balanced stream (:class:`fastmc.data.loader.EventLoader`
  asks ``torch.distributed`` for its rank) with ``batch_size / N`` events per step
  (:func:`local_batch`), so one step of N ranks sees ``batch_size`` events as one process does
  and the learning rate keeps its meaning;
- gradients are averaged by DDP, the loss values and validation sums by :func:`all_sum`, so
  every rank takes the same decisions (NaN stop, early stopping, time limit);
- rank 0 alone writes the model directory (weights, checkpoint, history, config) and reports
  progress; the checkpoint is the same whatever N, so ``--resume`` works with another N.

Nothing here is needed for one process: with ``WORLD_SIZE`` unset or 1 every helper is the
identity.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import torch

from fastmc.errors import ConfigError

__all__ = [
    "DistContext",
    "all_sum",
    "barrier",
    "broadcast_flag",
    "context",
    "launch_command",
    "local_batch",
    "process_group",
    "rank_device",
    "union_keys",
]


@dataclasses.dataclass(frozen=True, kw_only=True)
class DistContext:
    """This process's place: ``rank`` of ``world_size`` ranks, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files and reports progress."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one rank (collectives are needed)."""
        return self.world_size > 1


def _dist():
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def context() -> DistContext:
    """The current :class:`DistContext` (one rank when no process group is initialised)."""
    dist = _dist()
    if dist is None:
        return DistContext()
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(device: str, ctx: DistContext | None = None) -> str:
    """The device string of this rank: ``auto``/``cuda`` -> ``cuda:LOCAL_RANK`` under DDP."""
    ctx = ctx or context()
    if not ctx.active or device.startswith("cuda:") or device == "cpu":
        return device
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return f"cuda:{ctx.local_rank}"
    return device


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[DistContext]:
    """Join the ranks started by ``torchrun`` (env ``WORLD_SIZE`` > 1) for the ``with`` body.

    The backend is NCCL when this rank runs on CUDA, gloo otherwise.  A group that is
    already initialised (by the caller) is used as it is and left open.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dist = torch.distributed
    if world <= 1 or _dist() is not None:
        yield context()
        return
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = rank_device(device, DistContext(rank=0, world_size=world, local_rank=local))
    backend = "nccl" if cuda.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(cuda))
    dist.init_process_group(backend=backend)
    try:
        yield context()
    finally:
        dist.destroy_process_group()


def local_batch(batch_size: int, ctx: DistContext | None = None) -> int:
    """Events per step of this rank: ``batch_size`` split over the ranks (sizes differ by <= 1)."""
    ctx = ctx or context()
    r, w = ctx.rank, ctx.world_size
    b = batch_size * (r + 1) // w - batch_size * r // w
    if b < 1:
        raise ConfigError(
            f"batch size {batch_size} cannot be split over {w} ranks; use at least {w}"
        )
    return b


def all_sum(values: Sequence[float], ctx: DistContext | None = None) -> list[float]:
    """Element-wise sum of ``values`` over the ranks (float64; the values themselves on one)."""
    ctx = ctx or context()
    if not ctx.active:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t)
    return t.cpu().tolist()


def union_keys(keys: Iterable[str], ctx: DistContext | None = None) -> list[str]:
    """The sorted union of every rank's ``keys`` (the names of loss parts)."""
    ctx = ctx or context()
    mine = sorted(set(keys))
    if not ctx.active:
        return mine
    every: list[Any] = [None] * ctx.world_size
    torch.distributed.all_gather_object(every, mine)
    return sorted({k for ks in every for k in ks})


def broadcast_flag(flag: bool, ctx: DistContext | None = None) -> bool:
    """Rank 0's ``flag`` on every rank (a decision such as the time limit)."""
    ctx = ctx or context()
    if not ctx.active:
        return flag
    return all_sum([float(flag) if ctx.is_main else 0.0], ctx)[0] > 0


def barrier(ctx: DistContext | None = None) -> None:
    """Wait for every rank (no-op on one)."""
    ctx = ctx or context()
    if ctx.active:
        torch.distributed.barrier()


def launch_command(nproc: int, argv: Sequence[str], *, nnodes: int = 1) -> list[str]:
    """The ``torchrun`` command that runs ``fastmc ARGV`` in ``nproc`` processes on this node.

    ``python -m torch.distributed.run --standalone --nproc-per-node N -m fastmc ARGV`` (the
    ``torchrun`` of the same Python); for several nodes see docs/scale.md.
    """
    if nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {nproc}")
    if nnodes != 1:
        raise ConfigError("--nproc launches on this node only; for several nodes see docs/scale.md")
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "fastmc", *argv]
