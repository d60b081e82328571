"""Streaming loader: batches of :class:`~fastmc.data.batch.RawBatch` from an event store.

:class:`EventLoader` is a ``torch.utils.data.IterableDataset``.  Each batch is assembled from
contiguous runs of events of each process ("stream"), read straight from the store's ``.npy``
files with ``os.preadv`` into fresh buffers (no memory map is kept resident), so memory is
bounded by a few batches whatever the store size.

Modes
-----
``"balanced"`` (default; the theses' scheme)
    Every batch takes events from every process in turn: with F processes and batch size B each
    process contributes floor(B/F) or ceil(B/F) events (the B mod F extra events rotate over
    the processes from batch to batch).  A process that runs out starts again from its
    beginning (circular), so small processes repeat and large ones are sub-sampled.
``"count"`` / ``"weight"``
    Proportional: the events per process in a batch are multinomial with probabilities
    proportional to the process's event count (in the split) or to its summed weight
    (cross section x luminosity), so a batch resembles a draw from the mixed sample.

With ``interleave=True`` the events of a batch are ordered round-robin over the processes
(one event of each process in turn, as in the theses); otherwise they come process by process.

Determinism and epochs
----------------------
The batches depend only on (store, split, options, ``seed``, epoch): call :meth:`set_epoch`
before each epoch.  In balanced mode each stream continues where the previous epoch stopped
(epoch ``e`` starts ``e`` epochs' worth of events after a seeded random offset), so successive
epochs see new events; in proportional modes each epoch draws new seeded offsets and counts.

Sharding
--------
Each DataLoader worker and each distributed rank is a *shard* (``rank * num_workers + worker``
of ``world_size * num_workers``); a shard reads only its own contiguous part of every process,
so shards never share events.  ``batches_per_epoch`` is per rank: a rank's workers take the
batches ``w, w + W, ...`` in turn (the DataLoader hands them out in that order).  A process
with fewer events than there are shards cannot be split and raises ValueError.  Processes with
no events in the split are left out (see :attr:`EventLoader.process_indices`).
With DataLoader workers keep ``persistent_workers=False`` (the default), so that each epoch's
workers see the epoch set by :meth:`EventLoader.set_epoch`.  Workers yield CPU tensors through
shared memory, which costs more than reading (see docs/benchmarks.md): with one rank, zero
workers is the fastest; workers and ranks are there to split the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from fastmc.data.batch import RawBatch
from fastmc.data.store import EventStore

__all__ = ["EventLoader"]

Mode = Literal["balanced", "count", "weight"]
_ARRAYS = ("types", "p4", "met", "met_phi", "weight")


class _NpyReader:
    """Reads contiguous row ranges of a ``.npy`` file into caller buffers with ``preadv``."""

    def __init__(self, path: Path) -> None:
        self.fd = -1
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
        self.path, self.shape, self.dtype = path, shape, dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Copy rows [start, stop) into ``out`` (a C-contiguous array of stop-start rows)."""
        nbytes = (stop - start) * self.row_bytes
        if nbytes == 0:
            return
        view = memoryview(out).cast("B")
        got = os.preadv(self.fd, [view], self.offset + start * self.row_bytes)
        while got < nbytes:  # short reads are allowed by POSIX
            more = os.preadv(self.fd, [view[got:]], self.offset + start * self.row_bytes + got)
            if more <= 0:
                raise OSError(f"{self.path}: unexpected end of file")
            got += more

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()


