"""The one validation layer at the edge: every reader and every writer checks its Events here.

:func:`find_bad_events` finds the events that break the contract of
:class:`~fastmc.events.Events` in ways that would poison training or evaluation (not physics
cuts): an unknown object type code, a non-finite E, pT, eta, phi, MET, METphi or weight.
:func:`check_events` raises :class:`~fastmc.errors.EventFormatError` naming the file, the
event (entry number and event id) and the field of the first bad event.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from fastmc.errors import EventFormatError, FastMCError
from fastmc.events import TYPE_NAMES, Events

__all__ = ["check_events", "damaged_file", "find_bad_events"]

_P4_FIELDS = ("E", "pt", "eta", "phi")
_KNOWN = f"a type code 0..{len(TYPE_NAMES) - 1} (0 padding, 1..7 = {', '.join(TYPE_NAMES[1:])})"


def find_bad_events(events: Events) -> tuple[np.ndarray, list[str]]:
    """bool [N]: events that fail a check, and per failing event the field it fails first.

    Checks, in this order: ``types`` in 0..7, finite ``p4`` of every real object (and of
    padding: a NaN hidden in a padding slot still poisons sums), finite ``met``,
    ``met_phi`` and ``weight``.
    """
    types = events.types
    bad = ((types < 0) | (types >= len(TYPE_NAMES))).any(axis=1)
    bad |= ~np.isfinite(events.p4).all(axis=(1, 2))
    for name in ("met", "met_phi", "weight"):
        bad |= ~np.isfinite(getattr(events, name))
    fields = [_first_field(events, i) for i in np.flatnonzero(bad).tolist()]
    return bad, fields


def _first_field(events: Events, i: int) -> str:
    """The first failing field of event ``i`` as ``object J type`` / ``MET`` / ... ."""
    t = events.types[i]
    for j in range(t.size):
        if not 0 <= int(t[j]) < len(TYPE_NAMES):
            return f"object {j + 1} type"
        for f, name in enumerate(_P4_FIELDS):
            if not np.isfinite(events.p4[i, j, f]):
                return f"object {j + 1} {name}"
    for name, label in (("met", "MET"), ("met_phi", "METphi"), ("weight", "weight")):
        if not np.isfinite(getattr(events, name)[i]):
            return label
    return "event"  # pragma: no cover - only called for bad events


def _got(events: Events, i: int, field: str) -> str:
    parts = field.split()
    if parts[0] == "object":
        j = int(parts[1]) - 1
        if parts[2] == "type":
            return str(int(events.types[i, j]))
        return str(float(events.p4[i, j, _P4_FIELDS.index(parts[2])]))
    name = {"MET": "met", "METphi": "met_phi", "weight": "weight"}[field]
    return str(float(getattr(events, name)[i]))


def check_events(
    events: Events,
    *,
    path: str | os.PathLike[str],
    first_entry: int = 0,
    on_error: str = "raise",
    report: dict[str, Any] | None = None,
    action: str = "read",
    entries: np.ndarray | None = None,
) -> Events:
    """Return ``events`` if every event is valid (see :func:`find_bad_events`).

    Otherwise raise :class:`EventFormatError` naming ``path``, the entry number
    (``first_entry`` + index, 0-based) and event id, and the field; with ``on_error="skip"``
    drop the bad events instead and count them in ``report`` (``skipped``,
    ``skipped_by_reason["invalid value"]``, ``first_errors``).  ``action`` ("read" or
    "write") only changes the wording of what to try; ``entries`` (int [N], optional) gives
    each event's entry number within the file when the events are not consecutive.
    """
    if not len(events):
        return events
    bad, fields = find_bad_events(events)
    if not bad.any():
        return events
    idx = np.flatnonzero(bad)
    hint = (
        "fix or drop this event at its source (or read with on_error='skip')"
        if action == "read"
        else "the events to write hold invalid values; check the model or the code that made them"
    )

    def error(n: int) -> EventFormatError:
        i = int(idx[n])
        field = fields[n]
        entry = first_entry + (i if entries is None else int(entries[i]))
        return EventFormatError(
            str(path), None,
            f"{field} of entry {entry} (event id {int(events.event_id[i])})",
            f"{_KNOWN if field.endswith('type') else 'a finite number'}; {hint}",
            _got(events, i, field),
        )

    if on_error != "skip":
        raise error(0)
    if report is not None:
        report["skipped"] = report.get("skipped", 0) + int(idx.size)
        by = report.setdefault("skipped_by_reason", {})
        by["invalid value"] = by.get("invalid value", 0) + int(idx.size)
        first = report.setdefault("first_errors", [])
        for n in range(min(idx.size, max(0, 5 - len(first)))):
            first.append(str(error(n)))
    return events[~bad]


@contextlib.contextmanager
def damaged_file(path: str | os.PathLike[str], what: str, hint: str) -> Iterator[None]:
    """Turn any library error raised while reading ``path`` into an EventFormatError.

    ``what`` names the expected content (e.g. "a Parquet file written by fastmc"), ``hint``
    says what to try.  fastmc's own errors, and interrupts, pass through unchanged.
    """
    try:
        yield
    except FastMCError:
        raise
    except MemoryError:
        raise
    except Exception as exc:
        got = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        raise EventFormatError(str(path), None, "file", f"{what} ({hint})", got) from exc
