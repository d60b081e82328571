"""Events from wherever a user has them: Events, event files, or an event store's split."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fastmc.events import Events

__all__ = ["EventsLike", "is_store", "read_events"]

PathLike = str | os.PathLike[str]
EventsLike = Events | PathLike | Iterable[PathLike]


def is_store(path: Any) -> bool:
    """True if ``path`` is an event store directory (it holds ``meta.json``)."""
    return isinstance(path, str | os.PathLike) and (Path(path) / "meta.json").is_file()


def read_events(source: EventsLike, *, split: str = "test", **kwargs: Any) -> Events:
    """Events from files (paths or globs: ``.csv``/``.csv.gz`` in MeV, ``.parquet``, ``.root``),
    from an event store directory (its ``split``: ``"train"``, ``"val"`` or ``"test"``), or
    Events (returned as they are).  ``kwargs`` go to :func:`fastmc.io.read_events`
    (``max_objects``, ``on_error``, ...).  Returns Events in GeV.
    """
    if isinstance(source, Events):
        return source
    if is_store(source):
        from fastmc.data.store import open_store

        return open_store(source).events(split)
    from fastmc.io import read_events as _read

    return _read(source, **kwargs)
