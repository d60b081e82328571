"""The one overwrite policy (issue 15): check_output refuses an output that exists (without
overwrite), that is an input or holds one, a folder where a file goes, an unwritable folder;
expand_paths refuses a file named twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fastmc.errors import OutputError
from fastmc.io import check_output, expand_paths, write_events
from fastmc.io.atomic import atomic_path


def test_existing_file_needs_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "o.csv"
    assert check_output(out) == out
    out.write_text("x")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        check_output(out)
    assert check_output(out, overwrite=True) == out


def test_output_is_an_input(tmp_path: Path) -> None:
    a = tmp_path / "a.csv"
    a.write_text("x")
    for overwrite in (False, True):
        with pytest.raises(OutputError, match="also an input"):
            check_output(tmp_path / "." / "a.csv", inputs=[a], overwrite=overwrite)


def test_folder_output_holding_an_input(tmp_path: Path) -> None:
    (tmp_path / "S").mkdir()
    a = tmp_path / "S" / "a.csv"
    a.write_text("x")
    with pytest.raises(OutputError, match="holds the input"):
        check_output(tmp_path / "S", inputs=[a], overwrite=True, kind="folder")


def test_folder_where_a_file_goes(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder"):
        check_output(tmp_path, overwrite=True)
    with pytest.raises(IsADirectoryError), atomic_path(tmp_path):
        pass


def test_file_where_a_folder_goes(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        check_output(f, overwrite=True, kind="folder")
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_output(f / "sub" / "o.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_folder(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            check_output(ro / "o.csv")
    finally:
        ro.chmod(0o755)


def test_file_named_twice(tmp_path: Path, real_files: list[Path]) -> None:
    with pytest.raises(ValueError, match="given more than once"):
        expand_paths([real_files[0], real_files[0].parent / "." / real_files[0].name])


def test_writer_into_folder_path_leaves_nothing(tmp_path: Path) -> None:
    from fastmc.events import Events

    (tmp_path / "d.csv").mkdir()
    with pytest.raises(IsADirectoryError):
        write_events(tmp_path / "d.csv", Events.empty())
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_output_permissions(tmp_path: Path, mask: int) -> None:
    import stat

    from fastmc.events import Events

    old = os.umask(mask)
    try:
        write_events(tmp_path / "e.parquet", Events.empty())
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "e.parquet").stat().st_mode) == 0o666 & ~mask
