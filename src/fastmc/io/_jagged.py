"""Padded <-> jagged object arrays and the metadata block shared by the Parquet and ROOT formats.

Both binary formats store the real objects of each event (padding dropped) as jagged lists
with one counter, and a JSON metadata block::

    {"format": "fastmc-events", "version": 2, "max_objects": K,
     "process_names": [...], "units": {"E": "GeV", ...}, "type_codes": {"1": "j", ...},
     "meta": {...}}

Version 2 (fastmc 0.2) renamed the Parquet object field ``type`` to ``obj_type`` and added
``units`` and ``type_codes``; version-1 files are still read.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.errors import EventFormatError
from fastmc.events import DEFAULT_MAX_OBJECTS, TYPE_LEGEND, UNITS, Events
from fastmc.io._writer import AtomicWriter, json_meta
from fastmc.io.validate import check_events

__all__ = [
    "FORMAT_TAG",
    "JaggedReadState",
    "JaggedWriter",
    "build_meta",
    "empty_events",
    "from_jagged",
    "parse_meta",
    "rechunk",
    "to_jagged",
]

FORMAT_TAG = "fastmc-events"
FORMAT_VERSION = 2


def to_jagged(events: Events) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(counts int32 [N], types int8 [M], p4 float32 [M, 4]) of the real objects, slot order.

    Padding slots (type 0) are dropped wherever they are; Events that keep padding last (the
    contract of :class:`Events`) come back identical from :func:`from_jagged`.
    """
    valid = events.types != 0
    return (
        valid.sum(axis=1).astype(np.int32),
        events.types[valid],
        events.p4[valid],
    )


def build_meta(k: int, process_names: list[str], meta: dict[str, Any], *,
               object_prefix: str = "") -> str:
    """The JSON metadata block (see module docstring); ``object_prefix`` is the prefix of the
    per-object branch names (``"obj_"`` in ROOT) used as keys of ``units``."""
    units = {(object_prefix + f if f in ("E", "pt", "eta", "phi") else f): unit
             for f, unit in UNITS.items()}
    block = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "max_objects": int(k),
        "process_names": list(process_names),
        "units": units,
        "type_codes": dict(TYPE_LEGEND),
        "meta": json.loads(json_meta(meta)),
    }
    return json.dumps(block, sort_keys=True)


def parse_meta(text: str | bytes | None, path: Path) -> dict[str, Any]:
    """Decode and check a metadata block; EventFormatError if it is missing or foreign."""
    if text is None:
        raise EventFormatError(str(path), None, "metadata", "a file written by fastmc")
    try:
        block = json.loads(text)
    except ValueError:
        raise EventFormatError(str(path), None, "metadata", "JSON", str(text)[:60]) from None
    if not isinstance(block, dict) or block.get("format") != FORMAT_TAG:
        raise EventFormatError(str(path), None, "metadata", f"format {FORMAT_TAG!r}", str(block)[:60])
    version = block.get("version", 0)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise EventFormatError(
            str(path), None, "metadata version",
            f"<= {FORMAT_VERSION} (upgrade fastmc to read this file)", str(block.get("version")),
        )
    k = block.get("max_objects")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise EventFormatError(str(path), None, "metadata max_objects", "a positive integer K",
                               repr(k))
    names = block.get("process_names")
    if (
        not isinstance(names, list)
        or not all(isinstance(x, str) and x for x in names)
        or len(set(names)) != len(names)
    ):
        raise EventFormatError(str(path), None, "metadata process_names",
                               "a list of distinct non-empty names", repr(names)[:60])
    if not isinstance(block.get("meta", {}), dict):
        raise EventFormatError(str(path), None, "metadata meta", "a JSON object",
                               repr(block.get("meta"))[:60])
    block.setdefault("meta", {})
    return block


@dataclasses.dataclass
class JaggedReadState:
    """What a reader keeps across chunks of one file."""

    path: Path
    k: int
    on_error: str
    truncate: bool
    report: dict[str, Any]
    warned: bool = False

    def __post_init__(self) -> None:
        for key in ("events", "skipped", "truncated"):
            self.report.setdefault(key, 0)
        self.report.setdefault("skipped_by_reason", {})
        self.report.setdefault("first_errors", [])