class EventLoader(torch.utils.data.IterableDataset):
    """Batches of RawBatch from an event store (see the module docstring).

    Parameters
    ----------
    store : an :class:`EventStore` or its path.
    split : "train", "val" or "test".
    batch_size : events per batch (B).  batches_per_epoch : batches per epoch per rank.
    mode : "balanced" | "count" | "weight".
    seed : seed of offsets and (proportional modes) of the batch composition.
    device : where to put the batches (only without DataLoader workers; workers yield CPU
        tensors, move them in the training loop, e.g. with ``pin_memory``).
    processes : names or indices of the processes to use (default: all with events in split).
    rank, world_size : this process's place in distributed training; default from
        ``torch.distributed`` when it is initialised, else 0 and 1.
    interleave : order each batch round-robin over the processes.
    dtype : float dtype of p4, met, met_phi and weight.

    Each batch is a RawBatch with types int64 [B, K], p4 [B, K, 4] (GeV), met [B] (GeV),
    met_phi [B], weight [B] and process int64 [B] (index into ``store.processes``).
    Use with ``torch.utils.data.DataLoader(loader, batch_size=None, num_workers=...)``.
    """

    def __init__(
        self,
        store: EventStore | str | os.PathLike[str],
        split: str = "train",
        *,
        batch_size: int = 10_000,
        batches_per_epoch: int = 1000,
        mode: Mode = "balanced",
        seed: int = 0,
        device: torch.device | str | None = None,
        processes: Sequence[str | int] | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        interleave: bool = True,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.store = store if isinstance(store, EventStore) else EventStore(store)
        self.store._check_split(split)
        if mode not in ("balanced", "count", "weight"):
            raise ValueError(f"mode must be 'balanced', 'count' or 'weight', got {mode!r}")
        if batch_size < 1 or batches_per_epoch < 1:
            raise ValueError(
                f"batch_size and batches_per_epoch must be >= 1, got {batch_size}, {batches_per_epoch}"
            )
        self.split, self.batch_size, self.batches_per_epoch = split, batch_size, batches_per_epoch
        self.mode, self.seed, self.interleave, self.dtype = mode, int(seed), interleave, dtype
        self.device = None if device is None else torch.device(device)
        if processes is None:
            idx = range(len(self.store.processes))
        else:
            idx = sorted({self.store.process_index(p) for p in processes})
        self.process_indices: tuple[int, ...] = tuple(
            i for i in idx if self.store.n_events(split, i) > 0
        )
        if not self.process_indices:
            raise ValueError(f"no events in split {split!r} of {self.store.path} for these processes")
        self.n_per_process = np.array(
            [self.store.n_events(split, i) for i in self.process_indices], np.int64
        )
        if mode == "count":
            share = self.n_per_process.astype(np.float64)
        elif mode == "weight":
            share = np.array([self.store.weight_sum(split, i) for i in self.process_indices])
            if not (np.all(share >= 0) and share.sum() > 0):
                raise ValueError("mode='weight' needs non-negative weights with a positive sum")
        else:
            share = np.ones(len(self.process_indices))
        self.shares = share / share.sum()
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self._readers: dict[tuple[int, str], _NpyReader] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = None
        return state

    # ------------------------------------------------------------------ public helpers
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch (changes offsets / composition deterministically)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Batches per epoch of this rank (all its workers together)."""
        return self.batches_per_epoch

    def shard(self) -> tuple[int, int]:
        """(shard index, number of shards) of the calling process / DataLoader worker."""
        rank, world = self._rank, self._world_size
        if rank is None or world is None:
            dist = torch.distributed
            if dist.is_available() and dist.is_initialized():
                rank = dist.get_rank() if rank is None else rank
                world = dist.get_world_size() if world is None else world
            else:
                rank = 0 if rank is None else rank
                world = 1 if world is None else world
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} out of range for world_size {world}")
        info = torch.utils.data.get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        return rank * nw + wid, world * nw

    def part(self, shard: int, n_shards: int) -> tuple[np.ndarray, np.ndarray]:
        """(start, stop) int64 [F] of each used process's events read by a shard."""
        n = self.n_per_process
        start, stop = n * shard // n_shards, n * (shard + 1) // n_shards
        small = [
            self.store.processes[p]
            for p, a, b in zip(self.process_indices, start, stop, strict=True)
            if b <= a
        ]
        if small:
            raise ValueError(
                f"processes {', '.join(small)} have fewer events in split {self.split!r} than the "
                f"{n_shards} loader shards (ranks x workers) that must read disjoint parts; use "
                "fewer DataLoader workers or leave them out (processes=...)"
            )
        return start, stop

    # ------------------------------------------------------------------ iteration
    def batch_counts(self, shard: int, n_shards: int) -> np.ndarray:
        """Events per process, int64 [n_batches, F], of this epoch's batches of a shard.

        Row j is the shard's j-th batch; its rank's batch index is ``worker + j * num_workers``.
        """
        if not 0 <= shard < n_shards:
            raise ValueError(f"shard {shard} out of range for {n_shards} shards")
        info = torch.utils.data.get_worker_info()
        nworkers = 1 if info is None else info.num_workers
        batches = np.arange(shard % nworkers, self.batches_per_epoch, nworkers)
        return self._counts(batches, shard)

    def _counts(self, batches: np.ndarray, shard: int) -> np.ndarray:
        f = len(self.process_indices)
        b = self.batch_size
        if self.mode == "balanced":
            q, r = divmod(b, f)
            fi = np.arange(f)
            extra = ((fi[None, :] - batches[:, None] * r) % f) < r
            return q + extra.astype(np.int64)
        rng = self._rng(shard, stream=1)
        return rng.multinomial(b, self.shares, size=len(batches)).astype(np.int64)

    def _rng(self, shard: int, stream: int, epoch: int | None = None) -> np.random.Generator:
        ep = self.epoch if epoch is None else epoch
        return np.random.default_rng([self.seed, shard, stream, ep, 0x5EED])

    def _open(self) -> dict[tuple[int, str], _NpyReader]:
        if self._readers is None:
            self._readers = {
                (i, name): _NpyReader(self.store.array_path(self.split, p, name))
                for i, p in enumerate(self.process_indices)
                for name in _ARRAYS
            }
        return self._readers

    def __iter__(self) -> Iterator[RawBatch]:
        shard, n_shards = self.shard()
        start, stop = self.part(shard, n_shards)
        length = stop - start
        counts = self.batch_counts(shard, n_shards)
        if self.mode == "balanced":
            # fixed seeded phase per shard; each epoch continues where the previous stopped
            phase = self._rng(shard, stream=0, epoch=0).integers(0, length)
            pos = (phase + self.epoch * counts.sum(axis=0)) % length
        else:
            pos = self._rng(shard, stream=0).integers(0, length)
        readers = self._open()
        # a part no longer than what one batch may take is read once and kept (bounded by
        # about one batch in total): it would otherwise be re-read, wrapping, in every batch
        small = {
            i: self._read_part(readers, i, int(start[i]), int(length[i]))
            for i in np.flatnonzero(length <= counts.max(axis=0, initial=0)).tolist()
        }
        for row in counts:
            batch = self._read_batch(readers, small, row, start, length, pos)
            pos = (pos + row) % length
            yield batch

    def _buffers(self, n: int) -> dict[str, np.ndarray]:
        k = self.store.max_objects
        return {
            "types": np.empty((n, k), np.int8),
            "p4": np.empty((n, k, 4), np.float32),
            "met": np.empty(n, np.float32),
            "met_phi": np.empty(n, np.float32),
            "weight": np.empty(n, np.float64),
        }

    def _read_part(
        self, readers: dict[tuple[int, str], _NpyReader], i: int, start: int, length: int
    ) -> dict[str, np.ndarray]:
        bufs = self._buffers(length)
        for name, buf in bufs.items():
            readers[(i, name)].read(start, start + length, buf)
        return bufs

    def _read_batch(
        self,
        readers: dict[tuple[int, str], _NpyReader],
        small: dict[int, dict[str, np.ndarray]],
        counts: np.ndarray,
        start: np.ndarray,
        length: np.ndarray,
        pos: np.ndarray,
    ) -> RawBatch:
        b = int(counts.sum())
        bufs = self._buffers(b)
        at = 0
        for i, c in enumerate(counts.tolist()):
            if i in small:
                idx = (int(pos[i]) + np.arange(c)) % int(length[i])
                for name, buf in bufs.items():
                    np.take(small[i][name], idx, axis=0, out=buf[at : at + c])
                at += c
                continue
            taken = 0
            while taken < c:  # circular: may wrap (several times for tiny processes)
                p = int(pos[i] + taken) % int(length[i])
                m = min(c - taken, int(length[i]) - p)
                lo = int(start[i]) + p
                for name, buf in bufs.items():
                    readers[(i, name)].read(lo, lo + m, buf[at : at + m])
                taken += m
                at += m
        proc = np.repeat(np.asarray(self.process_indices, np.int64), counts)
        if self.interleave and len(counts) > 1:
            # rank of each event within its process, then round-robin over processes
            within = np.arange(b) - np.repeat(np.cumsum(counts) - counts, counts)
            order = np.argsort(within * len(counts) + np.repeat(np.arange(len(counts)), counts),
                               kind="stable")
            bufs = {name: buf[order] for name, buf in bufs.items()}
            proc = proc[order]
        dt = self.dtype
        batch = RawBatch(
            types=torch.from_numpy(bufs["types"]).long(),
            p4=torch.from_numpy(bufs["p4"]).to(dt),
            met=torch.from_numpy(bufs["met"]).to(dt),
            met_phi=torch.from_numpy(bufs["met_phi"]).to(dt),
            weight=torch.from_numpy(bufs["weight"]).to(dt),
            process=torch.from_numpy(proc),
        )
        if self.device is not None and torch.utils.data.get_worker_info() is None:
            batch = batch.to(self.device)
        return batch
