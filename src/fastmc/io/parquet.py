"""Parquet event files (pyarrow): one row per event, objects as a list of structs.

Columns (none nullable): ``event_id`` int64, ``process`` dictionary<int32, string>, ``weight``
float64, ``met`` float32 (GeV), ``met_phi`` float32 (rad), ``objects`` list<struct<obj_type:
int8, E: float32, pt: float32, eta: float32, phi: float32>> (GeV, rad; padding dropped, Dark
Machines order as in the Events; ``obj_type`` 1..7 = j, b, e-, e+, m-, m+, g).  Every field
carries its unit in the Arrow field metadata (key ``unit``).  The key ``fastmc`` of the file's
key-value metadata holds the JSON block of :mod:`fastmc.io._jagged` (K, process names in
order, units, type-code legend, ``Events.meta``).  Files of fastmc <= 0.1 named the type field
``type`` (it collides with awkward's ``.type``); they are still read.
Events written and read back (with the same ``max_objects``, by default the stored K) are
identical.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.errors import EventFormatError
from fastmc.events import UNITS, Events
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

_META_KEY = b"fastmc"
_OBJ_FIELDS = ("obj_type", "E", "pt", "eta", "phi")
_OLD_TYPE_FIELD = "type"  # fastmc <= 0.1


def _schema():
    import pyarrow as pa

    def field(name: str, type_: Any) -> Any:
        unit = UNITS.get(name, "")
        return pa.field(name, type_, nullable=False, metadata={"unit": unit} if unit else None)

    obj = pa.struct(
        [field("obj_type", pa.int8())] + [field(name, pa.float32()) for name in _OBJ_FIELDS[1:]]
    )
    return pa.schema(
        [
            field("event_id", pa.int64()),
            field("process", pa.dictionary(pa.int32(), pa.string())),
            field("weight", pa.float64()),
            field("met", pa.float32()),
            field("met_phi", pa.float32()),
            field("objects", pa.list_(pa.field("item", obj, nullable=False))),
        ]
    )


_WHAT = "a Parquet file written by fastmc"
_HINT = (
    "it may be truncated, damaged or another format: check the extension matches the content "
    "(.csv for Dark Machines text) or write it again"
)


def _open(path: Path):
    """The ParquetFile with page checksums verified (pages written by fastmc carry them)."""
    import pyarrow.parquet as pq

    with damaged_file(path, _WHAT, _HINT):
        return pq.ParquetFile(path, page_checksum_verification=True)


def _check_schema(pf: Any, path: Path) -> None:
    """EventFormatError naming the first missing or mistyped column."""
    import pyarrow.types as pt

    schema = pf.schema_arrow

    def numeric(t: Any) -> bool:
        return pt.is_integer(t) or pt.is_floating(t)

    def stringy(t: Any) -> bool:
        if pt.is_dictionary(t):
            t = t.value_type
        return pt.is_string(t) or pt.is_large_string(t)

    want = {
        "event_id": ("an integer column", pt.is_integer),
        "process": ("a string column", stringy),
        "weight": ("a numeric column", numeric),
        "met": ("a numeric column (GeV)", numeric),
        "met_phi": ("a numeric column (rad)", numeric),
    }
    for name, (expected, ok) in want.items():
        if name not in schema.names:
            raise EventFormatError(str(path), None, f"column {name}", expected, "missing")
        if not ok(schema.field(name).type):
            raise EventFormatError(str(path), None, f"column {name}", expected,
                                   str(schema.field(name).type))
    obj_expected = "list<struct<obj_type: int8, E, pt, eta, phi: float32>>"
    if "objects" not in schema.names:
        raise EventFormatError(str(path), None, "column objects", obj_expected, "missing")
    t = schema.field("objects").type
    ok = pt.is_list(t) and pt.is_struct(t.value_type)
    if ok:
        sub = {t.value_type.field(i).name: t.value_type.field(i).type
               for i in range(t.value_type.num_fields)}
        type_field = _OBJ_FIELDS[0] if _OBJ_FIELDS[0] in sub else _OLD_TYPE_FIELD
        ok = all(f in sub for f in (type_field, *_OBJ_FIELDS[1:])) and pt.is_integer(
            sub[type_field]) and all(numeric(sub[f]) for f in _OBJ_FIELDS[1:]
        )
    if not ok:
        raise EventFormatError(str(path), None, "column objects", obj_expected, str(t))


def _read_meta(path: Path) -> dict[str, Any]:
    pf = _open(path)
    metadata = pf.metadata.metadata or {}
    block = parse_meta(metadata.get(_META_KEY), path)
    _check_schema(pf, path)
    return block


def stored_max_objects(path: str | os.PathLike[str]) -> int:
    """K, the width of the Events that were written to the Parquet file ``path``."""
    return int(_read_meta(Path(path))["max_objects"])


def iter_read(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = 100_000,
    on_error: str = "raise",
    max_objects: int | None = None,
    truncate: bool = False,
    report: dict[str, Any] | None = None,
) -> Iterator[Events]:
    """Stream Events (GeV) of ``chunk_size`` events from a fastmc Parquet file.

    ``max_objects`` (default: the K stored in the file) sets the width; events with more
    objects raise EventFormatError, are skipped (``on_error="skip"``, counted in ``report``)
    or cut (``truncate=True``).  ``report["events"]`` counts the events read.
    """
    import pyarrow.compute as pc

    check_read_args(chunk_size, on_error, max_objects)
    path = Path(path)
    block = _read_meta(path)
    k = int(block["max_objects"] if max_objects is None else max_objects)
    if k < 1:
        raise ValueError(f"max_objects must be >= 1, got {k}")
    names: tuple[str, ...] = tuple(block["process_names"])
    meta = block["meta"]
    state = JaggedReadState(path, k, on_error, truncate, {} if report is None else report)

    def parts() -> Iterator[Events]:
        with damaged_file(path, _WHAT, _HINT):
            yield from _parts()

    def _parts() -> Iterator[Events]:
        nonlocal names
        entry = 0
        pf = _open(path)
        for batch in pf.iter_batches(batch_size=chunk_size):
            proc = batch.column("process")
            if hasattr(proc, "dictionary"):
                local = proc.dictionary.to_pylist()
                idx = proc.indices.to_numpy(zero_copy_only=False)
            else:  # written by another tool as plain strings
                enc = proc.dictionary_encode()
                local, idx = enc.dictionary.to_pylist(), enc.indices.to_numpy(zero_copy_only=False)
            for name in local:
                if name not in names:
                    names = (*names, name)
            lookup = {name: i for i, name in enumerate(names)}
            code_map = np.array([lookup[n] for n in local] or [0], np.int32)
            objects = batch.column("objects")
            flat = objects.flatten()
            has_new = flat.type.get_field_index(_OBJ_FIELDS[0]) >= 0
            type_field = _OBJ_FIELDS[0] if has_new else _OLD_TYPE_FIELD
            p4 = np.stack(
                [flat.field(f).to_numpy(zero_copy_only=False) for f in _OBJ_FIELDS[1:]], axis=-1
            )
            yield from_jagged(
                state,
                first_entry=entry,
                counts=pc.list_value_length(objects).to_numpy(zero_copy_only=False),
                types=flat.field(type_field).to_numpy(zero_copy_only=False),
                p4=p4.reshape(-1, 4),
                event_id=batch.column("event_id").to_numpy(zero_copy_only=False),
                process_code=code_map[idx],
                process_names=names,
                weight=batch.column("weight").to_numpy(zero_copy_only=False),
                met=batch.column("met").to_numpy(zero_copy_only=False),
                met_phi=batch.column("met_phi").to_numpy(zero_copy_only=False),
                meta=meta,
            )
            entry += batch.num_rows

    yield from rechunk(parts(), int(chunk_size), empty=empty_events(k, names, meta))


class Writer(JaggedWriter):
    """Streaming, atomic Parquet writer (one row group per ``write``); ``meta`` is stored.

    The stored metadata is ``Events.meta`` of the batches (later ones win) updated by ``meta``.
    """

    def _open_file(self) -> None:
        import pyarrow.parquet as pq

        self._schema = _schema()
        self._pq = pq.ParquetWriter(
            self.tmp_path, self._schema, compression="zstd", write_page_checksum=True
        )

    def _write_arrays(self, events, codes, counts, types, p4) -> None:
        import pyarrow as pa

        offsets = np.zeros(len(counts) + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        obj_type = self._schema.field("objects").type.value_type
        structs = pa.StructArray.from_arrays(
            [pa.array(types)] + [pa.array(np.ascontiguousarray(p4[:, i])) for i in range(4)],
            fields=list(obj_type),
        )
        objects = pa.ListArray.from_arrays(
            pa.array(offsets), structs, type=self._schema.field("objects").type
        )
        process = pa.DictionaryArray.from_arrays(
            pa.array(codes, pa.int32()), pa.array(list(self._names), pa.string())
        )
        table = pa.Table.from_arrays(
            [
                pa.array(events.event_id),
                process,
                pa.array(events.weight),
                pa.array(events.met),
                pa.array(events.met_phi),
                objects,
            ],
            schema=self._schema,
        )
        self._pq.write_table(table)

    def _finish(self) -> None:
        self._pq.add_key_value_metadata({_META_KEY.decode(): self._meta_json()})
        self._pq.close()

    def _discard(self) -> None:
        self._pq.close()
