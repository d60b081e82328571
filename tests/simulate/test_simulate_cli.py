"""``fastmc simulate``: catalogue listing, errors, output that fastmc reads back, --jobs 2."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fastmc.cli import app

pytestmark = pytest.mark.simulate
runner = CliRunner()


def test_list_prints_the_catalogue():
    res = runner.invoke(app, ["simulate", "--list"], terminal_width=200)
    assert res.exit_code == 0, res.output
    for name in ("ttbar", "njets", "stop_02", "gluino_01", "Zp_01", "wtop", "4top"):
        assert name in res.output
    res = runner.invoke(app, ["simulate", "--list", "--details"], terminal_width=200)
    assert res.exit_code == 0, res.output
    assert "generator cuts:" in res.output and "MadGraph" in res.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wtop", "-n", "5", "-o", "x.csv"], "not supported"),
        (["nope", "-n", "5", "-o", "x.csv"], "unknown process"),
        (["ttbar", "-n", "5", "-o", "x.csv", "--param", "m_stop"], "KEY=VALUE"),
        (["ttbar", "-n", "5", "-o", "x.csv", "--param", "m_stop=1"], "no parameter"),
        (["ttbar", "-n", "5", "-o", "x.txt.bz2"], "extension"),
    ],
)
def test_errors(args, message, tmp_path):
    res = runner.invoke(app, ["simulate", *args], terminal_width=300)
    assert res.exit_code == 1
    assert message in " ".join(res.output.split())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ttbar", "-n", "5", "-o", "x.csv", "--channel", "chan7"], "'chan7' is not one of"),
        (["ttbar", "-n", "0", "-o", "x.csv"], "greater than or equal to 1"),
        (["ttbar", "-n", "5", "--jobs", "0", "-o", "x.csv"], "greater than or equal to 1"),
    ],
)
def test_usage_errors_before_any_work(args, message, tmp_path):
    res = runner.invoke(app, ["simulate", *args], terminal_width=300)
    assert res.exit_code == 2  # a usage error: nothing started
    assert message in " ".join(res.output.replace("│", " ").split())
    assert "simulate ttbar" not in res.output  # no progress bar


def test_jobs2_is_deterministic_and_readable(tmp_path):
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from fastmc.io import read_events

    paths = [tmp_path / "a.csv", tmp_path / "b.csv"]
    for path in paths:
        res = runner.invoke(
            app,
            ["simulate", "ttbar", "-n", "24", "--seed", "3", "--jobs", "2", "-o", str(path),
             "--batch-size", "20"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
    assert paths[0].read_bytes() == paths[1].read_bytes()
    ev = read_events(paths[0])
    assert len(ev) == 24
    workers = ev.event_id // 10**12
    assert list(workers) == [0] * 12 + [1] * 12  # worker 0's events, then worker 1's
    assert len(np.unique(ev.event_id)) == 24
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left
