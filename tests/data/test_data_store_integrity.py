"""Event store integrity (issue 15): edited meta.json and damaged shards are refused on open with
CorruptStoreError naming the file; prepare --overwrite never loses a user's file; permissions
follow the umask; empty input is refused."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastmc.data.store import EventStore, prepare, verify_store
from fastmc.errors import CorruptStoreError, EventFormatError, OutputError, StaleStoreError


@pytest.fixture(scope="module")
def small_store(real_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare(real_files[2:4], tmp_path_factory.mktemp("integrity") / "store")


@pytest.fixture
def store(small_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(small_store, copy)
    return copy


def edit_meta(store: Path, change) -> None:
    meta = json.loads((store / "meta.json").read_text())
    meta = change(meta)
    (store / "meta.json").write_text(json.dumps(meta))


def _extra_process(m: dict) -> dict:
    m["processes"].append("zz")
    return m


def _changed_k(m: dict) -> dict:
    m["max_objects"] = 20
    return m


def _drop(key: str):
    def change(m: dict) -> dict:
        del m[key]
        return m

    return change


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda m: [], "(top level)"),
        (_drop("counts"), "counts"),
        (_drop("files"), "files"),
        (_extra_process, "counts.train"),
        (_changed_k, "arrays"),
    ],
    ids=["list", "missing-counts", "missing-files", "extra-process", "changed-K"],
)
def test_edited_meta_refused(store: Path, change, field: str) -> None:
    edit_meta(store, change)
    with pytest.raises(CorruptStoreError) as info:
        EventStore(store)
    msg = str(info.value)
    assert msg.startswith(f"{store / 'meta.json'}: field {field}: expected ")
    assert "fastmc prepare" in msg


def test_meta_not_json(store: Path) -> None:
    (store / "meta.json").write_bytes(b"\xff{")
    with pytest.raises(CorruptStoreError, match="not valid JSON"):
        EventStore(store)


def test_changed_counts_caught_by_header(store: Path) -> None:
    edit_meta(store, lambda m: m | {"counts": {**m["counts"], "train": {
        p: n + 1 for p, n in m["counts"]["train"].items()}}})
    with pytest.raises(CorruptStoreError, match=r"meta\.json describes"):
        EventStore(store)


def test_shard_byte_flip_detected(store: Path) -> None:
    """A flipped byte in a shard is caught by the CRC-32 on open (and by verify_store)."""
    shard = store / "train" / "p000" / "event_id.npy"
    data = bytearray(shard.read_bytes())
    data[200] ^= 0x01
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="CRC-32") as info:
        EventStore(store)
    assert str(shard) in str(info.value)
    with pytest.raises(CorruptStoreError, match="CRC-32"):
        verify_store(store)
    EventStore(store, verify="none")  # the explicit opt-out still opens it


@pytest.mark.parametrize("cut", [0, 100])
def test_truncated_or_empty_shard(store: Path, cut: int) -> None:
    shard = store / "val" / "p001" / "p4.npy"
    shard.write_bytes(shard.read_bytes()[:cut])
    with pytest.raises(CorruptStoreError, match=r"bytes, meta\.json records"):
        EventStore(store, verify="none")


def test_missing_shard(store: Path) -> None:
    (store / "test" / "p000" / "met.npy").unlink()
    with pytest.raises(CorruptStoreError, match="shard missing"):
        EventStore(store)


def test_verify_store_full_check(store: Path) -> None:
    n = sum(EventStore(store).n_events(s) for s in ("train", "val", "test"))
    out = verify_store(store)
    assert out["events"] == n and out["shards"] == 2 * 3 * 6 and out["bytes"] > 0
    # a NaN written into a shard with the checksums updated (a bug, not a damaged disk):
    # only the full check reads the values
    shard = store / "train" / "p001" / "met.npy"
    arr = np.load(shard)
    arr[3] = np.nan
    np.save(shard, arr)
    from fastmc.data._layout import file_record

    edit_meta(store, lambda m: m | {"files": {**m["files"], "train/p001/met.npy": file_record(shard)}})
    EventStore(store)
    with pytest.raises(EventFormatError) as info:
        verify_store(store)
    assert info.value.field.startswith("MET of entry 3")
    assert info.value.path == str(store / "train" / "p001")


META_SETTINGS = settings(
    max_examples=60, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 30) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


@META_SETTINGS
@given(data=st.data())
def test_fuzz_meta_json(small_store: Path, tmp_path_factory: pytest.TempPathFactory, data) -> None:
    """Replace or delete any value of meta.json: the store opens with the same events, or
    opening raises StaleStoreError / CorruptStoreError, never another exception."""
    meta = json.loads((small_store / "meta.json").read_text())
    paths = [p for p in _paths(meta) if p]
    path = data.draw(st.sampled_from(paths))
    edited = json.loads(json.dumps(meta))
    parent = edited
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    copy = tmp_path_factory.mktemp("fuzzmeta") / "store"
    shutil.copytree(small_store, copy)
    (copy / "meta.json").write_text(json.dumps(edited))
    try:
        store = EventStore(copy, verify="none")
    except StaleStoreError as exc:
        assert str(copy) in str(exc)
    else:
        ref = EventStore(small_store, verify="none")
        for split in ("train", "val", "test"):
            assert store.events(split).equals(ref.events(split))
    finally:
        shutil.rmtree(copy)


# ---------------------------------------------------------------------------- prepare safety
def test_overwrite_keeps_user_files(real_files: list[Path], tmp_path: Path) -> None:
    out = prepare(real_files[2:3], tmp_path / "S")
    (out / "NOTES.txt").write_text("mine")
    (out / "models").mkdir()
    (out / "models" / "m.txt").write_text("also mine")
    prepare(real_files[3:4], out, overwrite=True)
    assert (out / "NOTES.txt").read_text() == "mine"
    assert (out / "models" / "m.txt").read_text() == "also mine"
    store = EventStore(out)
    assert [s["name"] for s in store.sources] == [real_files[3].name]
    names = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    assert names == set(store.meta["files"]) | {"meta.json", "NOTES.txt", "models/m.txt"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_input_inside_output_refused(real_files: list[Path], tmp_path: Path) -> None:
    out = prepare(real_files[2:3], tmp_path / "S")
    mine = out / "mine.csv"
    shutil.copy(real_files[3], mine)
    (out / "NOTES.txt").write_text("x")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="holds the input"):
            prepare([mine], out, overwrite=overwrite)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_output_that_is_a_file_refused(real_files: list[Path], tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.write_text("not a folder")
    with pytest.raises(OutputError, match="not a folder"):
        prepare(real_files[2:3], target, overwrite=True)
    assert target.read_text() == "not a folder"


def test_empty_input_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(EventFormatError, match="at least one event"):
        prepare([empty], tmp_path / "S")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.csv"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_permissions_follow_umask(real_files: list[Path], tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        out = prepare(real_files[2:3], tmp_path / f"S{mask}")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "train").stat().st_mode) == 0o777 & ~mask
    for f in [out / "meta.json", out / "train" / "p000" / "p4.npy"]:
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask
