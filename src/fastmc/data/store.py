"""The event store: event files parsed once into memory-mappable arrays (``fastmc prepare``).

Layout of a store directory::

    STORE/
      meta.json                      schema version, sources (size, mtime, sha256), counts, K, ...
      train/p000/types.npy           int8    [n, K]     object type codes (0 = padding)
      train/p000/p4.npy              float32 [n, K, 4]  (E, pT, eta, phi), GeV
      train/p000/met.npy             float32 [n]        MET, GeV
      train/p000/met_phi.npy         float32 [n]        radians
      train/p000/event_id.npy        int64   [n]
      train/p000/weight.npy          float64 [n]        Dark Machines weight (sigma x 10/fb / N)
      train/p001/...                 one folder per process (index into meta["processes"])
      val/..., test/...

Processes are the process IDs found in the events (sorted by name), not the files: a Dark Machines
signal file holds one process, the background sample several.  Within a process the events keep
their input order (files in the order given, then line order).  The split is drawn per process
with exact sizes ``round(n*test)``, ``round(n*val)``, the rest train, from a generator seeded by
(``seed``, process name): the same inputs and seed give the same store, and adding a file of
another process does not change the split of the others.

``meta.json`` fields: ``format``, ``schema_version``, ``fastmc_version``, ``created``,
``max_objects`` (K), ``seed``, ``fractions`` (val, test), ``processes`` (names; index = process
code), ``sources`` (per input file: name, path, size, mtime_ns, sha256, events,
events_by_process, events_by_split), ``counts`` and ``weight_sum`` (per split and process),
``cross_section_weight`` (summed weight per process over all splits: sigma x luminosity for
Dark Machines files), ``process_params`` (simulation parameters per process, from the files'
metadata; each source also records its ``params``: a process simulated at several parameter
points becomes one process per point, named ``process@key=value``, see
:mod:`fastmc.points`), ``arrays`` (dtype and per-event shape), ``files`` (every shard's
relative path -> size in bytes and CRC-32, checked on open; also the list of what fastmc
wrote, the only files ``prepare --overwrite`` removes), ``skipped`` and ``truncated``.

:func:`prepare` (implemented in :mod:`fastmc.data.prepare`, re-exported here) builds a store;
:class:`EventStore` / :func:`open_store` read one; :func:`summary_table` describes one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastmc.data._layout import SCHEMA_VERSION, SPLITS, _array_specs, sha256_file
from fastmc.data._storecheck import check_meta, check_shards
from fastmc.data.prepare import prepare
from fastmc.errors import CorruptStoreError, FastMCError, StaleStoreError
from fastmc.events import Events

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "EventStore",
    "StoreNotFoundError",
    "open_store",
    "prepare",
    "sha256_file",
    "summary_table",
    "verify_store",
]


class StoreNotFoundError(FastMCError, FileNotFoundError):
    """The path is not an event store (no ``meta.json``)."""


class EventStore:
    """A prepared event store, opened read-only; arrays are memory-mapped on demand.

    Opening checks the schema version, the structure of ``meta.json`` and every shard's size
    and ``.npy`` header (always), every shard's CRC-32 recorded in ``meta.json`` (unless
    ``verify="none"``; raises :class:`~fastmc.errors.CorruptStoreError`), and the sources
    (``verify``): ``"quick"`` (default) compares each source file's size (and, when its mtime
    changed, its SHA-256); ``"hash"`` always compares the SHA-256; ``"none"`` skips them.  A source that no longer exists
    is not an error (the store is self-contained); it is listed in :attr:`missing_sources`.
    Raises :class:`~fastmc.errors.StaleStoreError` if the store must be re-prepared.

    Pickling (e.g. into DataLoader workers) carries only the path and metadata, never the data.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, verify: Literal["quick", "hash", "none"] = "quick"
    ) -> None:
        if verify not in ("quick", "hash", "none"):
            raise ValueError(f"verify must be 'quick', 'hash' or 'none', got {verify!r}")
        self.path = Path(path)
        meta_path = self.path / "meta.json"
        if not meta_path.is_file():
            raise StoreNotFoundError(
                f"{self.path} is not an event store (no meta.json); create one with "
                f"`fastmc prepare INPUT... -o {self.path}`"
            )
        try:
            meta: Any = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(
                f"{meta_path} is not valid JSON ({exc}); re-run `fastmc prepare` to rebuild the store"
            ) from None
        if not isinstance(meta, dict):
            check_meta(meta, meta_path)
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StaleStoreError(
                f"event store {self.path} has schema version {version}, this fastmc reads version "
                f"{SCHEMA_VERSION}; re-run `fastmc prepare` on the original files to rebuild it"
            )
        check_meta(meta, meta_path)
        self.meta: dict[str, Any] = meta
        check_shards(self.path, meta, checksums=verify != "none")
        self.missing_sources: list[str] = []
        if verify != "none":
            self.check_sources(hash=verify == "hash")
        self._cache: dict[tuple[str, int, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    def __repr__(self) -> str:
        n = {s: self.n_events(s) for s in SPLITS}
        return f"EventStore({str(self.path)!r}, processes={len(self.processes)}, events={n})"

    # ------------------------------------------------------------------ metadata
    @property
    def processes(self) -> tuple[str, ...]:
        """Process IDs in the store; a process's index here is its ``process`` code."""
        return tuple(self.meta["processes"])

    @property
    def max_objects(self) -> int:
        """K, the object slots per event."""
        return int(self.meta["max_objects"])

    @property
    def sources(self) -> list[dict[str, Any]]:
        """The input files: name, path, size, mtime_ns, sha256, events, events_by_process."""
        return list(self.meta["sources"])

    def process_index(self, process: str | int) -> int:
        """Index of a process given by name or index (ValueError if unknown)."""
        procs = self.processes
        if isinstance(process, int | np.integer):
            if not 0 <= int(process) < len(procs):
                raise ValueError(f"process index {process} out of range 0..{len(procs) - 1}")
            return int(process)
        if process not in procs:
            raise ValueError(f"unknown process {process!r}; the store holds {', '.join(procs)}")
        return procs.index(process)

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")

    def n_events(self, split: str, process: str | int | None = None) -> int:
        """Number of events in ``split`` (of one process, or of all)."""
        self._check_split(split)
        counts = self.meta["counts"][split]
        if process is None:
            return int(sum(counts.values()))
        return int(counts[self.processes[self.process_index(process)]])

    def weight_sum(self, split: str, process: str | int | None = None) -> float:
        """Sum of event weights in ``split`` (Dark Machines: sigma x 10/fb x fraction)."""
        self._check_split(split)
        sums = self.meta["weight_sum"][split]
        if process is None:
            return float(sum(sums.values()))
        return float(sums[self.processes[self.process_index(process)]])

    def check_sources(self, *, hash: bool = False) -> None:
        """Raise StaleStoreError if a source file changed since ``prepare`` (see class doc)."""
        self.missing_sources = []
        for src in self.meta["sources"]:
            path = Path(src["path"])
            try:
                st = path.stat()
            except FileNotFoundError:
                self.missing_sources.append(str(path))
                continue
            changed = st.st_size != src["size"]
            if not changed and (hash or st.st_mtime_ns != src["mtime_ns"]):
                changed = sha256_file(path) != src["sha256"]
            if changed:
                raise StaleStoreError(
                    f"source file {path} changed since the event store {self.path} was prepared; "
                    "re-run `fastmc prepare` to rebuild the store (or open it with verify='none')"
                )

    # ------------------------------------------------------------------ data
    def array_path(self, split: str, process: str | int, name: str) -> Path:
        """Path of one stored ``.npy`` array (StaleStoreError if it is missing)."""
        self._check_split(split)
        idx = self.process_index(process)
        path = self.path / split / f"p{idx:03d}" / f"{name}.npy"
        if not path.is_file():
            raise StaleStoreError(
                f"event store {self.path} lacks {path.relative_to(self.path)}; it is "
                "incomplete: re-run `fastmc prepare`"
            )
        return path

    def array(self, split: str, process: str | int, name: str) -> np.ndarray:
        """One stored array, memory-mapped read-only (see the module docstring for names)."""
        idx = self.process_index(process)
        key = (split, idx, name)
        arr = self._cache.get(key)
        if arr is None:
            arr = np.load(self.array_path(split, idx, name), mmap_mode="r")
            self._cache[key] = arr
        return arr

    def events(self, split: str, process: str | int | None = None) -> Events:
        """Events of ``split`` (memory-mapped for one process; ``None`` joins all in memory).

        ``process_code`` indexes :attr:`processes` (all of the store's processes).
        """
        if process is None:
            parts = [self.events(split, i) for i in range(len(self.processes))]
            return Events.concatenate(parts) if parts else Events.empty(self.max_objects)
        idx = self.process_index(process)
        arrs = {n: self.array(split, idx, n) for n in _array_specs(self.max_objects)}
        return Events(
            **arrs,
            process_code=np.full(len(arrs["met"]), idx, np.int32),
            process_names=self.processes,
            meta={"store": str(self.path), "split": split},
        )


def open_store(
    path: str | os.PathLike[str], *, verify: Literal["quick", "hash", "none"] = "quick"
) -> EventStore:
    """Open an event store (see :class:`EventStore`)."""
    return EventStore(path, verify=verify)


def verify_store(path: str | os.PathLike[str], *, chunk_size: int = 100_000) -> dict[str, Any]:
    """The full check of a store (``fastmc verify``): everything :class:`EventStore` checks on
    open with ``verify="hash"`` (meta.json, shard sizes, headers, CRC-32s, source SHA-256s),
    then every stored event's values (known type codes; finite E, pT, eta, phi, MET, METphi,
    weight).  Raises :class:`~fastmc.errors.StaleStoreError` /
    :class:`~fastmc.errors.CorruptStoreError` or
    :class:`~fastmc.errors.EventFormatError` naming the shard, entry and field; returns
    ``{"events": N, "shards": S, "bytes": B, "missing_sources": [...]}``.
    """
    from fastmc.io.validate import check_events

    store = EventStore(path, verify="hash")
    n = 0
    for split in SPLITS:
        for idx in range(len(store.processes)):
            events = store.events(split, idx)
            for start in range(0, len(events), chunk_size):
                part = events[start : start + chunk_size]
                where = store.path / split / f"p{idx:03d}"
                check_events(part, path=where, first_entry=start)
            n += len(events)
    files = store.meta["files"]
    return {
        "events": n,
        "shards": len(files),
        "bytes": int(sum(f["size"] for f in files.values())),
        "missing_sources": list(store.missing_sources),
    }


def summary_table(path: str | os.PathLike[str] | EventStore):
    """A rich Table of a store: events per process and split, and the summed weights."""
    from rich.table import Table

    store = path if isinstance(path, EventStore) else EventStore(path, verify="none")
    meta = store.meta
    table = Table(title=f"event store {store.path}")
    table.add_column("process")
    for split in SPLITS:
        table.add_column(split, justify="right")
    table.add_column("total", justify="right")
    table.add_column("sum of weights (events in 10 fb^-1)", justify="right")
    for proc in store.processes:
        n = [store.n_events(s, proc) for s in SPLITS]
        table.add_row(
            proc, *(f"{x:,}" for x in n), f"{sum(n):,}", f"{meta['cross_section_weight'][proc]:.4g}"
        )
    n = [store.n_events(s) for s in SPLITS]
    wsum = sum(meta["cross_section_weight"].values())
    table.add_row("[bold]all", *(f"{x:,}" for x in n), f"{sum(n):,}", f"{wsum:.4g}", end_section=True)
    names = ", ".join(s["name"] for s in meta["sources"][:3])
    if len(meta["sources"]) > 3:
        names += f", ... ({len(meta['sources'])} files)"
    table.caption = (
        f"schema v{meta['schema_version']}, K = {meta['max_objects']}, seed {meta['seed']}, "
        f"val {meta['fractions']['val']}, test {meta['fractions']['test']}; sources: {names}"
    )
    if meta.get("skipped"):
        table.caption += f"; {meta['skipped']} malformed lines skipped"
    return table

