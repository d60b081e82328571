"""Dark Machines CSV files (plain or ``.gz``): a streaming reader and an exact writer.

Format (``docs/formats.md``): one event per line, no header, LF endings::

    eventID;processID;weight;MET;METphi;type,E,pt,eta,phi;...;type,E,pt,eta,phi;

E, pt and MET in **MeV** in the file, **GeV** in :class:`~fastmc.events.Events` (divided by
1000 in float64, then stored as float32; six significant digits survive the float32 round
trip, so writing back reproduces the file byte for byte).  eta is unitless, phi in radians.

Reading is vectorised (numpy over the bytes + one pyarrow cast for all numbers) with an exact
per-line parser as fallback that names file, line and field of any malformed line
(:mod:`fastmc.io._dmparse`).  Objects outside the nominal cuts are accepted.
"""

from __future__ import annotations

import functools
import gzip
import os
import warnings
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from fastmc.errors import EventFormatError
from fastmc.events import DEFAULT_MAX_OBJECTS, TYPE_NAMES, Events
from fastmc.io._args import check_read_args
from fastmc.io._dmparse import Parsed, drop_too_many, parse_fast, parse_slow
from fastmc.io._jagged import rechunk
from fastmc.io._writer import AtomicWriter

__all__ = ["Writer", "format_events", "iter_read"]

MEV_PER_GEV = 1000.0
_SLOW_BLOCK = 16 * 1024  # bytes below which a failing block goes to the slow parser




def _open_read(path: Path) -> IO[bytes]:
    if str(path).endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _blocks(fh: IO[bytes], size: int) -> Iterator[tuple[bytes, int]]:
    """Yield (block of whole LF-terminated lines, number of lines before it)."""
    carry = b""
    lines = 0
    while True:
        data = fh.read(size)
        if not data:
            if carry:  # last line without LF
                yield carry + b"\n", lines
            return
        buf = carry + data if carry else data
        cut = buf.rfind(b"\n")
        if cut < 0:
            carry = buf
            continue
        block, carry = buf[: cut + 1], buf[cut + 1 :]
        yield block, lines
        lines += block.count(b"\n")


def _to_events(parsed: Parsed, names: dict[str, int], k: int) -> Events:
    """Padded Events (GeV, width k, objects beyond k dropped) from parsed file units."""
    n = len(parsed)
    nobj = parsed.nobj
    obj_line = np.repeat(np.arange(n), nobj)
    obj_start = np.cumsum(nobj) - nobj
    col = np.arange(obj_line.size) - np.repeat(obj_start, nobj)
    keep = col < k
    if not keep.all():
        obj_line, col = obj_line[keep], col[keep]
        obj_type, obj_val = parsed.obj_type[keep], parsed.obj_val[keep]
    else:
        obj_type, obj_val = parsed.obj_type, parsed.obj_val.copy()
    obj_val[:, :2] /= MEV_PER_GEV
    types = np.zeros((n, k), np.int8)
    p4 = np.zeros((n, k, 4), np.float32)
    types[obj_line, col] = obj_type
    p4[obj_line, col] = obj_val
    for name in parsed.proc_names:
        names.setdefault(name, len(names))
    code_map = np.array([names[name] for name in parsed.proc_names] or [0], np.int32)
    return Events(
        types=types,
        p4=p4,
        met=(parsed.header[:, 1] / MEV_PER_GEV).astype(np.float32),
        met_phi=parsed.header[:, 2].astype(np.float32),
        event_id=parsed.event_id,
        process_code=code_map[parsed.proc_code],
        process_names=tuple(names),
        weight=parsed.header[:, 0],
    )


