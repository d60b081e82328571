"""Reading and writing events: Dark Machines CSV (plain or .gz), Parquet and ROOT.

The format is chosen by the file extension: ``.csv``/``.csv.gz`` (Dark Machines, MeV),
``.parquet`` (pyarrow) and ``.root`` (uproot TTree ``events``).  Every reader streams Events in
chunks (memory bounded by ``chunk_size``); every writer is atomic (a temporary file renamed at
the end) and accepts Events batch by batch, so output of any size streams to disk.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Protocol

from fastmc.events import DEFAULT_MAX_OBJECTS, Events
from fastmc.io.paths import check_output

__all__ = [
    "EventWriter",
    "check_output",
    "detect_format",
    "expand_paths",
    "iter_events",
    "open_writer",
    "read_events",
    "write_events",
]

Format = Literal["csv", "parquet", "root"]
OnError = Literal["raise", "skip"]


class EventWriter(Protocol):
    """A streaming, atomic writer: ``write`` Events batches, then ``close`` (or use ``with``)."""

    def write(self, events: Events) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...
    def __enter__(self) -> EventWriter: ...
    def __exit__(self, *exc: object) -> None: ...


def detect_format(path: str | os.PathLike[str]) -> Format:
    """``"csv"``, ``"parquet"`` or ``"root"`` from the extension; ValueError otherwise."""
    name = str(path).lower()
    if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz")):
        return "csv"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith(".root"):
        return "root"
    raise ValueError(
        f"cannot tell the format of {path!s} from its extension; "
        "use .csv, .csv.gz, .parquet or .root"
    )


def expand_paths(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand paths and glob patterns (sorted); FileNotFoundError if something matches nothing,
    ValueError if a file is named twice (it would be read twice)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    out: list[Path] = []
    for p in paths:
        s = str(p)
        if any(c in s for c in "*?["):
            hits = sorted(glob.glob(s))
            if not hits:
                raise FileNotFoundError(f"no file matches {s}")
            out += [Path(h) for h in hits]
        else:
            if not Path(s).exists():
                raise FileNotFoundError(f"no such file: {s}")
            out.append(Path(s))
    seen: dict[Path, Path] = {}
    for p in out:
        key = p.resolve()
        if key in seen:
            raise ValueError(
                f"{p}: given more than once (also as {seen[key]}); its events would be read "
                "twice: name each file once"
            )
        seen[key] = p
    return out


def iter_events(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    *,
    chunk_size: int = 100_000,
    on_error: OnError = "raise",
    max_objects: int | None = None,
    truncate: bool = False,
    report: dict[str, Any] | None = None,
) -> Iterator[Events]:
    """Stream Events from one or many files (paths or globs), ``chunk_size`` events at a time.

    ``on_error="skip"`` skips malformed lines (CSV) and counts them in ``report`` (a dict the
    caller passes in: ``report["skipped"]`` total and ``report["skipped_by_reason"]``).
    ``max_objects`` is the width K of the Events returned; ``None`` (default) means the width
    stored in the file (Parquet, ROOT) or :data:`~fastmc.events.DEFAULT_MAX_OBJECTS` (19, CSV).
    Events with more than ``max_objects`` objects raise, unless ``truncate=True`` (then they
    are cut, counted in ``report["truncated"]``, and a warning is issued).
    """
    from fastmc.io import darkmachines, parquet, root

    readers = {"csv": darkmachines, "parquet": parquet, "root": root}
    for path in expand_paths(paths):
        module = readers[detect_format(path)]
        yield from module.iter_read(
            path,
            chunk_size=chunk_size,
            on_error=on_error,
            max_objects=max_objects,
            truncate=truncate,
            report=report,
        )


def read_events(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], **kwargs: Any
) -> Events:
    """Read all events of one or many files into memory (see :func:`iter_events`)."""
    k = kwargs.get("max_objects") or DEFAULT_MAX_OBJECTS
    parts = list(iter_events(paths, **kwargs))
    return Events.concatenate(parts) if parts else Events.empty(k)


def open_writer(path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> EventWriter:
    """A streaming atomic writer for ``path``, format by extension (see module docstring)."""
    from fastmc.io import darkmachines, parquet, root

    writers = {"csv": darkmachines, "parquet": parquet, "root": root}
    return writers[detect_format(path)].Writer(path, meta=meta)


def write_events(
    path: str | os.PathLike[str],
    events: Events | Iterable[Events],
    *,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write Events (or an iterable of batches) atomically to ``path``."""
    batches = [events] if isinstance(events, Events) else events
    with open_writer(path, meta=meta) as writer:
        for batch in batches:
            writer.write(batch)
