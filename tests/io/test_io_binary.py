"""Parquet and ROOT files: exact round trips of real events, layout, streaming, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fastmc.events import Events
from fastmc.io import iter_events, open_writer, read_events, write_events
from fastmc.io import parquet as pq_io
from fastmc.io import root as root_io


@pytest.fixture(scope="module")
def real_events(real_files: list[Path]) -> Events:
    return read_events(real_files)


@pytest.mark.parametrize("ext", ["parquet", "root"])
def test_real_events_exact_and_csv_bytes(real_events: Events, real_files: list[Path],
                                         tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"all.{ext}"
    write_events(path, real_events, meta={"source": "dark machines"})
    back = read_events(path, chunk_size=4000)
    assert back.equals(real_events)
    assert back.process_names == real_events.process_names
    assert back.meta == {"source": "dark machines"}
    # Parquet/ROOT in the middle of a CSV round trip still gives the original bytes
    csv = tmp_path / "back.csv"
    write_events(csv, read_events(path).__getitem__(slice(0, 1000)))
    assert csv.read_bytes() == real_files[0].read_bytes()


def test_parquet_layout(real_events: Events, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "x.parquet"
    write_events(path, real_events[:100])
    table = pq.read_table(path)
    assert table.column_names == ["event_id", "process", "weight", "met", "met_phi", "objects"]
    first = table.slice(0, 1).to_pylist()[0]
    assert first["process"] == "njets"
    assert len(first["objects"]) == int(real_events.n_objects[0])
    assert first["objects"][0]["obj_type"] == 1
    assert first["objects"][0]["pt"] == pytest.approx(506.951, rel=1e-6)  # GeV
    assert pq_io.stored_max_objects(path) == 19
    # units and the type-code legend travel with the file; no field is nullable
    schema = table.schema
    assert schema.field("met").metadata == {b"unit": b"GeV"}
    obj = schema.field("objects").type.value_type
    assert obj.field("pt").metadata == {b"unit": b"GeV"}
    assert obj.field("phi").metadata == {b"unit": b"rad"}
    assert not any(schema.field(n).nullable for n in schema.names)
    assert not schema.field("objects").type.value_field.nullable
    assert not any(obj.field(i).nullable for i in range(obj.num_fields))
    block = json.loads(pq.ParquetFile(path).metadata.metadata[b"fastmc"])
    assert block["type_codes"] == {"1": "j", "2": "b", "3": "e-", "4": "e+", "5": "m-",
                                   "6": "m+", "7": "g"}
    assert block["units"]["E"] == "GeV" and block["units"]["met_phi"] == "rad"


def test_parquet_in_awkward_has_no_type_collision(real_events: Events, tmp_path: Path) -> None:
    import awkward as ak

    path = tmp_path / "x.parquet"
    write_events(path, real_events[:100])
    arr = ak.from_parquet(path)
    # the object type is a field, not awkward's .type; nothing is option-typed
    assert ak.to_list(arr.objects.obj_type[0]) == real_events.types[0, :5].tolist()
    assert "?" not in str(arr.type)


def test_parquet_version1_files_still_read(real_events: Events, tmp_path: Path) -> None:
    """Files of fastmc <= 0.1 (object field ``type``, nullable, metadata version 1)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    ev = real_events[:50]
    valid = ev.types != 0
    offsets = np.concatenate([[0], np.cumsum(valid.sum(axis=1))]).astype(np.int32)
    p4 = ev.p4[valid]
    structs = pa.StructArray.from_arrays(
        [pa.array(ev.types[valid])] + [pa.array(p4[:, i]) for i in range(4)],
        names=["type", "E", "pt", "eta", "phi"],
    )
    names = list(ev.process_names)
    table = pa.table({
        "event_id": ev.event_id,
        "process": pa.DictionaryArray.from_arrays(pa.array(ev.process_code), pa.array(names)),
        "weight": ev.weight, "met": ev.met, "met_phi": ev.met_phi,
        "objects": pa.ListArray.from_arrays(pa.array(offsets), structs),
    })
    block = {"format": "fastmc-events", "version": 1, "max_objects": 19,
             "process_names": names, "meta": {}}
    table = table.replace_schema_metadata({"fastmc": json.dumps(block)})
    path = tmp_path / "old.parquet"
    pq.write_table(table, path)
    assert read_events(path).equals(ev)


def test_root_layout(real_events: Events, tmp_path: Path) -> None:
    import uproot

    path = tmp_path / "x.root"
    write_events(path, real_events[:100])
    with uproot.open(path) as f:
        tree = f["events"]
        assert set(tree.keys()) == {
            "event_id", "process_code", "process", "weight", "met", "met_phi",
            "nobj", "obj_type", "obj_E", "obj_pt", "obj_eta", "obj_phi",
        }
        assert tree.num_entries == 100
        # process names readable without fastmc; units and type codes in the title
        assert tree["process"].array(library="np").tolist() == list(real_events.process[:100])
        assert "GeV" in tree.title and "1..7 = j b e- e+ m- m+ g" in tree.title
        block = json.loads(str(f["fastmc_meta"]))
        assert block["type_codes"]["7"] == "g" and block["units"]["obj_pt"] == "GeV"
        nobj = tree["nobj"].array(library="np")
        assert np.array_equal(nobj, real_events.n_objects[:100])
        # every jagged branch is counted by the one counter nobj
        for name in ("obj_type", "obj_E", "obj_pt", "obj_eta", "obj_phi"):
            assert tree[name].count_branch.name == "nobj"
    assert root_io.stored_max_objects(path) == 19


@pytest.mark.parametrize("ext", ["parquet", "root", "csv"])
def test_streaming_batches_merge_processes(real_events: Events, tmp_path: Path, ext: str) -> None:
    a, b = real_events[:3000], real_events[9000:]
    path = tmp_path / f"s.{ext}"
    with open_writer(path) as writer:
        writer.write(a)
        writer.write(b[:0])
        writer.write(b)
    back = read_events(path, chunk_size=1000)
    assert back.equals(Events.concatenate([a, b]))  # real CSV values survive exactly
    sizes = [len(c) for c in iter_events(path, chunk_size=1000)]
    assert sizes == [1000] * (len(back) // 1000) + [len(back) % 1000]


@pytest.mark.parametrize("ext", ["csv", "csv.gz", "parquet", "root"])
def test_failed_write_leaves_nothing_and_keeps_existing(real_events: Events, tmp_path: Path,
                                                         ext: str) -> None:
    path = tmp_path / f"out.{ext}"

    def batches():
        yield real_events[:100]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        write_events(path, batches())
    assert list(tmp_path.iterdir()) == []

    path.write_bytes(b"precious")
    with pytest.raises(RuntimeError, match="interrupted"):
        write_events(path, batches())
    assert path.read_bytes() == b"precious"
    assert list(tmp_path.iterdir()) == [path]
    # a successful write replaces it
    write_events(path, real_events[:10])
    assert len(read_events(path)) == 10
    assert list(tmp_path.iterdir()) == [path]


def test_abort_and_closed_writer(real_events: Events, tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    writer = open_writer(path)
    writer.write(real_events[:10])
    writer.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="closed"):
        writer.write(real_events[:10])


def test_meta_must_be_json(real_events: Events, tmp_path: Path) -> None:
    path = tmp_path / "m.parquet"
    with pytest.raises(ValueError, match="JSON-serialisable"):
        write_events(path, real_events[:5], meta={"bad": object()})
    assert list(tmp_path.iterdir()) == []
