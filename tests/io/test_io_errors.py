"""Every malformed-input path names the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from fastmc.errors import EventFormatError
from fastmc.io import read_events
from fastmc.io._dmparse import parse_fast

GOOD = "1;ttbar;1;216178;1.5014;j,1.2587e+06,274658,2.20315,-1.19237;m+,93465.9,84487.5,0.4,2.1;\n"

# (bad line, field named in the message, skip reason)
CASES = [
    ("1;ttbar;1;216178;1.5014;j,1.2587e+06,274658,2.20315,-1.19237", "end of line", "missing final ';'"),
    ("1;ttbar;1;216178;", "header", "too few header fields"),
    ("x1;ttbar;1;216178;1.5014;", "event_id (field 1)", "bad event id"),
    ("1.5;ttbar;1;216178;1.5014;", "event_id (field 1)", "bad event id"),
    ("99999999999999999999;ttbar;1;216178;1.5014;", "event_id (field 1)", "bad event id"),
    (";ttbar;1;216178;1.5014;", "event_id (field 1)", "bad event id"),
    ("1;;1;216178;1.5014;", "process_id (field 2)", "bad process id"),
    ("1;tt,bar;1;216178;1.5014;", "process_id (field 2)", "bad process id"),
    ("1;ttbar;one;216178;1.5014;", "weight (field 3)", "not a number"),
    ("1;ttbar;1;nan;1.5014;", "MET (field 4)", "not a number"),
    ("1;ttbar;1;1e999;1.5014;", "MET (field 4)", "not a finite number"),
    ("1;ttbar;1;216178; 1.5;", "METphi (field 5)", "not a number"),
    ("1;ttbar;1;216178;1.5014;j,1,2,3,4;j,1,2,3;", "object 2 (field 7)", "wrong number of object fields"),
    ("1;ttbar;1;216178;1.5014;j,1,2,3,4,5;", "object 1 (field 6)", "wrong number of object fields"),
    ("1;ttbar;1;216178;1.5014;;", "object 1 (field 6)", "wrong number of object fields"),
    ("1;ttbar;1;216178;1.5014;tau,1,2,3,4;", "object 1 type", "unknown object type"),
    ("1;ttbar;1;216178;1.5014;J,1,2,3,4;", "object 1 type", "unknown object type"),
    ("1;ttbar;1;216178;1.5014;j,1,2a,3,4;", "object 1 pt", "not a number"),
    ("1;ttbar;1;216178;1.5014;j,1,2,inf,4;", "object 1 eta", "not a number"),
    ("1;ttbar;1;216178;1.5014;j,1,2,3,-1e400;", "object 1 phi", "not a finite number"),
    ("1;ttbar;1;216178;1.5014;j,,2,3,4;", "object 1 E", "not a number"),
]


@pytest.mark.parametrize(("bad", "field", "reason"), CASES)
def test_error_names_file_line_field(tmp_path: Path, bad: str, field: str, reason: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(GOOD + GOOD + bad + "\n" + GOOD)
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    err = info.value
    assert (err.path, err.line, err.field) == (str(path), 3, field)
    assert str(err).startswith(f"{path}:3: field {field}: expected ")
    # the fast path never accepts the bad line
    assert parse_fast((bad + "\n").encode()) is None
    # skipping: the three good lines are read, the bad one counted with its reason
    report: dict = {}
    events = read_events(path, on_error="skip", report=report)
    assert len(events) == 3
    assert report["skipped"] == 1
    assert report["skipped_by_reason"] == {reason: 1}
    assert report["first_errors"] == [str(err)]


def test_invalid_utf8_process(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_bytes(GOOD.encode() + b"1;tt\xffbar;1;216178;1.5014;\n")
    with pytest.raises(EventFormatError, match=r"bad.csv:2: field process_id \(field 2\): expected UTF-8"):
        read_events(path)


def test_skip_counts_by_reason(tmp_path: Path) -> None:
    lines = [GOOD] * 10
    lines[2] = CASES[0][0] + "\n"
    lines[5] = CASES[15][0] + "\n"
    lines[7] = CASES[15][0] + "\n"
    path = tmp_path / "mixed.csv"
    path.write_text("".join(lines))
    report: dict = {}
    events = read_events(path, on_error="skip", report=report, chunk_size=4)
    assert len(events) == 7 == report["events"]
    assert report["skipped"] == 3
    assert report["skipped_by_reason"] == {"missing final ';'": 1, "unknown object type": 2}
    assert [m.split(": field")[0] for m in report["first_errors"]] == [
        f"{path}:3", f"{path}:6", f"{path}:8"
    ]


def test_line_numbers_across_blocks(tmp_path: Path) -> None:
    from fastmc.io import darkmachines

    path = tmp_path / "long.csv"
    path.write_text(GOOD * 1000 + "\n" + GOOD * 500 + CASES[16][0] + "\n" + GOOD)
    with pytest.raises(EventFormatError) as info:
        list(darkmachines.iter_read(path, block_bytes=1000, chunk_size=100))
    assert info.value.line == 1502


def test_bad_arguments(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(GOOD)
    with pytest.raises(ValueError, match="on_error"):
        read_events(path, on_error="ignore")
    with pytest.raises(ValueError, match="chunk_size"):
        read_events(path, chunk_size=0)
    with pytest.raises(ValueError, match="max_objects"):
        read_events(path, max_objects=0)


@pytest.mark.parametrize("ext", ["parquet", "root"])
def test_foreign_binary_files_rejected(tmp_path: Path, ext: str) -> None:
    path = tmp_path / f"foreign.{ext}"
    if ext == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"x": [1, 2]}), path)
        field = "metadata"
    else:
        import uproot

        with uproot.recreate(path) as f:
            f["t"] = {"x": [1, 2]}
        field = "keys"
    with pytest.raises(EventFormatError, match=rf"foreign.{ext}: field {field}: expected"):
        read_events(path)


def test_rare_bad_lines_in_large_blocks(tmp_path: Path, real_files: list[Path]) -> None:
    # large blocks are halved around bad lines: line numbers and results must not change
    lines = real_files[1].read_bytes().splitlines(keepends=True)  # 4096 lines, ~1 MB
    bad_at = [17, 1500, 1501, 4000]  # 0-based
    mutated = list(lines)
    for i in bad_at:
        mutated[i] = mutated[i].replace(b";j,", b";tau,", 1)
    path = tmp_path / "rare.csv"
    path.write_bytes(b"".join(mutated))
    with pytest.raises(EventFormatError) as info:
        read_events(path)
    assert info.value.line == bad_at[0] + 1
    report: dict = {}
    events = read_events(path, on_error="skip", report=report, chunk_size=1000)
    assert report["skipped"] == 4
    assert [int(m.split(":")[1]) for m in report["first_errors"]] == [i + 1 for i in bad_at]
    good = tmp_path / "good.csv"
    good.write_bytes(b"".join(ln for i, ln in enumerate(lines) if i not in bad_at))
    assert events.equals(read_events(good))
