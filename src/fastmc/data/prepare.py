"""``prepare``: parse event files once into an event store (layout: :mod:`fastmc.data.store`).

:func:`prepare` streams: it parses ``chunk_size`` events at a time into per-process temporary
files, then splits each process chunk by chunk into the final ``.npy`` files, so memory stays
bounded whatever the input size (disk needs about twice the store size while it runs).  The
store is built in a temporary folder beside ``out_dir`` and renamed at the end.

With ``workers > 1`` the files are parsed in parallel (a process pool over the input files;
each worker writes its own per-process temporary files, joined in input order afterwards), so
the store is the same as with one worker, byte for byte.  The default uses every core for
inputs of 64 MB or more (docs/benchmarks.md has the throughput and memory).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from fastmc.data._layout import (
    _SPLIT_CODE,
    SCHEMA_VERSION,
    SPLITS,
    _array_specs,
    _process_seed,
    file_record,
    sha256_file,
    shard_names,
)
from fastmc.events import DEFAULT_MAX_OBJECTS, Events

__all__ = ["prepare"]


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
    workers: int | None = None,
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
    overwrite : replace an existing store (or empty folder) at ``out_dir``: only the files
        fastmc wrote there (listed in its ``meta.json``) are removed, other files are kept.
        An output folder that holds an input, or a folder that is not a store, is refused.
    progress : called with the number of events parsed after each chunk (after each file
        with ``workers > 1``).
    workers : processes parsing files in parallel (None: every core, for 64 MB of input or
        more; 1: in this process).  Memory: about one chunk per worker.
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
    _check_output(paths, out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    workers = _workers(workers, paths)

    specs = _array_specs(max_objects)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it owner-only; a store is an ordinary folder
    try:
        raw_dir = tmp / "_raw"
        raw_dir.mkdir()
        report: dict[str, Any] = {}
        sources: list[dict[str, Any]] = []
        totals: dict[str, int] = {}  # process -> events
        raw_names: dict[str, str] = {}  # process -> temp folder name
        options = {"chunk_size": chunk_size, "on_error": on_error, "max_objects": max_objects,
                   "truncate": truncate}
        if workers > 1:
            _parse_parallel(paths, raw_dir, raw_names, totals, sources, report, specs, options,
                            workers, progress)
        for path in paths if workers == 1 else ():
            src = _source_entry(path)
            for chunk in iter_events(path, report=report, **options):
                _append_source_chunk(chunk, raw_dir, raw_names, totals, src, specs)
                if progress is not None:
                    progress(len(chunk))
            sources.append(src)

        if not sum(totals.values()):
            from fastmc.errors import EventFormatError

            raise EventFormatError(
                ", ".join(str(p) for p in paths), None, "events",
                "at least one event to store (the input is empty"
                + (f", {report['skipped']} malformed lines were skipped" if report.get("skipped")
                   else "") + "); check the input files",
                "0 events",
            )
        process_params = _name_points(totals, raw_names, sources)
        processes = sorted(totals)
        counts: dict[str, dict[str, int]] = {s: {} for s in SPLITS}
        weights: dict[str, dict[str, float]] = {s: {} for s in SPLITS}
        for idx, proc in enumerate(processes):
            c, w, assign = _split_process(
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
            # events of this process per source file and split (sources in input order)
            at = 0
            for src in sources:
                n_src = src["events_by_process"].get(proc, 0)
                if n_src:
                    codes = np.bincount(assign[at : at + n_src], minlength=len(SPLITS))
                    for split in SPLITS:
                        src["events_by_split"][split][proc] = int(codes[_SPLIT_CODE[split]])
                    at += n_src
            del assign
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
            "process_params": process_params,
            "sources": sources,
            "counts": counts,
            "weight_sum": weights,
            "cross_section_weight": {
                p: float(sum(weights[s][p] for s in SPLITS)) for p in processes
            },
            "arrays": {
                n: {"dtype": dt.str, "event_shape": list(shape)} for n, (dt, shape) in specs.items()
            },
            "files": {name: file_record(tmp / name) for name in shard_names(
                {"max_objects": max_objects, "processes": processes})},
            "skipped": int(report.get("skipped", 0)),
            "truncated": int(report.get("truncated", 0)),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
        _replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _workers(workers: int | None, paths: list[Path]) -> int:
    """Worker processes to use: ``workers``, or every core for 64 MB of input or more."""
    if workers is None:
        big = sum(p.stat().st_size for p in paths) >= 64 * 2**20
        workers = min(len(paths), len(os.sched_getaffinity(0))) if big else 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    return min(workers, len(paths))


def _source_entry(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {
        "name": path.name,
        "path": str(path),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "sha256": sha256_file(path),
        "events": 0,
        "events_by_process": {},
        "events_by_split": {split: {} for split in SPLITS},
        "params": {},
    }


def _parse_file(
    path: Path, raw_dir: Path, specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
    """A worker: one file into its own per-process raw files in ``raw_dir``."""
    from fastmc.io import iter_events

    raw_dir.mkdir()
    src, raw_names, totals, report = _source_entry(path), {}, {}, {}
    for chunk in iter_events(path, report=report, **options):
        _append_source_chunk(chunk, raw_dir, raw_names, totals, src, specs)
    return src, raw_names, report


def _parse_parallel(
    paths: list[Path], raw_dir: Path, raw_names: dict[str, str], totals: dict[str, int],
    sources: list[dict[str, Any]], report: dict[str, Any],
    specs: dict[str, tuple[np.dtype, tuple[int, ...]]], options: dict[str, Any], workers: int,
    progress: Callable[[int], None] | None,
) -> None:
    """Parse ``paths`` in a process pool; join each process's raw files in input order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = [pool.submit(_parse_file, p, raw_dir / f"f{i:05d}", specs, options)
                   for i, p in enumerate(paths)]
        for i, fut in enumerate(futures):  # in input order: the store does not depend on timing
            src, names, rep = fut.result()
            for proc, name in names.items():
                n = src["events_by_process"][proc]
                if proc not in raw_names:
                    raw_names[proc] = f"r{len(raw_names):05d}"
                    os.replace(raw_dir / f"f{i:05d}" / name, raw_dir / raw_names[proc])
                else:
                    _append_files(raw_dir / f"f{i:05d}" / name, raw_dir / raw_names[proc])
                totals[proc] = totals.get(proc, 0) + n
            shutil.rmtree(raw_dir / f"f{i:05d}")
            sources.append(src)
            for key, value in rep.items():  # counts add up, reasons by kind, first errors
                if isinstance(value, int):
                    report[key] = report.get(key, 0) + value
                elif isinstance(value, dict):
                    into = report.setdefault(key, {})
                    for k, v in value.items():
                        into[k] = into.get(k, 0) + v
                elif isinstance(value, list):
                    report[key] = (report.get(key, []) + value)[:5]
            if progress is not None:
                progress(src["events"])


