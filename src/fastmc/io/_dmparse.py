"""Parsers of Dark Machines CSV lines: a vectorised fast path and an exact per-line slow path.

A *block* is a ``bytes`` object holding whole lines, each ending in ``b"\\n"``.  Both parsers
turn a block into a :class:`Parsed` (numbers still in the file's units: MeV, radians).

* :func:`parse_fast` finds every delimiter (``,`` ``;`` ``\\n``) with numpy, checks the
  delimiter pattern of every line at once, and converts all numeric tokens in one call to
  ``pyarrow.compute.cast`` over a zero-copy string array.  It returns ``None`` as soon as
  anything in the block is unusual (the caller then uses the slow path).
* :func:`parse_slow` parses line by line in plain Python and defines what is valid; it raises
  :class:`~fastmc.errors.EventFormatError` naming file, line and field, or skips bad lines.

Line grammar: ``eventID;processID;weight;MET;METphi;(type,E,pt,eta,phi;)*`` then LF.  An empty
line is ignored; a ``\\r`` before the LF is tolerated by the slow path.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from fastmc.errors import EventFormatError
from fastmc.events import TYPE_CODES

__all__ = ["Parsed", "drop_too_many", "parse_fast", "parse_slow"]

_NUMBER = re.compile(rb"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INTEGER = re.compile(rb"-?\d+")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
_HEADER = ("event_id", "process_id", "weight", "MET", "METphi")
_OBJ_FIELDS = ("type", "E", "pt", "eta", "phi")
_INT64_MAX = 2**63 - 1
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TYPE_NAMES_SHOWN = ", ".join(TYPE_CODES)

# (first byte) | (second byte << 8) -> type code; 0 = unknown
_TYPE_LUT = np.zeros(1 << 16, np.int8)
for _name, _code in TYPE_CODES.items():
    _b = _name.encode()
    _TYPE_LUT[_b[0] | ((_b[1] << 8) if len(_b) > 1 else 0)] = _code


@dataclasses.dataclass
class Parsed:
    """Parsed lines of one block, in file units.

    event_id int64 [n]; proc_code int32 [n] into ``proc_names``; header float64 [n, 3] =
    (weight, MET in MeV, METphi); nobj int64 [n] objects per event; obj_type int8 [M];
    obj_val float64 [M, 4] = (E MeV, pt MeV, eta, phi), with M = nobj.sum(); line int64 [n]
    the 1-based line number of each event in the file.
    """

    event_id: np.ndarray
    proc_code: np.ndarray
    proc_names: list[str]
    header: np.ndarray
    nobj: np.ndarray
    obj_type: np.ndarray
    obj_val: np.ndarray
    line: np.ndarray

    def __len__(self) -> int:
        return len(self.event_id)

    def select(self, keep: np.ndarray) -> Parsed:
        """The events where ``keep`` (bool [n]) is True."""
        keep_obj = np.repeat(keep, self.nobj)
        return Parsed(
            event_id=self.event_id[keep], proc_code=self.proc_code[keep],
            proc_names=self.proc_names, header=self.header[keep], nobj=self.nobj[keep],
            obj_type=self.obj_type[keep_obj], obj_val=self.obj_val[keep_obj],
            line=self.line[keep],
        )


# --------------------------------------------------------------------------- fast path
def parse_fast(block: bytes, first_line: int = 0) -> Parsed | None:
    """Vectorised parse of ``block`` (whole LF-terminated lines); ``None`` if anything is off.

    ``first_line`` is the number of lines before the block (line numbers start after it).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    buf = np.frombuffer(block, np.uint8)
    if buf.size == 0 or buf[-1] != 10 or buf.size >= 2**31 - 1:
        return None
    if np.any((buf < 32) & (buf != 10)) or np.any(buf == 127):
        return None  # control bytes (NUL, CR, tab, ...): the slow path decides
    isdelim = (buf == 59) | (buf == 44) | (buf == 10)
    pos = np.flatnonzero(isdelim)
    delim = buf[pos]
    nl = np.flatnonzero(delim == 10)  # delimiter index of each line end
    nlines = nl.size
    first = np.empty(nlines, np.int64)  # token index of each line's first token
    first[0] = 0
    first[1:] = nl[:-1] + 1
    ndel = nl - first + 1
    if ndel.min() < 6 or np.any((ndel - 6) % 5):
        return None
    nobj = (ndel - 6) // 5
    # the delimiter pattern: 5 x ';', then per object ',,,,;', then LF
    j = np.arange(pos.size) - np.repeat(first, ndel)
    expected = np.where((j < 5) | ((j - 5) % 5 == 4), 59, 44).astype(np.uint8)
    expected[nl] = 10
    if not np.array_equal(delim, expected):
        return None
    start = np.empty(pos.size, np.int64)
    start[0] = 0
    start[1:] = pos[:-1] + 1
    empty = start == pos
    empty[nl] = ~empty[nl]  # the token before LF must be empty, all others non-empty
    if empty.any():
        return None

    # zero-copy string array over all tokens: drop the delimiters, tokens become contiguous
    data = buf[~isdelim]
    offsets = np.empty(pos.size + 1, np.int32)
    offsets[:-1] = start - np.arange(pos.size)
    offsets[-1] = data.size
    tokens = pa.StringArray.from_buffers(pos.size, pa.py_buffer(offsets), pa.py_buffer(data))

    # object types, looked up by their bytes
    nobj_total = int(nobj.sum())
    obj_line = np.repeat(np.arange(nlines), nobj)
    obj_start = np.concatenate([[0], np.cumsum(nobj)[:-1]]) if nlines else nobj
    col = np.arange(nobj_total) - np.repeat(obj_start, nobj)
    type_tok = first[obj_line] + 5 + 5 * col
    tlen = pos[type_tok] - start[type_tok]
    if np.any(tlen > 2):
        return None
    ts = start[type_tok]
    second = buf[np.minimum(ts + 1, buf.size - 1)].astype(np.int64)
    key = buf[ts].astype(np.int64) | (np.where(tlen == 2, second, 0) << 8)
    obj_type = _TYPE_LUT[key]
    if np.any(obj_type == 0):
        return None

    num_tok = np.concatenate(
        [(first[:, None] + np.arange(2, 5)).ravel(), (type_tok[:, None] + np.arange(1, 5)).ravel()]
    )
    try:
        values = pc.cast(tokens.take(pa.array(num_tok)), pa.float64()).to_numpy()
        event_id = pc.cast(tokens.take(pa.array(first)), pa.int64()).to_numpy()
        procs = tokens.take(pa.array(first + 1)).dictionary_encode()
        procs.dictionary.validate(full=True)  # valid UTF-8
        proc_names = procs.dictionary.to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, UnicodeDecodeError):
        return None
    if not np.isfinite(values).all() or np.abs(values).max(initial=0) > _FLOAT32_MAX:
        return None
    return Parsed(
        event_id=np.ascontiguousarray(event_id, np.int64),
        proc_code=procs.indices.to_numpy().astype(np.int32),
        proc_names=proc_names,
        header=values[: 3 * nlines].reshape(nlines, 3),
        nobj=nobj.astype(np.int64),
        obj_type=obj_type,
        obj_val=values[3 * nlines :].reshape(nobj_total, 4),
        line=first_line + 1 + np.arange(nlines, dtype=np.int64),
    )


