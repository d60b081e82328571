"""Bad inputs at the command line (issue 15, "Why"): every case exits 1 with exactly one line
``error: ...`` on stderr, no traceback, no partial output and no user file touched."""

from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from clihelpers import run_bad
from fastmc.cli import app
from fastmc.data.store import prepare
from fastmc.events import Events
from fastmc.io import open_writer, read_events, write_events


@pytest.fixture(scope="module")
def real(real_files: list[Path]) -> Events:
    return read_events(real_files[0])[:200]


@pytest.fixture
def csv(real_files: list[Path], tmp_path: Path) -> Path:
    path = tmp_path / "real.csv"
    path.write_bytes(b"".join(real_files[0].read_bytes().splitlines(keepends=True)[:300]))
    return path


def _unchecked(path: Path, events: Events) -> Path:
    writer = open_writer(path)
    writer._write(events)  # bypass validation to make a hostile file
    writer.close()
    return path


# ---------------------------------------------------------------- 1. data loss
def test_prepare_input_inside_output(csv: Path, tmp_path: Path) -> None:
    s = tmp_path / "S"
    prepare([csv], s)
    shutil.copy(csv, s / "mine.csv")
    (s / "NOTES.txt").write_text("x")
    run_bad(["prepare", s / "mine.csv", "-o", s, "--overwrite"], tmp_path, contains="holds the input")


def test_prepare_existing_output_without_overwrite(csv: Path, tmp_path: Path) -> None:
    s = tmp_path / "S"
    prepare([csv], s)
    run_bad(["prepare", csv, "-o", s], tmp_path, contains="pass --overwrite")


def test_prepare_overwrite_keeps_user_files(csv: Path, tmp_path: Path) -> None:
    s = tmp_path / "S"
    prepare([csv], s)
    (s / "NOTES.txt").write_text("x")
    res = CliRunner().invoke(app, ["prepare", str(csv), "-o", str(s), "--overwrite", "--seed", "3"])
    assert res.exit_code == 0, res.output
    assert (s / "NOTES.txt").read_text() == "x" and csv.exists()


def test_convert_same_input_twice(csv: Path, tmp_path: Path) -> None:
    run_bad(["convert", csv, csv, "-o", tmp_path / "o.csv"], tmp_path, contains="more than once")


# ---------------------------------------------------------------- 3. unchecked data
@pytest.mark.parametrize("fmt", ["parquet", "root"])
@pytest.mark.parametrize("what", ["met", "E", "type"])
@pytest.mark.parametrize("command", ["info", "info --json", "prepare", "evaluate"])
def test_invalid_values(real: Events, tmp_path: Path, fmt: str, what: str, command: str) -> None:
    ev = real[:]
    ev.p4, ev.met, ev.types = ev.p4.copy(), ev.met.copy(), ev.types.copy()
    if what == "met":
        ev.met[5] = np.nan
    elif what == "E":
        ev.p4[5, 0, 0] = np.nan
    else:
        ev.types[5, 0] = 9
    path = _unchecked(tmp_path / f"bad.{fmt}", ev)
    if command == "evaluate":
        good = tmp_path / f"good.{fmt}"
        write_events(good, real)
        args = ["evaluate", "-r", good, "-g", path, "-o", tmp_path / "report", "--no-plots",
                "--no-classifier"]
    else:
        args = command.split() + [path] + (["-o", tmp_path / "S"] if command == "prepare" else [])
    run_bad(args, tmp_path, contains="of entry 5")


