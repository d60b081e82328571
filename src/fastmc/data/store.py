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

:func:`prepare` streams: it parses ``chunk_size`` events at a time into per-process temporary
files, then splits each process chunk by chunk into the final ``.npy`` files, so memory stays
bounded whatever the input size (disk needs about twice the store size while it runs).  The store
is built in a temporary folder beside ``out_dir`` and renamed at the end.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastmc.errors import FastMCError, StaleStoreError
from fastmc.events import DEFAULT_MAX_OBJECTS, Events

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "EventStore",
    "StoreNotFoundError",
    "open_store",
    "prepare",
    "sha256_file",
    "summary_table",
]

#: Bumped whenever the on-disk layout changes; stores of another version must be re-prepared.
SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


def _array_specs(k: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """name -> (dtype, per-event shape) of the arrays stored per process and split."""
    return {
        "types": (np.dtype(np.int8), (k,)),
        "p4": (np.dtype(np.float32), (k, 4)),
        "met": (np.dtype(np.float32), ()),
        "met_phi": (np.dtype(np.float32), ()),
        "event_id": (np.dtype(np.int64), ()),
        "weight": (np.dtype(np.float64), ()),
    }


class StoreNotFoundError(FastMCError, FileNotFoundError):
    """The path is not an event store (no ``meta.json``)."""


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``block``-byte pieces (memory bounded)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()


def _process_seed(seed: int, process: str) -> list[int]:
    digest = hashlib.sha256(process.encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]


# ---------------------------------------------------------------------------------- prepare
def prepare(
    inputs: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    val: float = 0.1,
    test: float = 0.1,
    seed: int = 0,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    chunk_size: int = 100_000,
    on_error: Literal["raise", "skip"] = "raise",
    truncate: bool = False,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Parse event files once into an event store at ``out_dir``; returns its path.

    Parameters
    ----------
    inputs : paths or globs of event files in any format :mod:`fastmc.io` reads
        (Dark Machines CSV in MeV, Parquet, ROOT).
    out_dir : the store directory to create (atomically: built beside it, then renamed).
    val, test : fractions of each process's events held out for validation and test
        (exact: ``round(n*val)`` and ``round(n*test)`` events).
    seed : seed of the split (per process, see the module docstring).
    max_objects : K, object slots per event; events with more objects raise unless
        ``truncate=True``.
    chunk_size : events parsed at a time (bounds memory: ~ 400 bytes x chunk_size).
    on_error : ``"skip"`` skips malformed lines (counted in ``meta["skipped"]``).
    overwrite : replace an existing store at ``out_dir``.
    progress : called with the number of events parsed after each chunk.
    """
    from fastmc.io import expand_paths, iter_events

    for name, frac in (("val", val), ("test", test)):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} fraction must be in [0, 1), got {frac}")
    if val + test >= 1.0:
        raise ValueError(f"val + test = {val + test} leaves no training events; use less")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    paths = [p.resolve() for p in expand_paths(inputs)]
    if not paths:
        raise ValueError("no input files given")
    dups = sorted({str(p) for p in paths if paths.count(p) > 1})
    if dups:
        raise ValueError(f"input files given more than once: {', '.join(dups)}")
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} exists; pass overwrite=True (--overwrite) to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    specs = _array_specs(max_objects)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        raw_dir = tmp / "_raw"
        raw_dir.mkdir()
        report: dict[str, Any] = {}
        sources: list[dict[str, Any]] = []
        totals: dict[str, int] = {}  # process -> events
        raw_names: dict[str, str] = {}  # process -> temp folder name
        for path in paths:
            st = path.stat()
            src = {
                "name": path.name,
                "path": str(path),
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": sha256_file(path),
                "events": 0,
                "events_by_process": {},
            }
            for chunk in iter_events(
                path,
                chunk_size=chunk_size,
                on_error=on_error,
                max_objects=max_objects,
                truncate=truncate,
                report=report,
            ):
                _append_chunk(chunk, raw_dir, raw_names, totals, src, specs)
                if progress is not None:
                    progress(len(chunk))
            sources.append(src)

        processes = sorted(totals)
        counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        weights: dict[str, dict[str, float]] = {s: {} for s in SPLITS}
        for idx, proc in enumerate(processes):
            c, w = _split_process(
                raw_dir / raw_names[proc],
                tmp,
                idx,
                totals[proc],
                specs,
                rng=np.random.default_rng(_process_seed(seed, proc)),
                n_test=round(totals[proc] * test),
                n_val=round(totals[proc] * val),
                chunk_size=chunk_size,
            )
            for split in SPLITS:
                counts[split][proc], weights[split][proc] = c[split], w[split]
            shutil.rmtree(raw_dir / raw_names[proc])
        shutil.rmtree(raw_dir)

        from fastmc import __version__

        meta = {
            "format": "fastmc-event-store",
            "schema_version": SCHEMA_VERSION,
            "fastmc_version": __version__,
            "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "max_objects": max_objects,
            "seed": seed,
            "fractions": {"val": val, "test": test},
            "processes": processes,
            "sources": sources,
            "counts": counts,
            "weight_sum": weights,
            "cross_section_weight": {
                p: float(sum(weights[s][p] for s in SPLITS)) for p in processes
            },
            "arrays": {
                n: {"dtype": dt.str, "event_shape": list(shape)} for n, (dt, shape) in specs.items()
            },
            "skipped": int(report.get("skipped", 0)),
            "truncated": int(report.get("truncated", 0)),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _append_chunk(
    chunk: Events,
    raw_dir: Path,
    raw_names: dict[str, str],
    totals: dict[str, int],
    src: dict[str, Any],
    specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
) -> None:
    """Append a chunk's events to the per-process temporary raw files."""
    codes = chunk.process_code
    present = np.unique(codes) if len(chunk) else np.zeros(0, np.int32)
    for code in present:
        proc = chunk.process_names[int(code)]
        part = chunk if len(present) == 1 else chunk[codes == code]
        if proc not in raw_names:
            raw_names[proc] = f"r{len(raw_names):05d}"
            (raw_dir / raw_names[proc]).mkdir()
        folder = raw_dir / raw_names[proc]
        for name, (dtype, _) in specs.items():
            arr = np.ascontiguousarray(getattr(part, name), dtype=dtype)
            with open(folder / f"{name}.bin", "ab") as f:
                f.write(memoryview(arr).cast("B"))
        n = len(part)
        totals[proc] = totals.get(proc, 0) + n
        src["events"] += n
        src["events_by_process"][proc] = src["events_by_process"].get(proc, 0) + n


def _split_process(
    raw: Path,
    root: Path,
    idx: int,
    n: int,
    specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
    *,
    rng: np.random.Generator,
    n_test: int,
    n_val: int,
    chunk_size: int,
) -> tuple[dict[str, int], dict[str, float]]:
    """Write one process's split arrays from its raw files, chunk by chunk (order kept)."""
    assign = np.zeros(n, np.int8)
    held = rng.choice(n, size=n_test + n_val, replace=False) if n_test + n_val else np.zeros(0, int)
    assign[held[:n_test]] = _SPLIT_CODE["test"]
    assign[held[n_test:]] = _SPLIT_CODE["val"]
    counts = {s: int((assign == _SPLIT_CODE[s]).sum()) for s in SPLITS}
    sources = {
        name: np.memmap(raw / f"{name}.bin", dtype=dt, mode="r", shape=(n, *shape))
        if n
        else np.zeros((0, *shape), dt)
        for name, (dt, shape) in specs.items()
    }
    weight_sum = {s: 0.0 for s in SPLITS}
    for split in SPLITS:
        folder = root / split / f"p{idx:03d}"
        folder.mkdir(parents=True)
        outs = {
            name: np.lib.format.open_memmap(
                folder / f"{name}.npy", mode="w+", dtype=dt, shape=(counts[split], *shape)
            )
            for name, (dt, shape) in specs.items()
        }
        code = _SPLIT_CODE[split]
        pos = 0
        for start in range(0, n, chunk_size):
            sel = assign[start : start + chunk_size] == code
            m = int(sel.sum())
            if not m:
                continue
            for name in specs:
                outs[name][pos : pos + m] = sources[name][start : start + chunk_size][sel]
            weight_sum[split] += float(outs["weight"][pos : pos + m].sum())
            pos += m
        del outs  # unmapped; the data are in the page cache, visible to readers
    del sources
    return counts, weight_sum


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``, replacing an existing folder only after success."""
    if out_dir.exists():
        trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
        os.replace(out_dir, trash / "store")
        try:
            os.replace(tmp, out_dir)
        except BaseException:
            os.replace(trash / "store", out_dir)
            raise
        finally:
            shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)


# ---------------------------------------------------------------------------------- reading
class EventStore:
    """A prepared event store, opened read-only; arrays are memory-mapped on demand.

    Opening checks the schema version and the sources (``verify``): ``"quick"`` (default)
    compares each source file's size (and, when its mtime changed, its SHA-256); ``"hash"``
    always compares the SHA-256; ``"none"`` skips the sources.  A source that no longer exists
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
            self.meta: dict[str, Any] = json.loads(meta_path.read_text())
        except json.JSONDecodeError as exc:
            raise StaleStoreError(
                f"{meta_path} is not valid JSON ({exc}); re-run `fastmc prepare` to rebuild the store"
            ) from None
        version = self.meta.get("schema_version")
        if version != SCHEMA_VERSION:
            raise StaleStoreError(
                f"event store {self.path} has schema version {version}, this fastmc reads version "
                f"{SCHEMA_VERSION}; re-run `fastmc prepare` on the original files to rebuild it"
            )
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
    table.add_column("sum of weights", justify="right")
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