def iter_read(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = 100_000,
    on_error: str = "raise",
    max_objects: int | None = DEFAULT_MAX_OBJECTS,
    truncate: bool = False,
    report: dict[str, Any] | None = None,
    block_bytes: int | None = None,
) -> Iterator[Events]:
    """Stream the events of one Dark Machines file as Events of ``chunk_size`` events (GeV).

    Every chunk but the last holds exactly ``chunk_size`` events of width ``max_objects``;
    memory stays bounded by the chunk size and ``block_bytes`` (bytes read at a time,
    default ~256 bytes per chunk event within [64 KiB, 4 MiB]).

    Malformed lines raise :class:`~fastmc.errors.EventFormatError` (``file:line: field F:
    expected X, got 'Y'``), or with ``on_error="skip"`` are skipped and counted in ``report``:
    ``report["skipped"]`` (int), ``report["skipped_by_reason"]`` ({reason: count}) and
    ``report["first_errors"]`` (the first few messages).  An event with more than
    ``max_objects`` objects is an error, unless ``truncate=True``: then its last objects are
    cut (photons first, then muons, ...), a warning is issued once per file and
    ``report["truncated"]`` counts them.  ``report["events"]`` counts the events read.
    ``max_objects=None`` means the default K = 19.  Empty lines are ignored.  Process IDs
    become ``process_names`` in order of appearance.
    """
    if max_objects is None:
        max_objects = DEFAULT_MAX_OBJECTS
    check_read_args(chunk_size, on_error, max_objects)
    path = Path(path)
    if report is None:
        report = {}
    for key in ("events", "skipped", "truncated"):
        report.setdefault(key, 0)
    report.setdefault("skipped_by_reason", {})
    report.setdefault("first_errors", [])
    if block_bytes is None:
        block_bytes = min(max(chunk_size * 256, 1 << 16), 1 << 22)
    names: dict[str, int] = {}
    warned = False

    def parse(block: bytes, before: int) -> list[Parsed]:
        """Fast path; where it fails, halve the block (so that a rare bad line costs little)
        down to small pieces that the exact slow path parses."""
        parsed = parse_fast(block, before)
        if parsed is not None:
            if not truncate:
                parsed = drop_too_many(parsed, path=str(path), max_objects=max_objects,
                                       on_error=on_error, report=report)
            return [parsed]
        mid = block.rfind(b"\n", 0, len(block) // 2) + 1
        if len(block) <= _SLOW_BLOCK or mid <= 0:
            limit = None if truncate else max_objects
            return [
                parse_slow(block, path=str(path), first_line=before, max_objects=limit,
                           on_error=on_error, report=report)
            ]
        head, tail = block[:mid], block[mid:]
        return parse(head, before) + parse(tail, before + head.count(b"\n"))

    def convert(parsed: Parsed) -> Events:
        nonlocal warned
        over = parsed.nobj > max_objects
        if over.any():
            report["truncated"] += int(over.sum())
            if not warned:
                i = int(np.argmax(over))
                warnings.warn(
                    f"{path}:{parsed.line[i]}: {parsed.nobj[i]} objects, more than "
                    f"max_objects={max_objects}; cutting the last objects (counted in "
                    "report['truncated'], not warned again for this file). Pass a "
                    "larger max_objects to keep them.",
                    stacklevel=5,
                )
                warned = True
        events = _to_events(parsed, names, max_objects)
        report["events"] += len(events)
        return events

    def parts() -> Iterator[Events]:
        with _open_read(path) as fh:
            blocks = _blocks(fh, block_bytes)
            while True:
                try:
                    block, before = next(blocks)
                except StopIteration:
                    return
                except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
                    raise EventFormatError(
                        str(path), None, "gzip stream",
                        "a complete gzip file (it is truncated or damaged; if it is plain "
                        "text, name it .csv)",
                        f"{type(exc).__name__}: {exc}",
                    ) from None
                for parsed in parse(block, before):
                    yield convert(parsed)

    yield from rechunk(parts(), int(chunk_size))


# --------------------------------------------------------------------------- writing
_HEAD_FMT = "%d;%s;%.6g;%.6g;%.6g;"
_OBJ_FMT = "%s,%.6g,%.6g,%.6g,%.6g;"
_TYPE_NAME_ARRAY = np.array(TYPE_NAMES, dtype=object)


@functools.lru_cache(maxsize=256)
def _line_format(n_objects: int) -> str:
    return _HEAD_FMT + _OBJ_FMT * n_objects + "\n"


def format_events(events: Events) -> str:
    """The Dark Machines CSV lines of ``events`` (MeV, ``%g``, trailing ``;``, LF), as text.

    Objects are written in Dark Machines order (:meth:`Events.sorted`), padding skipped.
    Raises ValueError for non-finite values, unknown type codes or process names containing
    a delimiter (``;`` ``,`` or a line break).
    """
    n = len(events)
    if n == 0:
        return ""
    if events.types.min(initial=0) < 0 or events.types.max(initial=0) >= len(TYPE_NAMES):
        raise ValueError(f"object type codes must be 0..{len(TYPE_NAMES) - 1}")
    for name in events.process_names:
        if not name or any(c in name for c in ";,") or any(
            ord(c) < 32 or ord(c) == 127 for c in name
        ):
            raise ValueError(
                f"process name {name!r} cannot be written to a Dark Machines file: it must be "
                "non-empty and contain no ';', ',', line break or other control character"
            )
    ev = events.sorted()
    valid = ev.types != 0
    n_obj = valid.sum(axis=1)
    vals = ev.p4[valid].astype(np.float64)  # [M, 4], objects in event order
    vals[:, :2] *= MEV_PER_GEV
    met = ev.met.astype(np.float64) * MEV_PER_GEV
    met_phi = ev.met_phi.astype(np.float64)
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any() or not (np.isfinite(met).all() and np.isfinite(met_phi).all()):
        raise ValueError("cannot write non-finite E, pt, eta, phi, MET or METphi values")
    if not np.isfinite(ev.weight).all():
        raise ValueError("cannot write non-finite event weights")
    head = 5 * (np.arange(n) + np.cumsum(n_obj) - n_obj)
    flat = np.empty(5 * (n + vals.shape[0]), dtype=object)
    flat[head] = ev.event_id.tolist()
    flat[head + 1] = np.asarray(ev.process_names, dtype=object)[ev.process_code]
    flat[head + 2] = ev.weight.tolist()
    flat[head + 3] = met.tolist()
    flat[head + 4] = met_phi.tolist()
    col = np.nonzero(valid)[1]
    obj = np.repeat(head + 5, n_obj) + 5 * col
    flat[obj] = _TYPE_NAME_ARRAY[ev.types[valid]]
    for i in range(4):
        flat[obj + 1 + i] = vals[:, i].tolist()
    fmt = "".join([_line_format(c) for c in n_obj.tolist()])
    return fmt % tuple(flat.tolist())


class Writer(AtomicWriter):
    """Streaming, atomic Dark Machines CSV writer (``.gz`` name: gzip-compressed).

    ``write(events)`` appends lines (see :func:`format_events`); ``close()`` renames the
    temporary file to ``path``.  ``meta`` is accepted for interface compatibility but a CSV
    file has no place for it (use Parquet or ROOT to keep metadata).  ``compresslevel``
    (1 fastest .. 9 smallest, default 6 like the gzip tool) applies to ``.gz`` output.
    """

    _batch = 20_000  # events formatted at a time (bounds the size of the text in memory)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        meta: dict[str, Any] | None = None,
        compresslevel: int = 6,
    ) -> None:
        if not 0 <= int(compresslevel) <= 9:
            raise ValueError(f"compresslevel must be 0..9, got {compresslevel}")
        self._level = int(compresslevel)
        super().__init__(path, meta=meta)

    def _open(self) -> None:
        self._raw = open(self.tmp_path, "wb")
        self._fh: IO[bytes] = self._raw
        if str(self.path).endswith(".gz"):
            self._fh = gzip.GzipFile(
                filename=self.path.name, mode="wb", fileobj=self._raw, mtime=0, compresslevel=self._level
            )

    def _write(self, events: Events) -> None:
        for start in range(0, len(events), self._batch):
            self._fh.write(format_events(events[start : start + self._batch]).encode())

    def _finish(self) -> None:
        if self._fh is not self._raw:
            self._fh.close()
        self._raw.close()

    def _discard(self) -> None:
        try:
            if self._fh is not self._raw:
                self._fh.close()
        finally:
            self._raw.close()
