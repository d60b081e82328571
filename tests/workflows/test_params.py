"""Physical parameters: point names, the range guard, and the round trip of parameters through
simulate -> prepare -> train -> generate (issue 14)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.data.store import open_store, prepare
from fastmc.errors import ConfigError
from fastmc.io import read_events, write_events
from fastmc.models.base import build_model
from fastmc.points import ProcessSpace, point_name, split_name
from fastmc.workflows.conditioning import process_plan
from fastmc.workflows.generate import generate
from modelhelpers import TINY, TINY_CONFIGS, make_events

POINTS = ("gluino_01@m_gluino=1000", "gluino_01@m_gluino=1400", "gluino_01@m_gluino=1800", "ttbar")


def test_point_names_round_trip() -> None:
    assert point_name("gluino_01", {"m_gluino": 1000.0, "m_neutralino": 100}) == \
        "gluino_01@m_gluino=1000,m_neutralino=100"
    assert split_name("gluino_01@m_gluino=1000,m_neutralino=100") == \
        ("gluino_01", {"m_gluino": 1000.0, "m_neutralino": 100.0})
    assert split_name("ttbar") == ("ttbar", {})
    with pytest.raises(ConfigError, match="FAMILY@KEY=VALUE"):
        split_name("gluino_01@m_gluino")


def test_labels_interpolate_between_points() -> None:
    space = ProcessSpace.from_names(POINTS)
    assert space.families == ("gluino_01", "ttbar") and space.param_names == ("m_gluino",)
    labels = space.labels()
    assert labels.shape == (4, 3)
    mid = space.label_row("gluino_01", {"m_gluino": 1600.0})
    np.testing.assert_allclose(mid, (labels[1] + labels[2]).numpy() / 2, atol=1e-6)
    assert labels[3].tolist() == [0.0, 1.0, 0.0]  # ttbar: no parameter


def test_range_guard_refuses_unless_forced() -> None:
    space = ProcessSpace.from_names(POINTS)
    assert space.resolve("gluino_01", {"m_gluino": 1600}) == ("gluino_01@m_gluino=1600", {"m_gluino": 1600.0})
    with pytest.raises(ConfigError, match=r"m_gluino=2500 is outside the trained range of gluino_01 "
                                          r"\(1000 to 1800 GeV, points 1000, 1400, 1800\).*--force"):
        space.resolve("gluino_01", {"m_gluino": 2500})
    assert space.resolve("gluino_01", {"m_gluino": 2500}, force=True)[0] == "gluino_01@m_gluino=2500"
    with pytest.raises(ConfigError, match="choose one with --param m_gluino=VALUE"):
        space.resolve("gluino_01", {})
    with pytest.raises(ConfigError, match="not trained over m_stop"):
        space.resolve("gluino_01", {"m_stop": 900})
    with pytest.raises(ConfigError, match="ttbar was not trained over m_gluino; it has no parameters"):
        space.resolve("ttbar", {"m_gluino": 900})
    with pytest.raises(ConfigError, match="not one of the model's processes: gluino_01, ttbar"):
        space.resolve("stop_02", {"m_stop": 900})


def test_prepare_names_points_and_keeps_params(tmp_path: Path) -> None:
    """Files carrying fastmc simulate metadata: one process per parameter point."""
    paths = []
    for i, m in enumerate((1000.0, 1800.0)):
        ev = make_events(50, seed=i, process="gluino_01")
        ev = dataclasses.replace(ev, meta={"process": "gluino_01",
                                           "params": {"m_gluino": m, "m_neutralino": 100.0}})
        paths.append(tmp_path / f"g{i}.parquet")
        write_events(paths[-1], ev)
    plain = dataclasses.replace(make_events(40, seed=5, process="ttbar"),
                                meta={"process": "ttbar", "params": {"pthat_min": 0.0}})
    write_events(tmp_path / "tt.parquet", plain)
    st = open_store(prepare([*paths, tmp_path / "tt.parquet"], tmp_path / "store", seed=0))
    assert st.processes == ("gluino_01@m_gluino=1000", "gluino_01@m_gluino=1800", "ttbar")
    assert st.meta["process_params"]["gluino_01@m_gluino=1800"] == {"m_gluino": 1800.0, "m_neutralino": 100.0}
    assert st.meta["process_params"]["ttbar"] == {"pthat_min": 0.0}
    assert st.meta["sources"][0]["params"] == {"m_gluino": 1000.0, "m_neutralino": 100.0}
    assert st.meta["sources"][1]["events_by_process"] == {"gluino_01@m_gluino=1800": 50}


def test_generated_events_carry_their_training_parameters(tmp_path: Path) -> None:
    """A model of one process simulated with a generator parameter (ttbar, pthat_min=0)
    writes that parameter into its output, so that prepare files its events with the
    simulated ones under one process name (before: "ttbar" and "ttbar@pthat_min=0")."""
    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    sim = tmp_path / "tt.parquet"
    write_events(sim, dataclasses.replace(make_events(120, seed=3, process="ttbar"),
                                          meta={"process": "ttbar", "params": {"pthat_min": 0.0}}))
    store = prepare([sim], tmp_path / "store", val=0.2, test=0.0, seed=0)
    train_from_store(store, tmp_path / "model", model_name="beta-vae", model_config=TINY_CONFIGS["beta-vae"],
                     config=TrainConfig(epochs=1, batch_size=16, batches_per_epoch=2, val_events=10,
                                        device="cpu"))
    for process in (None, "ttbar"):  # the training mixture of one process, or it by name
        out = tmp_path / f"gen_{process}.parquet"
        generate(tmp_path / "model", out, 40, process=process, device="cpu")
        ev = read_events(out)
        assert ev.meta["params"] == {"pthat_min": 0.0} and ev.meta["mode"] == "process"
    both = open_store(prepare([sim, out], tmp_path / "both", val=0.2, test=0.0, seed=0))
    assert both.processes == ("ttbar",) and both.meta["process_params"]["ttbar"] == {"pthat_min": 0.0}
    # a two-process model's mixture has no one parameter point
    model = build_model("beta-vae", TINY, processes=("ttbar", "z_jets"))
    assert process_plan(model).params == {}


def test_models_without_parameters_refuse_param() -> None:
    model = build_model("beta-vae", TINY, processes=("ttbar", "z_jets"))
    with pytest.raises(ConfigError, match="not conditioned on physical parameters"):
        process_plan(model, process="ttbar", params={"m_gluino": 1000})
    with pytest.raises(ConfigError, match="--param sets the parameters of one process"):
        process_plan(model, params={"m_gluino": 1000})


@pytest.fixture(scope="module")
def simulated_points(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """gluino_01 simulated at m_gluino = 1000 and 1800 GeV (30 events each, ~6 s of Pythia)."""
    pytest.importorskip("pythia8mc")
    pytest.importorskip("fastjet")
    from fastmc.simulate import simulate_to_file

    root = tmp_path_factory.mktemp("points")
    for m in (1000, 1800):
        simulate_to_file(root / f"g{m}.parquet", "gluino_01", 30, seed=1, batch_size=30,
                         params={"m_gluino": m, "m_neutralino": 100})
    return root


@pytest.mark.parametrize("model_name", ["beta-vae", "flow"])
def test_parameters_round_trip_simulate_prepare_train_generate(simulated_points: Path,
                                                               tmp_path: Path,
                                                               model_name: str) -> None:
    import torch

    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    torch.set_num_threads(1)
    assert read_events(simulated_points / "g1800.parquet").meta["params"] == \
        {"m_gluino": 1800.0, "m_neutralino": 100.0}
    store = prepare(sorted(simulated_points.glob("g*.parquet")), tmp_path / "store", val=0.2,
                    test=0.0, seed=0)
    assert open_store(store).processes == ("gluino_01@m_gluino=1000", "gluino_01@m_gluino=1800")
    model_dir = tmp_path / "model"
    if model_name == "flow":
        pytest.importorskip("zuko")
    train_from_store(store, model_dir, model_name=model_name, model_config=TINY_CONFIGS[model_name],
                     config=TrainConfig(epochs=1, batch_size=16, batches_per_epoch=2,
                                        val_events=10, device="cpu"))
    out = tmp_path / "g1400.parquet"
    rep = generate(model_dir, out, 50, process="gluino_01", params={"m_gluino": 1400},
                   device="cpu")
    ev = read_events(out)
    assert set(ev.process) == {"gluino_01@m_gluino=1400"} and rep.process == "gluino_01@m_gluino=1400"
    # the fixed parameter comes from the simulated files, the varied one from the request
    assert ev.meta["params"] == {"m_gluino": 1400.0, "m_neutralino": 100.0}
    assert ev.meta["mode"] == "point" and ev.meta["forced"] is False
    assert ev.meta["model"] == model_name
    # weight: sigma x 10/fb interpolated log-linearly between the simulated points
    xs = [read_events(simulated_points / f"g{m}.parquet").weight.sum() for m in (1000, 1800)]
    np.testing.assert_allclose(ev.weight.sum(), np.sqrt(xs[0] * xs[1]), rtol=1e-4)
    # the range guard, through the command line
    runner = CliRunner()
    res = runner.invoke(app, ["generate", str(model_dir), "-n", "5", "-o", str(tmp_path / "x.parquet"), "--overwrite",
                              "--process", "gluino_01", "--param", "m_gluino=2200"])
    assert res.exit_code == 1 and "outside the trained range" in res.output and "--force" in res.output
    res = runner.invoke(app, ["generate", str(model_dir), "-n", "5", "-o", str(tmp_path / "x.parquet"), "--overwrite",
                              "--process", "gluino_01", "--param", "m_gluino=2200", "--force",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert read_events(tmp_path / "x.parquet").meta["forced"] is True
    res = runner.invoke(app, ["generate", str(model_dir), "-n", "5", "-o", str(tmp_path / "x.parquet"), "--overwrite",
                              "--process", "gluino_01", "--param", "m_gluino"])
    assert res.exit_code == 1 and "KEY=VALUE" in res.output