def test_parquet_byte_flip(real: Events, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "e.parquet"
    write_events(path, real)
    col = pq.ParquetFile(path).metadata.row_group(0).column(3)  # met
    data = bytearray(path.read_bytes())
    data[col.data_page_offset + col.total_compressed_size // 2] ^= 0x04
    path.write_bytes(bytes(data))
    run_bad(["info", path], tmp_path, contains=str(path))


def test_store_shard_byte_flip(csv: Path, tmp_path: Path) -> None:
    s = prepare([csv], tmp_path / "S")
    shard = s / "train" / "p000" / "p4.npy"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    run_bad(["verify", s], tmp_path, contains="CRC-32")


def test_verify_good_store(csv: Path, tmp_path: Path) -> None:
    s = prepare([csv], tmp_path / "S")
    res = CliRunner().invoke(app, ["verify", str(s)])
    assert res.exit_code == 0 and "checksums and values verified" in res.output


# ---------------------------------------------------------------- 4. tracebacks
def test_plain_csv_named_gz(csv: Path, tmp_path: Path) -> None:
    path = tmp_path / "plain.csv.gz"
    shutil.copy(csv, path)
    run_bad(["info", path], tmp_path, contains="gzip")


def test_truncated_gz(csv: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.csv.gz"
    data = gzip.compress(csv.read_bytes())
    path.write_bytes(data[: len(data) // 2])
    run_bad(["info", path], tmp_path, contains="truncated")


@pytest.mark.parametrize("fmt", ["parquet", "root"])
def test_csv_named_binary(csv: Path, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"x.{fmt}"
    shutil.copy(csv, path)
    run_bad(["info", path], tmp_path, contains=str(path))


@pytest.mark.parametrize("fmt", ["parquet", "root"])
@pytest.mark.parametrize("keep", [0.0, 0.5])
def test_truncated_or_empty_binary(real: Events, tmp_path: Path, fmt: str, keep: float) -> None:
    path = tmp_path / f"x.{fmt}"
    write_events(path, real)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    run_bad(["info", path], tmp_path, contains=str(path))
    run_bad(["prepare", path, "-o", tmp_path / "S"], tmp_path, contains=str(path))


@pytest.mark.parametrize("problem", ["missing", "type"])
def test_parquet_schema(real: Events, tmp_path: Path, problem: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "good.parquet"
    write_events(src, real)
    meta = pq.ParquetFile(src).metadata.metadata[b"fastmc"].decode()
    table = pq.read_table(src)
    if problem == "missing":
        table = table.drop_columns(["met"])
    else:
        table = table.set_column(3, "met", pa.array([str(x) for x in table["met"].to_pylist()]))
    src.unlink()
    path = tmp_path / "edited.parquet"
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata({"fastmc": meta})
    run_bad(["info", path], tmp_path, contains="column met")


@pytest.mark.parametrize(
    "edit",
    ["list", "missing-key", "extra-process", "changed-K", "not-json"],
)
@pytest.mark.parametrize("command", ["info", "verify"])
def test_edited_store_meta(csv: Path, tmp_path: Path, edit: str, command: str) -> None:
    s = prepare([csv], tmp_path / "S")
    meta = json.loads((s / "meta.json").read_text())
    if edit == "list":
        meta = []
    elif edit == "missing-key":
        del meta["counts"]
    elif edit == "extra-process":
        meta["processes"].append("zz")
    elif edit == "changed-K":
        meta["max_objects"] = 12
    text = "{" if edit == "not-json" else json.dumps(meta)
    (s / "meta.json").write_text(text)
    run_bad([command, s], tmp_path, contains="meta.json")


def test_zero_byte_shard(csv: Path, tmp_path: Path) -> None:
    s = prepare([csv], tmp_path / "S")
    (s / "train" / "p000" / "met.npy").write_bytes(b"")
    run_bad(["verify", s], tmp_path, contains="met.npy")


def test_convert_output_is_a_folder(csv: Path, tmp_path: Path) -> None:
    (tmp_path / "out.parquet").mkdir()
    run_bad(["convert", csv, "-o", tmp_path / "out.parquet"], tmp_path, contains="folder")


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in: a read-only temporary folder, or, for
    root (which writes through permission bits), sysfs, whose root refuses new files."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(0o500)
        return folder
    folder = Path("/sys")
    try:
        (folder / "fastmc-probe").touch()
    except OSError:
        return folder
    (folder / "fastmc-probe").unlink()
    pytest.skip("no folder on this machine refuses new files to root")


def test_convert_output_in_read_only_folder(csv: Path, tmp_path: Path) -> None:
    folder = _unwritable_folder(tmp_path)
    try:
        run_bad(["convert", csv, "-o", folder / "out.parquet"], tmp_path,
                contains=f"{folder / 'out.parquet'}: cannot write into")
        assert not (folder / "out.parquet").exists()
    finally:
        if folder.is_relative_to(tmp_path):
            folder.chmod(0o700)


def test_convert_chunk_size_zero(csv: Path, tmp_path: Path) -> None:
    run_bad(["convert", csv, "-o", tmp_path / "o.parquet", "--chunk-size", "0"], tmp_path,
            contains="chunk_size")


# ---------------------------------------------------------------- 5. smaller
def test_empty_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    run_bad(["prepare", empty, "-o", tmp_path / "S"], tmp_path, contains="at least one event")


def test_process_name_with_cr(tmp_path: Path) -> None:
    path = tmp_path / "cr.csv"
    path.write_bytes(b"1;tt\rbar;1;2;0.5;j,3,2,0.1,0.2;\n")
    run_bad(["info", path], tmp_path, contains="process_id")


def test_debug_shows_traceback(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv.gz"
    path.write_text("x")
    res = CliRunner().invoke(app, ["--debug", "info", str(path)])
    assert res.exit_code != 0
    assert "Traceback" in res.stderr or isinstance(res.exception, Exception)


# ---------------------------------------------------------------- one overwrite policy
def test_convert_output_is_input(csv: Path, tmp_path: Path) -> None:
    run_bad(["convert", csv, "-o", csv, "--on-error", "skip", "--overwrite"], tmp_path,
            contains="also an input")


def test_convert_existing_output(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    out.write_text("precious")
    run_bad(["convert", csv, "-o", out], tmp_path, contains="pass --overwrite")
    res = CliRunner().invoke(app, ["convert", str(csv), "-o", str(out), "--overwrite"])
    assert res.exit_code == 0 and len(read_events(out)) == 300


def test_evaluate_output_is_a_file(csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    out.write_text("precious")
    run_bad(["evaluate", "-r", csv, "-g", csv, "-o", out], tmp_path, contains="not a folder")


def test_evaluate_existing_report_needs_overwrite(csv: Path, tmp_path: Path) -> None:
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "index.html").write_text("old")
    run_bad(["evaluate", "-r", csv, "-g", csv, "-o", tmp_path / "report"], tmp_path,
            contains="pass --overwrite")


def test_simulate_existing_output(tmp_path: Path) -> None:
    out = tmp_path / "sim.csv"
    out.write_text("precious")
    run_bad(["simulate", "ttbar", "-n", "10", "-o", out], tmp_path, contains="pass --overwrite")


def test_train_on_store_with_empty_shard(csv: Path, tmp_path: Path) -> None:
    s = prepare([csv], tmp_path / "S")
    (s / "train" / "p000" / "met.npy").write_bytes(b"")
    run_bad(["train", s, "-o", tmp_path / "m", "--epochs", "1", "--device", "cpu"], tmp_path,
            contains="met.npy")
