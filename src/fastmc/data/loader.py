"""Streaming loader: batches of :class:`~fastmc.data.batch.RawBatch` from an event store.

:class:`EventLoader` is a ``torch.utils.data.IterableDataset``.  Each batch is assembled from
contiguous runs of events of each *stream*, read straight from the store's ``.npy`` files with
``os.preadv`` into fresh buffers (no memory map is kept resident), so memory is bounded by a
few batches whatever the store size.  A stream is a process (``streams="process"``, default)
or an input file of ``prepare`` (``streams="file"``: the file's events of all its processes,
in file order).  With the Dark Machines files (one process per file) the two coincide.

Modes
-----
``"balanced"`` (default; the theses' scheme)
    Every batch takes events from every stream in turn: with F streams and batch size B each
    stream contributes floor(B/F) or ceil(B/F) events (the B mod F extra events rotate over
    the streams from batch to batch).  A stream that runs out starts again from its
    beginning (circular), so small streams repeat and large ones are sub-sampled.
``"count"`` / ``"weight"``
    Proportional: the events per stream in a batch are multinomial with probabilities
    proportional to the stream's event count (in the split) or, for process streams, to the
    process's summed weight (cross section x luminosity), so a batch resembles a draw from
    the mixed sample.

With ``interleave=True`` the events of a batch are ordered round-robin over the streams
(one event of each stream in turn, as in the theses); otherwise they come stream by stream.
``RawBatch.process`` always holds each event's process index in ``store.processes``.

Determinism and epochs
----------------------
The batches depend only on (store, split, options, ``seed``, epoch): call :meth:`set_epoch`
before each epoch.  In balanced mode each stream continues where the previous epoch stopped
(epoch ``e`` starts ``e`` epochs' worth of events after a seeded random offset), so successive
epochs see new events; in proportional modes each epoch draws new seeded offsets and counts.

Sharding
--------
Each DataLoader worker and each distributed rank is a *shard* (``rank * num_workers + worker``
of ``world_size * num_workers``); a shard reads only its own contiguous part of every stream,
so shards never share events.  ``batches_per_epoch`` is per rank: a rank's workers take the
batches ``w, w + W, ...`` in turn (the DataLoader hands them out in that order).  A stream
with fewer events than there are shards cannot be split and raises ValueError.  Processes with
no events in the split are left out (see :attr:`EventLoader.process_indices` and
:attr:`EventLoader.stream_names`).
With DataLoader workers keep ``persistent_workers=False`` (the default), so that each epoch's
workers see the epoch set by :meth:`EventLoader.set_epoch`.  Workers yield CPU tensors through
shared memory, which costs more than reading (see docs/benchmarks.md): with one rank, zero
workers is the fastest; workers and ranks are there to split the data.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch

from fastmc.config import derive_seed
from fastmc.data._layout import NpyReader
from fastmc.data.batch import RawBatch
from fastmc.data.store import EventStore

__all__ = ["EventLoader"]

Mode = Literal["balanced", "count", "weight"]
_ARRAYS = ("types", "p4", "met", "met_phi", "weight")


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
    interleave : order each batch round-robin over the streams.
    dtype : float dtype of p4, met, met_phi and weight.
    streams : what the balanced / count modes balance: ``"process"`` (default; one stream per
        process ID) or ``"file"`` (one stream per input file of ``prepare``, holding that
        file's events of every selected process, in file order).  For Dark Machines files
        with one process each, both are the same; for a file that mixes processes (the
        background sample) ``"file"`` keeps the file's own process mixture, whereas
        ``"process"`` gives each rare process an equal share of every batch.

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
        streams: Literal["process", "file"] = "process",
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
        if streams not in ("process", "file"):
            raise ValueError(f"streams must be 'process' or 'file', got {streams!r}")
        self.streams = streams
        if processes is None:
            idx = list(range(len(self.store.processes)))
        else:
            idx = sorted({self.store.process_index(p) for p in processes})
        self.stream_names, self._segments = self._make_streams(idx)
        if not self._segments:
            raise ValueError(f"no events in split {split!r} of {self.store.path} for these processes")
        self.process_indices: tuple[int, ...] = tuple(
            sorted({p for segs in self._segments for p, _, _ in segs})
        )
        self.n_per_stream = np.array(
            [sum(n for _, _, n in segs) for segs in self._segments], np.int64
        )
        if mode == "count":
            share = self.n_per_stream.astype(np.float64)
        elif mode == "weight":
            if streams != "process":
                raise ValueError(
                    "mode='weight' weighs processes by their summed weight: use streams='process'"
                )
            share = np.array([self.store.weight_sum(split, i) for i in self.process_indices])
            if not (np.all(share >= 0) and share.sum() > 0):
                raise ValueError("mode='weight' needs non-negative weights with a positive sum")
        else:
            share = np.ones(len(self._segments))
        self.shares = share / share.sum()
        self._rank, self._world_size = rank, world_size
        self.epoch = 0
        self._readers: dict[tuple[int, str], NpyReader] | None = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_readers"] = None
        return state

    def _make_streams(
        self, idx: list[int]
    ) -> tuple[tuple[str, ...], list[list[tuple[int, int, int]]]]:
        """Stream names and segments (process index, first row, rows) in the split arrays."""
        split, store = self.split, self.store
        if self.streams == "process":
            used = [p for p in idx if store.n_events(split, p) > 0]
            return (
                tuple(store.processes[p] for p in used),
                [[(p, 0, store.n_events(split, p))] for p in used],
            )
        offset = dict.fromkeys(idx, 0)
        names, segments = [], []
        for src in store.sources:
            per = src.get("events_by_split", {}).get(split)
            if per is None:
                raise ValueError(
                    f"event store {store.path} does not record events per file; re-run "
                    "`fastmc prepare` to use streams='file'"
                )
            segs = []
            for p in idx:
                n = int(per.get(store.processes[p], 0))
                if n:
                    segs.append((p, offset[p], n))
                    offset[p] += n
            if segs:
                names.append(src["name"])
                segments.append(segs)
        return tuple(names), segments

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
        """(start, stop) int64 [F] of each stream's events read by a shard (F streams)."""
        n = self.n_per_stream
        start, stop = n * shard // n_shards, n * (shard + 1) // n_shards
        small = [name for name, a, b in zip(self.stream_names, start, stop, strict=True) if b <= a]
        if small:
            raise ValueError(
                f"{', '.join(small)} have fewer events in split {self.split!r} than the "
                f"{n_shards} loader shards (ranks x workers) that must read disjoint parts; use "
                "fewer DataLoader workers or leave them out (processes=...)"
            )
        return start, stop

    # ------------------------------------------------------------------ iteration
    def batch_counts(self, shard: int, n_shards: int) -> np.ndarray:
        """Events per stream, int64 [n_batches, F], of this epoch's batches of a shard.

        Row j is the shard's j-th batch; its rank's batch index is ``worker + j * num_workers``.
        """
        if not 0 <= shard < n_shards:
            raise ValueError(f"shard {shard} out of range for {n_shards} shards")
        info = torch.utils.data.get_worker_info()
        nworkers = 1 if info is None else info.num_workers
        batches = np.arange(shard % nworkers, self.batches_per_epoch, nworkers)
        return self._counts(batches, shard)

    def _counts(self, batches: np.ndarray, shard: int) -> np.ndarray:
        f = len(self._segments)
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
        return np.random.default_rng(derive_seed(self.seed, "loader", shard, stream, ep))

    def _open(self) -> dict[tuple[int, str], NpyReader]:
        if self._readers is None:
            self._readers = {
                (p, name): NpyReader(self.store.array_path(self.split, p, name))
                for p in self.process_indices
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
            "process": np.empty(n, np.int64),
        }

    def _read_range(
        self,
        readers: dict[tuple[int, str], NpyReader],
        i: int,
        lo: int,
        hi: int,
        bufs: dict[str, np.ndarray],
        at: int,
    ) -> None:
        """Rows [lo, hi) of stream ``i`` (over its segments) into ``bufs[at:]``."""
        first = 0
        for p, row0, n in self._segments[i]:
            a, b = max(lo, first), min(hi, first + n)
            if a < b:
                r0, r1 = row0 + a - first, row0 + b - first
                for name in _ARRAYS:
                    readers[(p, name)].read(r0, r1, bufs[name][at : at + b - a])
                bufs["process"][at : at + b - a] = p
                at += b - a
            first += n
            if first >= hi:
                break

    def _read_part(
        self, readers: dict[tuple[int, str], NpyReader], i: int, start: int, length: int
    ) -> dict[str, np.ndarray]:
        bufs = self._buffers(length)
        self._read_range(readers, i, start, start + length, bufs, 0)
        return bufs

    def _read_batch(
        self,
        readers: dict[tuple[int, str], NpyReader],
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
            while taken < c:  # circular: may wrap
                p = int(pos[i] + taken) % int(length[i])
                m = min(c - taken, int(length[i]) - p)
                lo = int(start[i]) + p
                self._read_range(readers, i, lo, lo + m, bufs, at)
                taken += m
                at += m
        if self.interleave and len(counts) > 1:
            # rank of each event within its stream, then round-robin over the streams
            within = np.arange(b) - np.repeat(np.cumsum(counts) - counts, counts)
            order = np.argsort(within * len(counts) + np.repeat(np.arange(len(counts)), counts),
                               kind="stable")
            bufs = {name: buf[order] for name, buf in bufs.items()}
        dt = self.dtype
        batch = RawBatch(
            types=torch.from_numpy(bufs["types"]).long(),
            p4=torch.from_numpy(bufs["p4"]).to(dt),
            met=torch.from_numpy(bufs["met"]).to(dt),
            met_phi=torch.from_numpy(bufs["met_phi"]).to(dt),
            weight=torch.from_numpy(bufs["weight"]).to(dt),
            process=torch.from_numpy(bufs["process"]),
        )
        if self.device is not None and torch.utils.data.get_worker_info() is None:
            batch = batch.to(self.device)
        return batch
