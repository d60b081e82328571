"""ROOT event files (uproot): a TTree ``events`` plus a metadata string.

Branches of the TTree ``events``: per event ``event_id`` (int64), ``process_code`` (int32,
index into the stored process names), ``weight`` (float64), ``met`` (float32, GeV),
``met_phi`` (float32, rad), ``process`` (string, the process name, for people and ROOT macros;
fastmc reads ``process_code``); per object, jagged and sharing the ONE counter ``nobj`` (int32):
``obj_type`` (int8, 1..7 = j, b, e-, e+, m-, m+, g), ``obj_E``, ``obj_pt`` (float32, GeV),
``obj_eta``, ``obj_phi`` (float32).  The tree title states the units and the type codes; the
key ``fastmc_meta`` (a TObjString) holds the JSON block of :mod:`fastmc.io._jagged` (K,
process names, units, type-code legend, ``Events.meta``).  Events written and
read back (with the same ``max_objects``, by default the stored K) are identical.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.errors import EventFormatError
from fastmc.events import Events
from fastmc.io._args import check_read_args
from fastmc.io._jagged import (
    JaggedReadState,
    JaggedWriter,
    empty_events,
    from_jagged,
    parse_meta,
    rechunk,
)
from fastmc.io.validate import damaged_file

__all__ = ["Writer", "iter_read", "stored_max_objects"]

TREE = "events"
META_KEY = "fastmc_meta"
_OBJ_FIELDS = ("type", "E", "pt", "eta", "phi")
TITLE = (
    "fastmc events: obj_E, obj_pt, met in GeV; obj_phi, met_phi in rad; "
    "obj_type 1..7 = j b e- e+ m- m+ g"
)
_SCALARS = ("event_id", "process_code", "weight", "met", "met_phi")


_WHAT = "a ROOT file written by fastmc"
_HINT = (
    "it may be truncated, damaged or another format: check the extension matches the content "
    "or write it again"
)
_BRANCHES = (*_SCALARS, "nobj", *(f"obj_{f}" for f in _OBJ_FIELDS))


def _read_meta(file: Any, path: Path) -> dict[str, Any]:
    if META_KEY not in file or TREE not in file:
        raise EventFormatError(
            str(path), None, "keys", f"a TTree {TREE!r} and a {META_KEY!r} string (fastmc file)",
            ", ".join(file.keys()),
        )
    block = parse_meta(str(file[META_KEY]), path)
    tree = file[TREE]
    have = set(tree.keys(recursive=True))
    for name in _BRANCHES:
        if name not in have:
            raise EventFormatError(str(path), None, f"branch {name}",
                                   f"present in the TTree {TREE!r}", "missing")
    return block


def _meta_of(path: Path) -> dict[str, Any]:
    import uproot

    with damaged_file(path, _WHAT, _HINT), uproot.open(path) as file:
        return _read_meta(file, path)


def stored_max_objects(path: str | os.PathLike[str]) -> int:
    """K, the width of the Events that were written to the ROOT file ``path``."""
    return int(_meta_of(Path(path))["max_objects"])


def iter_read(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = 100_000,
    on_error: str = "raise",
    max_objects: int | None = None,
    truncate: bool = False,
    report: dict[str, Any] | None = None,
) -> Iterator[Events]:
    """Stream Events (GeV) of ``chunk_size`` events from a fastmc ROOT file.

    ``max_objects`` (default: the K stored in the file) sets the width; events with more
    objects raise EventFormatError, are skipped (``on_error="skip"``, counted in ``report``)
    or cut (``truncate=True``).  ``report["events"]`` counts the events read.
    """
    import awkward as ak
    import uproot

    check_read_args(chunk_size, on_error, max_objects)
    path = Path(path)
    block = _meta_of(path)
    k = int(block["max_objects"] if max_objects is None else max_objects)
    if k < 1:
        raise ValueError(f"max_objects must be >= 1, got {k}")
    names = tuple(block["process_names"])
    state = JaggedReadState(path, k, on_error, truncate, {} if report is None else report)

    def parts() -> Iterator[Events]:
        with damaged_file(path, _WHAT, _HINT):
            yield from _parts()

    def _parts() -> Iterator[Events]:
        with uproot.open(path) as file:
            tree = file[TREE]
            branches = list(_BRANCHES)
            for start in range(0, tree.num_entries, int(chunk_size)):
                stop = min(start + int(chunk_size), tree.num_entries)
                arr = tree.arrays(branches, entry_start=start, entry_stop=stop, library="ak")
                flat = {f: ak.to_numpy(ak.flatten(arr[f"obj_{f}"])) for f in _OBJ_FIELDS}
                yield from_jagged(
                    state,
                    first_entry=start,
                    counts=ak.to_numpy(arr["nobj"]),
                    types=flat["type"],
                    p4=np.stack([flat[f] for f in _OBJ_FIELDS[1:]], axis=-1).reshape(-1, 4),
                    event_id=ak.to_numpy(arr["event_id"]),
                    process_code=ak.to_numpy(arr["process_code"]),
                    process_names=names,
                    weight=ak.to_numpy(arr["weight"]),
                    met=ak.to_numpy(arr["met"]),
                    met_phi=ak.to_numpy(arr["met_phi"]),
                    meta=block["meta"],
                )

    yield from rechunk(parts(), int(chunk_size), empty=empty_events(k, names, block["meta"]))


def _names_per_event(events: Events) -> Any:
    """The process name of every event as a packed awkward string array (fast to write)."""
    import awkward as ak

    names = ak.to_layout(list(events.process_names))
    index = ak.index.Index64(events.process_code.astype(np.int64))
    return ak.to_packed(ak.Array(ak.contents.IndexedArray(index, names)))


class Writer(JaggedWriter):
    """Streaming, atomic ROOT writer (one basket per branch per ``write``); ``meta`` is stored.

    The stored metadata is ``Events.meta`` of the batches (later ones win) updated by ``meta``.
    """

    object_prefix = "obj_"

    def _open_file(self) -> None:
        import awkward as ak
        import uproot

        self._file = uproot.recreate(self.tmp_path)
        obj = "var * {type: int8, E: float32, pt: float32, eta: float32, phi: float32}"
        self._tree = self._file.mktree(
            TREE,
            {
                "event_id": np.int64,
                "process_code": np.int32,
                "weight": np.float64,
                "met": np.float32,
                "met_phi": np.float32,
                "process": "string",
                "obj": ak.types.from_datashape(obj, highlevel=False),
            },
            title=TITLE,
        )

    def _write_arrays(self, events, codes, counts, types, p4) -> None:
        import awkward as ak

        fields = {"type": types} | {f: np.ascontiguousarray(p4[:, i]) for i, f in
                                    enumerate(_OBJ_FIELDS[1:])}
        objects = ak.unflatten(ak.zip(fields), counts)
        self._tree.extend(
            {
                "event_id": events.event_id,
                "process_code": np.asarray(codes, np.int32),
                "weight": events.weight,
                "met": events.met,
                "met_phi": events.met_phi,
                "process": _names_per_event(events),
                "obj": objects,
            }
        )

    def _finish(self) -> None:
        self._file[META_KEY] = self._meta_json()
        self._file.close()

    def _discard(self) -> None:
        self._file.close()