def from_jagged(
    state: JaggedReadState,
    *,
    first_entry: int,
    counts: np.ndarray,
    types: np.ndarray,
    p4: np.ndarray,
    event_id: np.ndarray,
    process_code: np.ndarray,
    process_names: tuple[str, ...],
    weight: np.ndarray,
    met: np.ndarray,
    met_phi: np.ndarray,
    meta: dict[str, Any],
) -> Events:
    """Padded Events of width ``state.k`` from jagged arrays (shapes as in :func:`to_jagged`).

    Events with more than K objects raise EventFormatError, are skipped (``on_error="skip"``)
    or cut (``truncate=True``, with one warning per file and ``report["truncated"]``).
    """
    counts = np.asarray(counts, np.int64)
    n, k = counts.size, state.k
    codes = np.asarray(process_code)
    if n and (codes.min() < 0 or codes.max() >= len(process_names)):
        i = int(np.argmax((codes < 0) | (codes >= len(process_names))))
        raise EventFormatError(
            str(state.path), None, f"process of entry {first_entry + i}",
            f"a process code 0..{len(process_names) - 1} (the file's process list)",
            str(int(codes[i])),
        )
    if counts.size and counts.min() < 0:
        raise EventFormatError(str(state.path), None, "object count", "a count >= 0",
                               str(int(counts.min())))
    keep_event = np.ones(n, bool)
    over = counts > k
    if over.any():
        i = int(np.argmax(over))
        if state.truncate:
            state.report["truncated"] += int(over.sum())
            if not state.warned:
                warnings.warn(
                    f"{state.path}: entry {first_entry + i} has {counts[i]} objects, more than "
                    f"max_objects={k}; cutting the last objects (counted in "
                    "report['truncated'], not warned again for this file). Pass a larger "
                    "max_objects to keep them.",
                    stacklevel=3,
                )
                state.warned = True
        else:
            exc = EventFormatError(
                str(state.path), None, f"objects of entry {first_entry + i}",
                f"at most max_objects={k} objects (raise max_objects or truncate)",
                f"{counts[i]} objects",
            )
            if state.on_error == "raise":
                raise exc
            state.report["skipped"] += int(over.sum())
            by = state.report["skipped_by_reason"]
            by["too many objects"] = by.get("too many objects", 0) + int(over.sum())
            if len(state.report["first_errors"]) < 5:
                state.report["first_errors"].append(str(exc))
            keep_event = ~over
    obj_event = np.repeat(np.arange(n), counts)
    col = np.arange(obj_event.size) - np.repeat(np.cumsum(counts) - counts, counts)
    keep = (col < k) & keep_event[obj_event]
    out_types = np.zeros((n, k), np.int8)
    out_p4 = np.zeros((n, k, 4), np.float32)
    out_types[obj_event[keep], col[keep]] = types[keep]
    out_p4[obj_event[keep], col[keep]] = p4[keep]
    events = Events(
        types=out_types,
        p4=out_p4,
        met=met,
        met_phi=met_phi,
        event_id=event_id,
        process_code=process_code,
        process_names=process_names,
        weight=weight,
        meta=dict(meta),
    )
    entries = None
    if not keep_event.all():
        events = events[keep_event]
        entries = np.flatnonzero(keep_event)
    events = check_events(
        events, path=state.path, first_entry=first_entry, on_error=state.on_error,
        report=state.report, entries=entries,
    )
    state.report["events"] += len(events)
    return events


def rechunk(
    parts: Iterator[Events], chunk_size: int, *, empty: Events | None = None
) -> Iterator[Events]:
    """Re-cut a stream of Events into chunks of exactly ``chunk_size`` (the last may be short).

    If the stream holds no events and ``empty`` is given, yield ``empty`` (so that an empty
    file still tells its width, process names and metadata).
    """
    pending: list[Events] = []
    n_pending = 0
    seen = False
    for part in parts:
        if not len(part):
            continue
        seen = True
        pending.append(part)
        n_pending += len(part)
        while n_pending >= chunk_size:
            joined = pending[0] if len(pending) == 1 else Events.concatenate(pending)
            yield joined[:chunk_size]
            rest = joined[chunk_size:]
            pending, n_pending = [rest], len(rest)
    if n_pending:
        yield pending[0] if len(pending) == 1 else Events.concatenate(pending)
    if not seen and empty is not None:
        yield empty


def empty_events(k: int, names: tuple[str, ...], meta: dict[str, Any]) -> Events:
    """No events, width ``k``, with process names and metadata."""
    return Events(
        types=np.zeros((0, k), np.int8), p4=np.zeros((0, k, 4), np.float32),
        met=np.zeros(0, np.float32), met_phi=np.zeros(0, np.float32),
        event_id=np.zeros(0, np.int64), process_code=np.zeros(0, np.int32),
        process_names=names, weight=np.zeros(0), meta=dict(meta),
    )


class JaggedWriter(AtomicWriter):
    """Base of the Parquet and ROOT writers: merges process names and metadata over batches.

    Subclasses implement ``_open_file()``, ``_write_arrays(events, codes, counts, types, p4)``,
    ``_finish()`` and ``_discard()``; ``self._meta_json()`` gives the metadata block.
    """

    object_prefix = ""  # prefix of the per-object column names (keys of the stored units)

    def _open(self) -> None:
        self._names: dict[str, int] = {}
        self._k = 0
        self._batch_meta: dict[str, Any] = {}
        self._open_file()

    def _open_file(self) -> None:
        raise NotImplementedError

    def _write_arrays(self, events: Events, codes: np.ndarray, counts: np.ndarray,
                      types: np.ndarray, p4: np.ndarray) -> None:
        raise NotImplementedError

    def _write(self, events: Events) -> None:
        self._k = max(self._k, events.max_objects)
        for name in events.process_names:
            self._names.setdefault(name, len(self._names))
        lookup = np.array([self._names[n] for n in events.process_names] or [0], np.int32)
        self._batch_meta.update(events.meta)
        json_meta(self._batch_meta)  # fail early on unstorable metadata
        if len(events):
            counts, types, p4 = to_jagged(events)
            self._write_arrays(events, lookup[events.process_code], counts, types, p4)

    def _meta_json(self) -> str:
        k = self._k or DEFAULT_MAX_OBJECTS
        return build_meta(k, list(self._names), {**self._batch_meta, **self.meta},
                          object_prefix=self.object_prefix)
