"""Dark Machines CSV: exact round trips of the real files, chunking, fast vs slow parser."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from fastmc.events import Events
from fastmc.io import darkmachines, read_events, write_events
from fastmc.io._dmparse import parse_fast, parse_slow

PARSED_FIELDS = ("event_id", "proc_code", "proc_names", "header", "nobj", "obj_type", "obj_val", "line")


def assert_parsed_equal(a, b) -> None:
    for name in PARSED_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, list):
            assert x == y, name
        else:
            assert np.array_equal(x, y), name


def test_real_files_round_trip_byte_identical(real_files: list[Path], tmp_path: Path) -> None:
    assert len(real_files) == 6
    for path in real_files:
        events = read_events(path, chunk_size=777)
        out = tmp_path / path.name
        write_events(out, events)
        assert out.read_bytes() == path.read_bytes(), path.name


def test_round_trip_gz(real_files: list[Path], tmp_path: Path) -> None:
    path = real_files[0]
    gz = tmp_path / "x.csv.gz"
    write_events(gz, read_events(path))
    assert gzip.decompress(gz.read_bytes()) == path.read_bytes()
    # and reading the .gz gives the same events again
    out = tmp_path / "y.csv"
    write_events(out, read_events(gz))
    assert out.read_bytes() == path.read_bytes()


def test_units_and_values(data_dir: Path) -> None:
    events = read_events(data_dir / "background_chan1_sample.csv", chunk_size=10)
    first = events[0]
    # 179903555;njets;1;351709;-2.56781;j,672376,506951,0.784228,0.908651;...
    assert first.event_id[0] == 179903555
    assert first.process[0] == "njets"
    assert first.weight[0] == 1.0
    assert first.met[0] == np.float32(351.709)
    assert first.met_phi[0] == np.float32(-2.56781)
    assert first.types[0, :6].tolist() == [1, 1, 1, 1, 1, 0]
    assert np.array_equal(
        first.p4[0, 0], np.array([672.376, 506.951, 0.784228, 0.908651], np.float32)
    )
    assert np.all(first.p4[0, 5:] == 0)


def test_float32_keeps_six_digits(real_files: list[Path]) -> None:
    # every number in the files survives MeV -> float32 GeV -> MeV -> %g
    for path in real_files:
        for line in path.read_text().splitlines()[:300]:
            for field in line.replace(",", ";").split(";")[2:]:
                if field and field not in {"j", "b", "e-", "e+", "m-", "m+", "g"}:
                    x = float(field)
                    mev = float(np.float32(x / 1000)) * 1000
                    angle = float(np.float32(x))
                    assert f"{mev:g}" == field or f"{angle:g}" == field


def test_chunks_exact_and_streaming(real_files: list[Path]) -> None:
    path = real_files[1]  # 4096 events
    sizes = [len(c) for c in darkmachines.iter_read(path, chunk_size=1000, block_bytes=10_000)]
    assert sizes == [1000, 1000, 1000, 1000, 96]
    whole = read_events(path)
    again = Events.concatenate(list(darkmachines.iter_read(path, chunk_size=333, block_bytes=4096)))
    assert again.equals(whole)


def test_many_files_and_globs(real_files: list[Path], data_dir: Path) -> None:
    events = read_events([str(data_dir / "*_chan1*.csv")])
    assert len(events) == 1000 + 4096 + 1130 + 1581 + 4111 + 2822
    assert "njets" in events.process_names and "monotop_200_A" in events.process_names


def test_fast_and_slow_agree_on_real_files(real_files: list[Path]) -> None:
    for path in real_files:
        block = path.read_bytes()
        fast = parse_fast(block)
        assert fast is not None, path.name
        assert_parsed_equal(fast, parse_slow(block, path=str(path)))


def test_last_line_without_newline_and_empty_lines(tmp_path: Path, real_files: list[Path]) -> None:
    lines = real_files[0].read_bytes().splitlines(keepends=True)[:5]
    path = tmp_path / "a.csv"
    path.write_bytes(b"".join(lines[:2]) + b"\n" + b"".join(lines[2:]).rstrip(b"\n"))
    events = read_events(path)
    assert len(events) == 5
    reference = tmp_path / "b.csv"
    reference.write_bytes(b"".join(lines))
    assert events.equals(read_events(reference))


def test_crlf_line_endings_are_read(tmp_path: Path, real_files: list[Path]) -> None:
    lines = real_files[0].read_bytes().splitlines()[:20]
    path = tmp_path / "crlf.csv"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    ref = tmp_path / "lf.csv"
    ref.write_bytes(b"\n".join(lines) + b"\n")
    assert read_events(path).equals(read_events(ref))


def test_objects_outside_nominal_cuts_accepted(tmp_path: Path) -> None:
    path = tmp_path / "wide.csv"
    path.write_text("1;sig;1;5000;0.5;j,1e+07,8000,4.96,-3.14159;g,10000,9000,-0.1,3.14159;\n")
    events = read_events(path)
    assert events.p4[0, 0, 2] == np.float32(4.96)
    assert events.p4[0, 1, 1] == np.float32(9.0)


def test_too_many_objects(tmp_path: Path, real_files: list[Path]) -> None:
    path = real_files[0]
    n_obj = read_events(path).n_objects
    with pytest.raises(Exception, match=r"field objects: expected at most max_objects=5"):
        read_events(path, max_objects=5)
    report: dict = {}
    kept = read_events(path, max_objects=5, on_error="skip", report=report)
    assert len(kept) == int((n_obj <= 5).sum())
    assert report["skipped"] == int((n_obj > 5).sum())
    assert report["skipped_by_reason"] == {"too many objects": report["skipped"]}
    # the vectorised path skips exactly as the per-line parser does
    slow_report: dict = {}
    slow = parse_slow(path.read_bytes(), path=str(path), max_objects=5, on_error="skip",
                      report=slow_report)
    assert len(slow) == len(kept)
    assert slow_report["first_errors"] == report["first_errors"]
    report = {}
    with pytest.warns(UserWarning, match="more than max_objects=5"):
        cut = read_events(path, max_objects=5, truncate=True, report=report)
    assert len(cut) == len(n_obj) and cut.max_objects == 5
    assert report["truncated"] == int((n_obj > 5).sum())
    full = read_events(path)
    assert np.array_equal(cut.types, full.types[:, :5])
    assert np.array_equal(cut.p4, full.p4[:, :5])


def test_write_sorts_and_skips_padding(tmp_path: Path) -> None:
    types = np.array([[6, 0, 1, 2]], np.int8)  # m+, pad, j, b -> written j/b by pT, then m+
    p4 = np.zeros((1, 4, 4), np.float32)
    p4[0, 0] = [50, 40, 0.1, 0.2]
    p4[0, 2] = [100, 60, 0.3, 0.4]
    p4[0, 3] = [200, 70, 0.5, 0.6]
    ev = Events.from_arrays(types=types, p4=p4, met=np.array([12.5]), met_phi=np.array([-1.0]),
                            event_id=np.array([7]), process="x", weight=0.25)
    text = darkmachines.format_events(ev)
    assert text == "7;x;0.25;12500;-1;b,200000,70000,0.5,0.6;j,100000,60000,0.3,0.4;m+,50000,40000,0.1,0.2;\n"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"met": np.array([np.nan])}, "field MET of entry 0 .*expected a finite number"),
        ({"weight": np.array([np.inf])}, "field weight of entry 0 .*expected a finite number"),
        ({"types": np.array([[1, 9]], np.int8)}, "field object 2 type of entry 0"),
        ({"process": "a\tb"}, "cannot be written"),
        ({"process": "a;b"}, "cannot be written"),
    ],
)
def test_write_rejects_bad_values(tmp_path: Path, change: dict, message: str) -> None:
    args = {"types": np.ones((1, 2), np.int8), "p4": np.ones((1, 2, 4), np.float32),
            "met": np.array([1.0]), "met_phi": np.array([0.0])} | change
    ev = Events.from_arrays(**args)
    out = tmp_path / "bad.csv"
    with pytest.raises(ValueError, match=message):
        write_events(out, ev)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_blocks_bound_memory(real_files: list[Path]) -> None:
    from fastmc.io.darkmachines import _blocks

    data = real_files[0].read_bytes()
    longest = max(len(line) for line in data.splitlines(keepends=True))
    with open(real_files[0], "rb") as fh:
        blocks = list(_blocks(fh, 5000))
    assert b"".join(b for b, _ in blocks) == data
    assert max(len(b) for b, _ in blocks) <= 5000 + longest
    # the line count before each block is right
    assert [before for _, before in blocks] == list(
        np.cumsum([0] + [b.count(b"\n") for b, _ in blocks[:-1]])
    )