# --------------------------------------------------------------------------- slow path
class _LineError(Exception):
    def __init__(self, reason: str, field: str, expected: str, got: bytes | str | None) -> None:
        self.reason, self.field, self.expected = reason, field, expected
        self.got = got.decode("utf-8", "replace") if isinstance(got, bytes) else got


def _number(tok: bytes, field: str) -> float:
    if not _NUMBER.fullmatch(tok):
        raise _LineError("not a number", field, "a finite decimal number (e.g. 61043.3)", tok)
    value = float(tok)
    if not math.isfinite(value):
        raise _LineError("not a finite number", field, "a finite number", tok)
    if abs(value) > _FLOAT32_MAX:
        raise _LineError("out of range", field, "a number within float32 range (|x| < 3.4e38)", tok)
    return value


def _parse_line(text: bytes) -> tuple[int, str, list[float], list[int], list[float]] | None:
    """One line without its LF -> (event_id, process, [w, met, metphi], types, values)."""
    if text.endswith(b"\r"):
        text = text[:-1]
    if not text:
        return None
    if not text.endswith(b";"):
        raise _LineError(
            "missing final ';'", "end of line", "';' (every Dark Machines line ends with ';')",
            text[-20:],
        )
    parts = text[:-1].split(b";")
    if len(parts) < 5:
        raise _LineError(
            "too few header fields", "header",
            "5 ';'-separated fields eventID;processID;weight;MET;METphi before the objects",
            f"{len(parts)} field(s)",
        )
    tok = parts[0]
    if not _INTEGER.fullmatch(tok) or not -_INT64_MAX - 1 <= int(tok) <= _INT64_MAX:
        raise _LineError("bad event id", "event_id (field 1)", "a 64-bit integer", tok)
    event_id = int(tok)
    if not parts[1] or b"," in parts[1] or _CONTROL.search(parts[1]):
        raise _LineError(
            "bad process id", "process_id (field 2)",
            "a non-empty name without ',' or control characters", parts[1],
        )
    try:
        process = parts[1].decode("utf-8")
    except UnicodeDecodeError:
        raise _LineError(
            "bad process id", "process_id (field 2)", "UTF-8 text", parts[1]
        ) from None
    header = [_number(parts[i], f"{_HEADER[i]} (field {i + 1})") for i in (2, 3, 4)]
    types: list[int] = []
    values: list[float] = []
    for o, obj in enumerate(parts[5:], start=1):
        fields = obj.split(b",")
        if len(fields) != 5:
            raise _LineError(
                "wrong number of object fields", f"object {o} (field {o + 5})",
                "5 ','-separated values type,E,pt,eta,phi", obj,
            )
        code = TYPE_CODES.get(fields[0].decode("utf-8", "replace"))
        if code is None:
            raise _LineError(
                "unknown object type", f"object {o} type", f"one of {_TYPE_NAMES_SHOWN}", fields[0]
            )
        types.append(code)
        values += [_number(fields[i], f"object {o} {_OBJ_FIELDS[i]}") for i in (1, 2, 3, 4)]
    return event_id, process, header, types, values


