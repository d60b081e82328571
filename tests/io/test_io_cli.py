"""``fastmc convert`` and ``fastmc info`` through the typer app."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fastmc.cli import app

runner = CliRunner()


def flat(text: str) -> str:
    """Output with rich's line wrapping undone."""
    return " ".join(text.split())


def test_convert_every_real_file_byte_identical(real_files: list[Path], tmp_path: Path) -> None:
    for path in real_files:
        out = tmp_path / path.name
        result = runner.invoke(app, ["convert", str(path), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("middle", ["x.parquet", "x.root", "x.csv.gz"])
def test_convert_through_other_formats(real_files: list[Path], tmp_path: Path, middle: str) -> None:
    src = real_files[2]
    mid, out = tmp_path / middle, tmp_path / "back.csv"
    assert runner.invoke(app, ["convert", str(src), "-o", str(mid)]).exit_code == 0
    result = runner.invoke(app, ["convert", str(mid), "-o", str(out), "--chunk-size", "100"])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == src.read_bytes()


def test_convert_malformed_line_fails_without_output(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["convert", str(data_dir / "real_small.csv"), "-o", str(out)])
    assert result.exit_code == 1
    assert "real_small.csv:26: field end of line: expected ';'" in flat(result.output)
    assert list(tmp_path.iterdir()) == []


def test_convert_skip_writes_the_rest(data_dir: Path, tmp_path: Path) -> None:
    src = data_dir / "real_small.csv"
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["convert", str(src), "-o", str(out), "--on-error", "skip"])
    assert result.exit_code == 0, result.output
    assert "skipped 1 malformed line(s) (missing final ';': 1)" in flat(result.output)
    good = b"".join(src.read_bytes().splitlines(keepends=True)[:25])
    assert out.read_bytes() == good


def test_convert_bad_options(real_files: list[Path], tmp_path: Path) -> None:
    src = str(real_files[0])
    result = runner.invoke(app, ["convert", src, "-o", str(tmp_path / "x.txt.bz2")])
    assert result.exit_code == 1 and "cannot tell the format" in flat(result.output)
    result = runner.invoke(app, ["convert", src, "-o", str(tmp_path / "x.csv"), "--on-error", "x"])
    assert result.exit_code == 1 and "--on-error" in result.output
    result = runner.invoke(app, ["convert", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "y.csv")])
    assert result.exit_code == 1 and "no such file" in result.output
    result = runner.invoke(
        app, ["convert", src, "-o", str(tmp_path / "x.csv"), "--max-objects", "3"]
    )
    assert result.exit_code == 1 and "expected at most max_objects=3" in flat(result.output)
    assert list(tmp_path.iterdir()) == []


def independent_count(paths: list[Path]) -> dict:
    """Events per process and objects per type, counted with plain string operations."""
    procs: Counter[str] = Counter()
    objects: Counter[str] = Counter()
    maxima: Counter[str] = Counter()
    for path in paths:
        for line in path.read_text().splitlines():
            fields = line.split(";")
            procs[fields[1]] += 1
            kinds = Counter(obj.split(",")[0] for obj in fields[5:] if obj)
            objects.update(kinds)
            for kind, count in kinds.items():
                maxima[kind] = max(maxima[kind], count)
    return {"processes": procs, "objects": objects, "max": maxima}


def test_info_agrees_with_independent_count(real_files: list[Path]) -> None:
    result = runner.invoke(app, ["info", "--json", *map(str, real_files)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    truth = independent_count(real_files)
    assert summary["events"] == sum(truth["processes"].values()) == 14740
    assert {p: e["events"] for p, e in summary["processes"].items()} == dict(truth["processes"])
    for kind, entry in summary["objects"].items():
        if kind == "all":
            assert entry["total"] == sum(truth["objects"].values())
            continue
        assert entry["total"] == truth["objects"][kind], kind
        assert entry["max"] == truth["max"][kind], kind
    # every file passed the channel-1 selection (HT >= 600, MET >= 200 GeV) when it was made
    for selection in ("chan1", "chan3", "storage"):
        assert summary["selections"][selection]["share"] == 1.0, selection
    assert summary["selections"]["chan2a"]["events"] == 0
    assert summary["met_quantiles"]["0"] >= 200.0
    assert summary["ht_quantiles"]["0"] >= 600.0


def test_info_tables(real_files: list[Path]) -> None:
    result = runner.invoke(app, ["info", str(real_files[0])])
    assert result.exit_code == 0, result.output
    text = result.stdout
    for word in ("njets", "objects per event", "MET and HT quantiles (GeV)", "chan2b", "storage"):
        assert word in text


def test_info_event_store(real_files: list[Path], tmp_path: Path) -> None:
    from fastmc.data.store import prepare

    store = prepare(real_files[:2], tmp_path / "store")
    result = runner.invoke(app, ["info", str(store)])
    assert result.exit_code == 0, result.output
    assert "glgl1400_neutralino1100" in result.stdout
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["info", str(empty)])
    assert result.exit_code == 1 and "without meta.json" in flat(result.output)


def test_help_states_units_and_defaults() -> None:
    for command in ("convert", "info"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0
        text = flat(result.output)
        assert "GeV" in text and "default" in text


def test_atomic_output_gets_ordinary_permissions(tmp_path):
    import os

    from fastmc.io.atomic import atomic_path

    umask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("hi")
    finally:
        os.umask(umask)
    assert (tmp_path / "x.txt").stat().st_mode & 0o777 == 0o644
