"""The command line's help and output conventions (issue 17): one style for every command."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.cli._help import EXAMPLES

runner = CliRunner()
GROUP = typer.main.get_command(app)
COMMANDS = sorted(GROUP.commands)
_BOX = "│╭╮╰╯─┬┴┼├┤"


def _help(args: list[str], width: int) -> str:
    res = runner.invoke(app, [*args, "-h"], terminal_width=width, env={"COLUMNS": str(width)})
    assert res.exit_code == 0, res.output
    return res.output


def _words(text: str) -> set[str]:
    return set(text.translate({ord(c): " " for c in _BOX}).split())


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_at_80_columns_breaks_no_word(command: list[str]) -> None:
    narrow, wide = _help(command, 80), _help(command, 250)
    assert max(len(line) for line in narrow.splitlines()) <= 80
    # a word cut by the line end would leave fragments that the wide rendering does not have
    broken = _words(narrow) - _words(wide)
    assert not broken, f"words broken at 80 columns: {sorted(broken)}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_style(command: str) -> None:
    text = _help([command], 250)
    assert not re.search(r"<(int|str|float|bool|path|list\[[^\]]*\])", text), text
    assert "(default" not in text, "defaults are shown one way: [default: X]"
    assert "Examples:" in text
    for example in EXAMPLES[command]:
        assert example in " ".join(text.split())


@pytest.mark.parametrize("command", COMMANDS)
def test_examples_parse(command: str) -> None:
    """Every example names options the command has, with valid values (nothing is run)."""
    assert EXAMPLES.get(command), f"no examples for {command}"
    cmd = GROUP.commands[command]
    for example in EXAMPLES[command]:
        args = shlex.split(example.split(" > ")[0])
        assert args[:2] == ["fastmc", command]
        ctx = cmd.make_context(command, args[2:])
        assert ctx.params is not None


def test_h_is_help_and_python_m_fastmc(tmp_path: Path) -> None:
    assert "Usage: fastmc simulate" in _help(["simulate"], 100)
    res = _run("--help", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "Usage:" in res.stdout and "simulate" in res.stdout
    assert res.stderr == ""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastmc", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "COLUMNS": "80"})


def test_requested_output_on_stdout_diagnostics_on_stderr(tmp_path: Path) -> None:
    from fastmc.events import Events
    from fastmc.io import write_events

    listing = _run("simulate", "--list", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "ttbar" in listing.stdout and listing.stderr == ""
    assert "chan1" not in listing.stdout.split("Dark Machines IDs")[0]  # compact table

    import numpy as np

    n = 30
    ev = Events.from_arrays(
        types=np.tile(np.array([[1, 0]], np.int8), (n, 1)),
        p4=np.tile(np.array([[[120.0, 100.0, 0.5, 0.1], [0, 0, 0, 0]]], np.float32), (n, 1, 1)),
        met=np.full(n, 50.0), met_phi=np.zeros(n), process="ttbar",
    )
    write_events(tmp_path / "e.parquet", ev)
    info = _run("info", "e.parquet", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["events"] == n  # stdout is exactly the JSON asked for

    bad = _run("info", "missing.parquet", cwd=tmp_path)
    assert bad.returncode != 0
    assert bad.stdout == "" and "missing.parquet" in bad.stderr


def test_model_help_names_the_built_in_models() -> None:
    from fastmc.cli.models import BUILTIN_MODELS
    from fastmc.models.base import available_models

    assert set(BUILTIN_MODELS) <= set(available_models())
    text = " ".join(_help(["train"], 250).split())
    assert all(name in text for name in BUILTIN_MODELS)


@pytest.mark.parametrize(
    ("args", "bad"),
    [
        (["train", "STORE", "-o", "OUT", "--model", "gan"], "'gan' is not one of"),
        (["train", "STORE", "-o", "OUT", "--flow-mode", "spline"], "'spline' is not one of"),
        (["train", "STORE", "-o", "OUT", "--device", "gpu"], "'gpu' is not one of"),
        (["generate", "MODEL", "-n", "10", "-o", "OUT.parquet", "--prior", "flat"], "'flat'"),
        (["generate", "MODEL", "-n", "10", "-o", "OUT.parquet", "--channel", "chan9"], "'chan9'"),
        (["generate", "MODEL", "-n", "0", "-o", "OUT.parquet"], "greater than or equal to 1"),
        (["generate", "MODEL", "-n", "5", "-o", "OUT.txt.bz2", "--device", "tpu"], "'tpu'"),
        (["fit-prior", "MODEL", "--prior", "kde"], "'kde' is not one of"),
        (["simulate", "ttbar", "-n", "5", "-o", "OUT.csv", "--channel", "chan7"], "'chan7'"),
    ],
)
def test_choices_validated_before_any_work(args: list[str], bad: str, tmp_path: Path) -> None:
    """A bad value of a fixed option is a usage error (exit 2) before anything is read,
    started or written: the paths here do not even exist."""
    args = [str(tmp_path / a) if a.isupper() or a.startswith("OUT") else a for a in args]
    res = runner.invoke(app, args, terminal_width=200)
    assert res.exit_code == 2, res.output
    assert bad in " ".join(res.output.replace("│", " ").split())
    assert list(tmp_path.iterdir()) == []


def test_generate_checks_the_output_extension_first(tmp_path: Path) -> None:
    res = runner.invoke(app, ["generate", str(tmp_path / "no-model"), "-n", "5", "-o",
                              str(tmp_path / "x.txt.bz2")], terminal_width=200)
    assert res.exit_code == 1
    assert "extension" in res.output and "no-model" not in res.output


@pytest.mark.parametrize("details", [False, True])
def test_simulate_list_fits_80_columns_without_broken_words(details: bool) -> None:
    args = ["simulate", "--list", *(["--details"] if details else [])]
    narrow = runner.invoke(app, args, env={"COLUMNS": "80"})
    wide = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert narrow.exit_code == 0 and wide.exit_code == 0
    assert max(len(line.rstrip()) for line in narrow.stdout.splitlines()) <= 80
    assert not _words(narrow.stdout) - _words(wide.stdout)
    assert ("generator cuts:" in narrow.stdout) == details
    assert len(narrow.stdout.splitlines()) < (200 if details else 45)  # compact by default