def _too_many(n: int, max_objects: int) -> _LineError:
    return _LineError(
        "too many objects", "objects",
        f"at most max_objects={max_objects} objects (raise max_objects or truncate)",
        f"{n} objects",
    )


def drop_too_many(
    parsed: Parsed, *, path: str, max_objects: int, on_error: str,
    report: dict[str, Any] | None,
) -> Parsed:
    """Events with more than ``max_objects`` objects: raise (as :func:`parse_slow` would) or
    skip and count them."""
    over = parsed.nobj > max_objects
    if not over.any():
        return parsed
    for i in np.flatnonzero(over).tolist():
        err = _too_many(int(parsed.nobj[i]), max_objects)
        exc = EventFormatError(path, int(parsed.line[i]), err.field, err.expected, err.got)
        if on_error == "raise":
            raise exc
        _record_skip(report, exc, err.reason)
    return parsed.select(~over)


def _record_skip(report: dict[str, Any] | None, exc: EventFormatError, reason: str) -> None:
    if report is None:
        return
    report["skipped"] = report.get("skipped", 0) + 1
    by = report.setdefault("skipped_by_reason", {})
    by[reason] = by.get(reason, 0) + 1
    first = report.setdefault("first_errors", [])
    if len(first) < 5:
        first.append(str(exc))


def parse_slow(
    block: bytes,
    *,
    path: str,
    first_line: int = 0,
    max_objects: int | None = None,
    on_error: str = "raise",
    report: dict[str, Any] | None = None,
) -> Parsed:
    """Parse ``block`` line by line: the exact reference parser.

    Raises :class:`EventFormatError` for the first malformed line (``on_error="raise"``), or
    skips it and counts it in ``report`` (``on_error="skip"``).  Lines with more than
    ``max_objects`` objects are errors when ``max_objects`` is given (``None``: no limit).
    """
    ids: list[int] = []
    procs: list[str] = []
    headers: list[list[float]] = []
    nobj: list[int] = []
    lines: list[int] = []
    types: list[int] = []
    values: list[float] = []
    lineno = first_line
    for raw in block.split(b"\n")[:-1] if block.endswith(b"\n") else block.split(b"\n"):
        lineno += 1
        try:
            parsed = _parse_line(raw)
            if parsed is not None and max_objects is not None and len(parsed[3]) > max_objects:
                raise _too_many(len(parsed[3]), max_objects)
        except _LineError as err:
            exc = EventFormatError(path, lineno, err.field, err.expected, err.got)
            if on_error == "raise":
                raise exc from None
            _record_skip(report, exc, err.reason)
            continue
        if parsed is None:
            continue
        ids.append(parsed[0])
        procs.append(parsed[1])
        headers.append(parsed[2])
        nobj.append(len(parsed[3]))
        lines.append(lineno)
        types += parsed[3]
        values += parsed[4]
    names = list(dict.fromkeys(procs))
    lookup = {name: i for i, name in enumerate(names)}
    return Parsed(
        event_id=np.array(ids, np.int64),
        proc_code=np.array([lookup[p] for p in procs], np.int32),
        proc_names=names,
        header=np.array(headers, np.float64).reshape(len(ids), 3),
        nobj=np.array(nobj, np.int64),
        obj_type=np.array(types, np.int8),
        obj_val=np.array(values, np.float64).reshape(len(types), 4),
        line=np.array(lines, np.int64),
    )
