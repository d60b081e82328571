"""The Python API (issue 17): the notebook of docs/api.md runs as written; import stays light."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_import_fastmc_is_light_and_silent() -> None:
    code = (
        "import sys, fastmc\n"
        "heavy = [m for m in ('torch', 'pandas', 'awkward', 'fastmc.workflows') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert callable(fastmc.read_events) and callable(fastmc.evaluate)\n"
        "assert set(fastmc.__all__) <= set(dir(fastmc))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and res.stderr == ""


def test_api_names() -> None:
    import fastmc

    for name in ("read_events", "write_events", "simulate", "prepare", "train", "load_model",
                 "generate", "refine", "evaluate", "Events"):
        assert name in fastmc.__all__
        assert getattr(fastmc, name).__doc__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fastmc.nope  # noqa: B018


def test_simulate_and_evaluate_are_callable_packages() -> None:
    """``fastmc.evaluate`` is both the API function and the subpackage (in either order)."""
    code = (
        "import fastmc\n"
        "f = fastmc.evaluate\n"
        "import fastmc.evaluate.report, fastmc.simulate.processes\n"
        "assert fastmc.evaluate is f and callable(fastmc.evaluate) and callable(fastmc.simulate)\n"
        "assert fastmc.evaluate.report.Report and 'ttbar' in fastmc.simulate.CATALOGUE\n"
        "import fastmc.workflows.api as api\n"
        "assert callable(fastmc.train) and fastmc.train is api.train\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_read_events_takes_paths_events_and_stores(tmp_path: Path) -> None:
    import numpy as np

    import fastmc

    n = 40
    ev = fastmc.Events.from_arrays(
        types=np.tile(np.array([[1, 0]], np.int8), (n, 1)),
        p4=np.tile(np.array([[[120.0, 100.0, 0.5, 0.1], [0, 0, 0, 0]]], np.float32), (n, 1, 1)),
        met=np.linspace(10, 100, n), met_phi=np.zeros(n), process="ttbar",
    )
    assert fastmc.read_events(ev) is ev
    path = fastmc.write_events(tmp_path / "e.parquet", ev)
    assert fastmc.read_events(path).equals(ev)
    store = fastmc.prepare(ev, tmp_path / "store", val=0.25, test=0.25, seed=0)
    assert len(fastmc.read_events(store)) == 10  # the test split
    assert len(fastmc.read_events(store, split="train")) == 20


def test_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    pytest.importorskip("sklearn")
    pytest.importorskip("pandas")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(DOC), "exec"), namespace)
    report, generated = namespace["report"], namespace["generated"]
    assert len(generated) == 500
    assert "<" in report._repr_html_()
    assert 0.0 <= report.summary[0].auc <= 1.0
    assert (tmp_path / "model" / "config.json").is_file()
    assert len(namespace["obs"]) == 500 and namespace["m12"] is not None
