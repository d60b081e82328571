"""Event store: counts match the files, splits, reproducibility, staleness, atomicity."""

from __future__ import annotations

import collections
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.data.store import (
    SCHEMA_VERSION,
    SPLITS,
    EventStore,
    StoreNotFoundError,
    open_store,
    prepare,
    summary_table,
)
from fastmc.errors import EventFormatError, OutputError, StaleStoreError
from fastmc.events import Events
from fastmc.io import read_events


def _count_lines(path: Path) -> collections.Counter:
    """Events per process ID of a Dark Machines file, counted without fastmc's reader."""
    counts: collections.Counter = collections.Counter()
    with open(path, "rb") as f:
        for line in f:
            if line.strip():
                counts[line.split(b";")[1].decode()] += 1
    return counts


def _key(ev: Events, i: int) -> bytes:
    return ev.met[i].tobytes() + ev.met_phi[i].tobytes() + ev.p4[i].tobytes()


def test_prepare_all_real_files_counts_match(store_all: Path, real_files: list[Path]) -> None:
    meta = json.loads((store_all / "meta.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION and meta["max_objects"] == 19
    expected: collections.Counter = collections.Counter()
    for src, path in zip(meta["sources"], real_files, strict=True):
        per_file = _count_lines(path)
        assert src["name"] == path.name and src["size"] == path.stat().st_size
        assert src["events"] == sum(per_file.values())
        assert src["events_by_process"] == dict(per_file)
        assert len(src["sha256"]) == 64
        for proc, n in per_file.items():
            assert sum(src["events_by_split"][s][proc] for s in SPLITS) == n
        expected += per_file
    assert meta["processes"] == sorted(expected)
    for split in SPLITS:  # per-file split counts add up to the per-process ones
        per_split: collections.Counter = collections.Counter()
        for src in meta["sources"]:
            per_split.update(src["events_by_split"][split])
        assert dict(per_split) == meta["counts"][split]
    for proc, n in expected.items():
        got = [meta["counts"][s][proc] for s in SPLITS]
        assert sum(got) == n
        assert got[1] == round(n * 0.1) and got[2] == round(n * 0.1)
    store = open_store(store_all)
    assert store.n_events("train") + store.n_events("val") + store.n_events("test") == sum(
        expected.values()
    )
    # arrays on disk have the counted lengths
    for split in SPLITS:
        for proc in store.processes:
            assert len(store.events(split, proc)) == meta["counts"][split][proc]


def test_store_holds_the_events_in_input_order(store_all: Path, real_files: list[Path]) -> None:
    store = open_store(store_all)
    ev = read_events(real_files)
    for proc in ("njets", "monotop_200_A", "gam_jets"):
        want = ev[ev.process == proc]
        parts = [store.events(s, proc) for s in SPLITS]
        got = Events.concatenate(parts)
        # order within a process is kept per split: sort both by a content key to compare sets,
        # and check that each split is a subsequence in input order
        order_want = np.lexsort((want.met_phi, want.met))
        order_got = np.lexsort((got.met_phi, got.met))
        np.testing.assert_array_equal(want.p4[order_want], got.p4[order_got])
        np.testing.assert_array_equal(want.types[order_want], got.types[order_got])
        np.testing.assert_array_equal(want.weight[order_want], got.weight[order_got])
        index = {_key(want, i): i for i in range(len(want))}
        assert len(index) == len(want)
        for part in parts:
            pos = [index[_key(part, i)] for i in range(len(part))]
            assert pos == sorted(pos)
        assert all(isinstance(p.p4.base, np.memmap) or isinstance(p.p4, np.memmap) for p in parts)
        assert set(got.process) == {proc}


def test_split_reproducible_and_seed_dependent(real_files: list[Path], tmp_path: Path) -> None:
    f = [p for p in real_files if p.name.startswith("monotop")]
    a = open_store(prepare(f, tmp_path / "a", seed=5))
    b = open_store(prepare(f, tmp_path / "b", seed=5))
    c = open_store(prepare(f, tmp_path / "c", seed=6))
    for split in SPLITS:
        assert a.events(split).equals(b.events(split))
    assert not a.events("test").equals(c.events("test"))
    assert a.n_events("test") == c.n_events("test") == round(1581 * 0.1)
    # the split of a process does not depend on the other inputs
    d = open_store(prepare(real_files[:2] + f, tmp_path / "d", seed=5))
    assert a.events("val", "monotop_200_A").equals(d.events("val", "monotop_200_A"))


def test_store_with_one_file(real_files: list[Path], tmp_path: Path) -> None:
    f = [p for p in real_files if p.name.startswith("monojet")]
    store = open_store(prepare(f, tmp_path / "one", val=0.2, test=0.0))
    assert store.processes == ("monojet_Zp2000.0_DM_50.0",)
    assert store.n_events("val") == round(1130 * 0.2) and store.n_events("test") == 0
    assert len(store.events("test")) == 0 and store.events("test").max_objects == 19
    assert store.n_events("train") == 1130 - 226


def test_store_from_parquet_input(real_files: list[Path], tmp_path: Path) -> None:
    from fastmc.io import write_events

    ev = read_events(real_files[2:4])
    pq = tmp_path / "two.parquet"
    write_events(pq, ev)
    store = open_store(prepare([pq], tmp_path / "s", val=0.0, test=0.0))
    assert store.sources[0]["name"] == "two.parquet" and store.sources[0]["events"] == len(ev)
    got = store.events("train")
    assert len(got) == len(ev) and got.equals(
        Events.concatenate([ev[ev.process == p] for p in store.processes])
    )


def test_stale_schema_version(real_files: list[Path], tmp_path: Path) -> None:
    path = prepare(real_files[1:2], tmp_path / "s")
    meta = json.loads((path / "meta.json").read_text())
    meta["schema_version"] = SCHEMA_VERSION + 1
    (path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(StaleStoreError, match="fastmc prepare"):
        open_store(path)


def test_stale_changed_source(real_files: list[Path], tmp_path: Path) -> None:
    src = tmp_path / "monotop.csv"
    shutil.copy(real_files[3], src)
    path = prepare([src], tmp_path / "s")
    st = src.stat()
    # touched but unchanged: the hash check clears it
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    open_store(path)
    # same size, one digit changed: mtime differs -> hash -> stale
    data = bytearray(src.read_bytes())
    i = data.index(b"1", 30)
    data[i : i + 1] = b"2"
    src.write_bytes(bytes(data))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    with pytest.raises(StaleStoreError, match="re-run `fastmc prepare`"):
        open_store(path)
    assert open_store(path, verify="none").n_events("train") > 0
    # different size: stale even with the quick check
    src.write_bytes(bytes(data) + bytes(data[:200].split(b"\n")[0]) + b"\n")
    with pytest.raises(StaleStoreError):
        open_store(path)
    # same size and mtime restored: only the on-demand hash check sees the change
    path2 = prepare([src], tmp_path / "s2")
    st2 = src.stat()
    data2 = bytearray(src.read_bytes())
    data2[i : i + 1] = b"3"
    src.write_bytes(bytes(data2))
    os.utime(src, ns=(st2.st_atime_ns, st2.st_mtime_ns))
    quick = open_store(path2)
    with pytest.raises(StaleStoreError):
        open_store(path2, verify="hash")
    with pytest.raises(StaleStoreError):
        quick.check_sources(hash=True)
    # a deleted source is no error: the store is self-contained
    src.unlink()
    store = open_store(path)
    assert store.missing_sources == [str(src.resolve())]


def test_prepare_errors_leave_nothing_behind(real_files: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_bytes(real_files[3].read_bytes()[:2000].rsplit(b"\n", 2)[0] + b"\n1;x;1;abc;0.1;\n")
    with pytest.raises(EventFormatError, match=r"bad\.csv"):
        prepare([real_files[3], bad], tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]
    skipped = open_store(prepare([bad], tmp_path / "skip", on_error="skip"))
    good_lines = sum(_count_lines(bad).values()) - 1
    assert skipped.meta["skipped"] == 1
    assert sum(skipped.n_events(s) for s in SPLITS) == good_lines
    shutil.rmtree(tmp_path / "skip")
    with pytest.raises(ValueError, match="fraction"):
        prepare(real_files[:1], tmp_path / "o", val=1.2)
    with pytest.raises(ValueError, match="more than once"):
        prepare([real_files[0], real_files[0]], tmp_path / "o")
    with pytest.raises(StoreNotFoundError, match="fastmc prepare"):
        open_store(tmp_path)


def test_overwrite(real_files: list[Path], tmp_path: Path) -> None:
    out = prepare(real_files[2:3], tmp_path / "s")
    with pytest.raises(OutputError, match="overwrite"):
        prepare(real_files[3:4], out)
    prepare(real_files[3:4], out, overwrite=True)
    assert open_store(out).processes == ("monotop_200_A",)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(OutputError, match="not an event store"):
        prepare(real_files[3:4], precious, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_store_pickles_without_data(store_all: Path) -> None:
    import pickle

    store = open_store(store_all)
    store.events("train", "njets")
    blob = pickle.dumps(store)
    assert len(blob) < 20_000
    assert pickle.loads(blob).events("train", "njets").equals(store.events("train", "njets"))


def test_summary_table_and_cli(real_files: list[Path], tmp_path: Path) -> None:
    runner = CliRunner()
    files = [str(p) for p in real_files[2:4]]
    res = runner.invoke(app, ["prepare", *files, "-o", str(tmp_path / "s"), "--seed", "1"])
    assert res.exit_code == 0, res.output
    assert "monotop_200_A" in res.output and "1,581" in res.output
    store = EventStore(tmp_path / "s")
    assert store.meta["seed"] == 1
    res = runner.invoke(app, ["prepare", *files, "-o", str(tmp_path / "s")])
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = runner.invoke(app, ["prepare", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "t")])
    assert res.exit_code == 1 and "nope.csv" in res.output
    # the same --on-error {raise,skip} spelling as `fastmc convert` and `fastmc info`
    bad = tmp_path / "bad.csv"
    bad.write_bytes(real_files[3].read_bytes()[:2000].rsplit(b"\n", 2)[0] + b"\n1;x;1;abc;0.1;\n")
    res = runner.invoke(app, ["prepare", str(bad), "-o", str(tmp_path / "b")])
    assert res.exit_code == 1 and "bad.csv" in res.output
    res = runner.invoke(app, ["prepare", str(bad), "-o", str(tmp_path / "b"), "--on-error", "skip"])
    assert res.exit_code == 0, res.output
    assert EventStore(tmp_path / "b").meta["skipped"] == 1
    res = runner.invoke(app, ["prepare", str(bad), "-o", str(tmp_path / "c"), "--on-error", "x"])
    assert res.exit_code == 1 and "--on-error" in res.output
    console = Console(record=True, width=150)
    console.print(summary_table(tmp_path / "s"))
    text = console.export_text()
    assert "monojet_Zp2000.0_DM_50.0" in text and "2,711" in text