def _append_files(src_dir: Path, dst_dir: Path) -> None:
    """Append each raw file of ``src_dir`` to the file of the same name in ``dst_dir``."""
    for f in sorted(src_dir.iterdir()):
        with open(f, "rb") as fin, open(dst_dir / f.name, "ab") as fout:
            shutil.copyfileobj(fin, fout, 16 * 2**20)


def _append_chunk(
    chunk: Events,
    raw_dir: Path,
    raw_names: dict[str, str],
    totals: dict[str, int],
    src: dict[str, Any],
    specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
    key: str = "",
) -> None:
    """Append a chunk's events to the per-process temporary raw files.

    Processes are keyed by ``name + key`` (``key``: the source's parameter point, see
    :func:`_point_key`), renamed by :func:`_name_points` once every source is read.
    """
    codes = chunk.process_code
    present = np.unique(codes) if len(chunk) else np.zeros(0, np.int32)
    for code in present:
        proc = chunk.process_names[int(code)] + key
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


def _append_source_chunk(
    chunk: Events, raw_dir: Path, raw_names: dict[str, str], totals: dict[str, int],
    src: dict[str, Any], specs: dict[str, tuple[np.dtype, tuple[int, ...]]],
) -> None:
    """:func:`_append_chunk` keyed by the source's parameter point (read from its first chunk)."""
    if src["events"] == 0 and not src["params"]:
        src["params"] = _file_params(chunk)
    _append_chunk(chunk, raw_dir, raw_names, totals, src, specs, _point_key(src["params"]))


def _file_params(chunk: Events) -> dict[str, float]:
    """The numeric simulation parameters a file records (``meta["params"]`` of ``fastmc
    simulate`` output, GeV), or {} (Dark Machines CSV files record none)."""
    params = (chunk.meta or {}).get("params")
    if not isinstance(params, dict):
        return {}
    return {str(k): float(v) for k, v in params.items()
            if isinstance(v, int | float) and not isinstance(v, bool)}


_KEY_SEP = "\x00"


def _point_key(params: dict[str, float]) -> str:
    return _KEY_SEP + json.dumps(params, sort_keys=True) if params else ""


def _name_points(
    totals: dict[str, int], raw_names: dict[str, str], sources: list[dict[str, Any]]
) -> dict[str, dict[str, float]]:
    """Rename the raw process keys (name + parameter point) in place to store process names.

    A process whose sources carry one parameter point (or none) keeps its name; one simulated
    at several points gets a name per point naming the parameters that differ between them
    (:func:`fastmc.points.point_name`, e.g. ``gluino_01@m_gluino=1000``).  Returns the full
    parameters of every process that has any.
    """
    from fastmc.points import point_name

    points: dict[str, list[tuple[str, dict[str, float]]]] = {}
    for key in totals:
        name, _, js = key.partition(_KEY_SEP)
        points.setdefault(name, []).append((key, json.loads(js) if js else {}))
    rename: dict[str, str] = {}
    process_params: dict[str, dict[str, float]] = {}
    for name, pts in points.items():
        keys = sorted({k for _, p in pts for k in p})
        varying = [k for k in keys if len({p.get(k) for _, p in pts}) > 1]
        for key, params in pts:
            new = point_name(name, {k: params[k] for k in varying if k in params})
            if new in rename.values():
                raise ValueError(
                    f"the parameter points of {name} cannot be told apart by their names "
                    f"({new}); simulate them with parameters that differ in the 6th digit"
                )
            rename[key] = new
            if params:
                process_params[new] = params
    for table in (totals, raw_names, *(src["events_by_process"] for src in sources)):
        old = dict(table)
        table.clear()
        table.update({rename[k]: v for k, v in old.items()})
    return process_params


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
) -> tuple[dict[str, int], dict[str, float], np.ndarray]:
    """Write one process's split arrays from its raw files, chunk by chunk (order kept).

    Returns the events per split, the summed weights per split and the split code of every
    event (int8 [n]: 0 train, 1 val, 2 test).
    """
    assign = np.zeros(n, np.int8)
    held = rng.choice(n, size=n_test + n_val, replace=False) if n_test + n_val else np.zeros(0, int)
    assign[held[:n_test]] = _SPLIT_CODE["test"]
    assign[held[n_test:]] = _SPLIT_CODE["val"]
    counts = {s: int((assign == _SPLIT_CODE[s]).sum()) for s in SPLITS}
    weight_sum = {s: 0.0 for s in SPLITS}
    # plain sequential reads and writes (no memory maps): resident memory stays ~ one chunk
    with contextlib.ExitStack() as stack:
        sources = {name: stack.enter_context(open(raw / f"{name}.bin", "rb")) for name in specs}
        outs: dict[tuple[str, str], Any] = {}
        for split in SPLITS:
            folder = root / split / f"p{idx:03d}"
            folder.mkdir(parents=True)
            for name, (dt, shape) in specs.items():
                f = stack.enter_context(open(folder / f"{name}.npy", "wb"))
                header = {
                    "descr": np.lib.format.dtype_to_descr(dt),
                    "fortran_order": False,
                    "shape": (counts[split], *shape),
                }
                np.lib.format.write_array_header_1_0(f, header)
                outs[(split, name)] = f
        for start in range(0, n, chunk_size):
            codes = assign[start : start + chunk_size]
            m = len(codes)
            chunk = {
                name: np.fromfile(sources[name], dtype=dt, count=m * int(np.prod(shape))).reshape(
                    m, *shape
                )
                for name, (dt, shape) in specs.items()
            }
            for split in SPLITS:
                sel = codes == _SPLIT_CODE[split]
                if not sel.any():
                    continue
                for name in specs:
                    part = np.ascontiguousarray(chunk[name][sel])
                    outs[(split, name)].write(memoryview(part).cast("B"))
                weight_sum[split] += float(chunk["weight"][sel].sum())
    return counts, weight_sum, assign


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _written_by_fastmc(out_dir: Path) -> set[str] | None:
    """Relative paths of the files fastmc wrote into the store ``out_dir`` (``meta.json`` and
    the shards it lists), or ``None`` if ``out_dir`` holds no readable store metadata."""
    try:
        meta = json.loads((out_dir / "meta.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    files = meta.get("files")
    if isinstance(files, dict):
        names = {str(n) for n in files}
    else:  # schema version 1: no file list, the layout is fixed
        try:
            names = set(shard_names(meta))
        except (KeyError, TypeError, ValueError):
            return None
    return names | {"meta.json"}


def _check_output(paths: list[Path], out_dir: Path, overwrite: bool) -> None:
    """Refuse an output that is an input, holds an input, or exists without ``overwrite``
    (:func:`fastmc.io.check_output`), or an existing folder that is not an event store."""
    from fastmc.errors import OutputError
    from fastmc.io import check_output

    check_output(out_dir, inputs=paths, overwrite=overwrite, kind="folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and _written_by_fastmc(out_dir) is None:
        raise OutputError(
            f"{out_dir}: exists and is not an event store (no readable meta.json); refusing "
            "to replace it, choose another output path"
        )


def _replace_dir(tmp: Path, out_dir: Path) -> None:
    """Rename ``tmp`` to ``out_dir``, replacing an existing store only after success.

    Of an existing store only what fastmc wrote (``meta.json`` and the shards it lists) is
    removed: any other file or folder in it (a user's notes, a model directory) is moved, not
    copied, into the new store at the same place.  If anything fails, the old store is put
    back as it was.
    """
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    ours = _written_by_fastmc(out_dir) or set()
    foreign = [
        p.relative_to(out_dir)
        for p in sorted(out_dir.rglob("*"))
        if not p.is_dir() or p.is_symlink()
        if str(p.relative_to(out_dir)) not in ours
    ]
    for rel in foreign:
        if (tmp / rel).exists():
            from fastmc.errors import OutputError

            raise OutputError(
                f"{out_dir / rel} is not listed as written by fastmc but the new store needs its "
                "name; move it away and run again"
            )
    trash = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent))
    os.replace(out_dir, trash / "store")
    moved: list[Path] = []
    try:
        for rel in foreign:
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(trash / "store" / rel, tmp / rel)
            moved.append(rel)
        os.replace(tmp, out_dir)
    except BaseException:
        for rel in moved:
            os.replace(tmp / rel, trash / "store" / rel)
        os.replace(trash / "store", out_dir)
        raise
    finally:
        shutil.rmtree(trash, ignore_errors=True)
