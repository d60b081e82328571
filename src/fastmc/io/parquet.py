"""Parquet event files (pyarrow): one row per event, objects as a list of structs.

Columns: ``event_id`` int64, ``process`` dictionary<int32, string>, ``weight`` float64,
``met`` float32 (GeV), ``met_phi`` float32 (rad), ``objects`` list<struct<type: int8,
E: float32, pt: float32, eta: float32, phi: float32>> (GeV, rad; padding dropped, Dark
Machines order as in the Events).  The key ``fastmc`` of the file's key-value metadata holds
the JSON block of :mod:`fastmc.io._jagged` (K, process names in order, ``Events.meta``).
Events written and read back (with the same ``max_objects``, by default the stored K) are
identical.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

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

__all__ = ["Writer", "iter_read", "stored_max_objects"]

_META_KEY = b"fastmc"
_OBJ_FIELDS = ("type", "E", "pt", "eta", "phi")


def _schema():
    import pyarrow as pa

    obj = pa.struct(
        [("type", pa.int8())] + [(name, pa.float32()) for name in _OBJ_FIELDS[1:]]
    )
    return pa.schema(
        [
            ("event_id", pa.int64()),
            ("process", pa.dictionary(pa.int32(), pa.string())),
            ("weight", pa.float64()),
            ("met", pa.float32()),
            ("met_phi", pa.float32()),
            ("objects", pa.list_(obj)),
        ]
    )


def _read_meta(path: Path) -> dict[str, Any]:
    import pyarrow.parquet as pq

    metadata = pq.ParquetFile(path).metadata.metadata or {}
    return parse_meta(metadata.get(_META_KEY), path)


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
    import pyarrow.parquet as pq

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
        nonlocal names
        entry = 0
        pf = pq.ParquetFile(path)
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
            p4 = np.stack(
                [flat.field(f).to_numpy(zero_copy_only=False) for f in _OBJ_FIELDS[1:]], axis=-1
            )
            yield from_jagged(
                state,
                first_entry=entry,
                counts=pc.list_value_length(objects).to_numpy(zero_copy_only=False),
                types=flat.field("type").to_numpy(zero_copy_only=False),
                p4=p4.reshape(-1, 4),
                event_id=batch.column("event_id").to_numpy(),
                process_code=code_map[idx],
                process_names=names,
                weight=batch.column("weight").to_numpy(),
                met=batch.column("met").to_numpy(),
                met_phi=batch.column("met_phi").to_numpy(),
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
        self._pq = pq.ParquetWriter(self.tmp_path, self._schema, compression="zstd")

    def _write_arrays(self, events, codes, counts, types, p4) -> None:
        import pyarrow as pa

        offsets = np.zeros(len(counts) + 1, np.int32)
        np.cumsum(counts, out=offsets[1:])
        obj_type = self._schema.field("objects").type.value_type
        structs = pa.StructArray.from_arrays(
            [pa.array(types)] + [pa.array(np.ascontiguousarray(p4[:, i])) for i in range(4)],
            fields=list(obj_type),
        )
        objects = pa.ListArray.from_arrays(pa.array(offsets), structs)
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
