"""Damaged and hostile event files: every reader raises EventFormatError naming the file (and
the entry and field where there is one), never a library traceback; every writer refuses
invalid events and leaves nothing behind (issue 15)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fastmc.errors import EventFormatError
from fastmc.events import Events
from fastmc.io import open_writer, read_events, write_events

BINARY = ["parquet", "root"]


@pytest.fixture(scope="module")
def events(real_files: list[Path]) -> Events:
    return read_events(real_files[0])[:200]


def write_unchecked(path: Path, events: Events) -> None:
    """Write ``events`` bypassing the writer's validation (to make hostile files)."""
    writer = open_writer(path)
    writer._write(events)
    writer.close()


def poisoned(events: Events, what: str) -> Events:
    ev = events[:]
    ev.p4, ev.met, ev.types = ev.p4.copy(), ev.met.copy(), ev.types.copy()
    if what == "met":
        ev.met[17] = np.nan
    elif what == "E":
        ev.p4[17, 0, 0] = np.inf
    elif what == "type":
        ev.types[17, 0] = 9
    return ev


FIELDS = {"met": "MET", "E": "object 1 E", "type": "object 1 type"}


@pytest.mark.parametrize("fmt", BINARY)
@pytest.mark.parametrize("what", ["met", "E", "type"])
def test_invalid_values_in_binary_files(tmp_path: Path, events: Events, fmt: str, what: str) -> None:
    path = tmp_path / f"bad.{fmt}"
    write_unchecked(path, poisoned(events, what))
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    eid = int(events.event_id[17])
    assert info.value.path == str(path)
    assert info.value.field == f"{FIELDS[what]} of entry 17 (event id {eid})"
    report: dict = {}
    got = read_events(path, on_error="skip", report=report)
    assert len(got) == len(events) - 1 and report["skipped_by_reason"] == {"invalid value": 1}
    assert got.equals(events[np.arange(len(events)) != 17])


@pytest.mark.parametrize("fmt", ["csv", "csv.gz", *BINARY])
@pytest.mark.parametrize("what", ["met", "E", "type"])
def test_writers_refuse_invalid_events(tmp_path: Path, events: Events, fmt: str, what: str) -> None:
    path = tmp_path / f"out.{fmt}"
    path.write_text("precious")
    with pytest.raises(EventFormatError, match=f"field {FIELDS[what]} of entry 17"):
        write_events(path, [events[:50], poisoned(events, what)])
    assert path.read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


@pytest.mark.parametrize("fmt", BINARY)
def test_csv_named_binary(tmp_path: Path, events: Events, fmt: str) -> None:
    path = tmp_path / f"events.{fmt}"
    write_events(tmp_path / "events.csv", events)
    (tmp_path / "events.csv").rename(path)
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    assert info.value.path == str(path) and info.value.field == "file"
    assert "extension" in str(info.value)


@pytest.mark.parametrize("fmt", BINARY)
@pytest.mark.parametrize("keep", [0.0, 0.3, 0.6])
def test_truncated_binary(tmp_path: Path, events: Events, fmt: str, keep: float) -> None:
    path = tmp_path / f"events.{fmt}"
    write_events(path, events)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    assert info.value.path == str(path)


@pytest.mark.parametrize("fmt", BINARY)
def test_truncated_tail_never_changes_events(tmp_path: Path, events: Events, fmt: str) -> None:
    """Cut anywhere in the last 40 %: an error, or (ROOT keeps bookkeeping at the end that
    uproot does not need) exactly the events written."""
    path = tmp_path / f"events.{fmt}"
    write_events(path, events)
    data = path.read_bytes()
    for keep in np.linspace(0.6, 0.999, 15):
        path.write_bytes(data[: int(len(data) * keep)])
        try:
            got = read_events(path)
        except EventFormatError as exc:
            assert exc.path == str(path)
        else:
            assert got.equals(events)


def test_parquet_byte_flip_detected(tmp_path: Path, events: Events) -> None:
    """Page checksums (written and verified by fastmc) catch a flipped byte in a data page."""
    import pyarrow.parquet as pq

    path = tmp_path / "events.parquet"
    write_events(path, events)
    md = pq.ParquetFile(path).metadata
    col = md.row_group(0).column(5)  # the objects' type column chunk
    data = bytearray(path.read_bytes())
    start = col.data_page_offset
    for offset in range(start + 40, start + col.total_compressed_size - 8, 97):
        flipped = bytearray(data)
        flipped[offset] ^= 0x10
        path.write_bytes(bytes(flipped))
        with pytest.raises(EventFormatError) as info:
            read_events(path)
        assert info.value.field == "file"


def _parquet_without(tmp_path: Path, events: Events, drop: str | None, cast: str | None) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "good.parquet"
    write_events(src, events)
    table = pq.read_table(src)
    meta = pq.ParquetFile(src).metadata.metadata[b"fastmc"].decode()
    if drop:
        table = table.drop_columns([drop])
    if cast:
        idx = table.schema.get_field_index(cast)
        table = table.set_column(idx, cast, pa.array([str(x) for x in table[cast].to_pylist()]))
    out = tmp_path / "edited.parquet"
    with pq.ParquetWriter(out, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({"fastmc": meta})
    return out


@pytest.mark.parametrize("column", ["event_id", "met", "objects", "process"])
def test_parquet_missing_column(tmp_path: Path, events: Events, column: str) -> None:
    path = _parquet_without(tmp_path, events, column, None)
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    assert info.value.field == f"column {column}" and info.value.got == "missing"


@pytest.mark.parametrize("column", ["met", "weight", "event_id"])
def test_parquet_wrong_type(tmp_path: Path, events: Events, column: str) -> None:
    path = _parquet_without(tmp_path, events, None, column)
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    assert info.value.field == f"column {column}" and info.value.got == "string"


def test_plain_csv_named_gz(tmp_path: Path, real_files: list[Path]) -> None:
    path = tmp_path / "plain.csv.gz"
    path.write_bytes(real_files[0].read_bytes()[:5000])
    with pytest.raises(EventFormatError, match=r"name it \.csv") as info:
        read_events(path)
    assert info.value.path == str(path) and info.value.field == "gzip stream"


def test_truncated_gz(tmp_path: Path, real_files: list[Path]) -> None:
    path = tmp_path / "cut.csv.gz"
    data = gzip.compress(real_files[0].read_bytes())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(EventFormatError, match="truncated") as info:
        read_events(path)
    assert info.value.field == "gzip stream"


def test_process_names_read_iff_writable(tmp_path: Path) -> None:
    """A process name the writer refuses (control characters) is refused by the reader too."""
    for name in ["tt\rbar", "tt\x00bar", "tt\tbar"]:
        path = tmp_path / "p.csv"
        path.write_bytes(f"1;{name};1;2;0.5;j,3,2,0.1,0.2;\n".encode())
        with pytest.raises(EventFormatError, match="process_id"):
            read_events(path)
        ev = Events.from_arrays(types=np.ones((1, 1)), p4=np.ones((1, 1, 4)), met=[1.0],
                                met_phi=[0.0], process=name)
        with pytest.raises(ValueError, match="cannot be written"):
            write_events(tmp_path / "w.csv", ev)
