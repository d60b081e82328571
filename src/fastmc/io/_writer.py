"""The atomic, streaming writer protocol shared by the CSV, Parquet and ROOT writers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastmc.events import Events
from fastmc.io.atomic import atomic_path
from fastmc.io.validate import check_events

__all__ = ["AtomicWriter", "json_meta"]


class _Aborted(Exception):
    """Thrown into :func:`atomic_path` to make it discard the temporary file."""


class AtomicWriter:
    """Base class: output goes to a temporary file renamed to ``path`` by :meth:`close`.

    Subclasses implement ``_open()``, ``_write(events)``, ``_finish()`` (flush and close the
    temporary file) and ``_discard()`` (close it, no flushing needed).  A failing ``write``
    or ``close`` discards the temporary file; an existing file at ``path`` is only replaced
    when ``close`` succeeds.  Use as a context manager (``with Writer(p) as w: w.write(ev)``).
    """

    def __init__(self, path: str | os.PathLike[str], *, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = dict(meta or {})
        self.n_written = 0
        self._done = False
        self._opened = False
        self._ctx = atomic_path(self.path)
        self.tmp_path: Path = self._ctx.__enter__()
        try:
            self._open()
            self._opened = True
        except BaseException:  # an interrupt may land here too: nothing to discard yet
            self.abort()
            raise

    # -- subclass hooks
    def _open(self) -> None:
        raise NotImplementedError

    def _write(self, events: Events) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    # -- public protocol
    def write(self, events: Events) -> None:
        """Append a batch of events (GeV); any error discards the whole output."""
        if self._done:
            raise ValueError(f"writer for {self.path} is already closed")
        try:
            check_events(events, path=self.path, action="write")
            self._write(events)
        except BaseException:
            self.abort()
            raise
        self.n_written += len(events)

    def close(self) -> None:
        """Finish the file and move it to its final name (idempotent)."""
        if self._done:
            return
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._ctx.__exit__(None, None, None)

    def abort(self) -> None:
        """Discard everything written so far; ``path`` is left as it was (idempotent)."""
        if self._done:
            return
        self._done = True
        try:
            if self._opened:
                self._discard()
        finally:
            self._ctx.__exit__(_Aborted, _Aborted(), None)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def json_meta(meta: dict[str, Any]) -> str:
    """``meta`` as JSON; numpy scalars and arrays become numbers and lists.

    Raises ValueError naming the key when a value cannot be stored.
    """
    import json

    import numpy as np

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic | np.ndarray):
            return obj.tolist()
        if isinstance(obj, tuple | set):
            return list(obj)
        if isinstance(obj, os.PathLike):
            return os.fspath(obj)
        raise TypeError(f"{type(obj).__name__} is not JSON-serialisable")

    try:
        return json.dumps(meta, default=default, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"Events.meta must be JSON-serialisable to be stored in the file ({exc}); "
            "convert the offending values to numbers, strings or lists"
        ) from exc
