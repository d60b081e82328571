"""The flow conditioned on physical parameters: parameter points of a family, a point never
simulated, the range guard and the metadata of its output (issue 14)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch, cat_batches
from fastmc.data.store import open_store, prepare
from fastmc.errors import ConfigError
from fastmc.io import read_events, write_events
from fastmc.models.base import Condition, build_model
from fastmc.models.modeldir import load_model, save_model
from fastmc.workflows.conditioning import process_plan
from fastmc.workflows.generate import generate
from modelhelpers import TINY_CONFIGS, fit_steps, make_events

pytest.importorskip("zuko")

POINTS = ("g@m=1000", "g@m=1400", "g@m=1800")


def _jets(raw: RawBatch) -> torch.Tensor:
    return ((raw.types == 1) | (raw.types == 2)).sum(dim=1)


def _by_jets() -> RawBatch:
    """m=1000: events with at most 2 jets, m=1400: 3 jets, m=1800: 4 or more."""
    raw = RawBatch.from_events(make_events(900, seed=3))
    n = _jets(raw)
    raw.process = torch.where(n <= 2, 0, torch.where(n == 3, 1, 2))
    return raw


def _met_scaled() -> RawBatch:
    """The same pattern distribution at every point, MET x (m / 1000 GeV)^2."""
    parts = []
    for i, m in enumerate((1000, 1400, 1800)):
        ev = make_events(200, seed=10 + i)
        ev = dataclasses.replace(ev, met=ev.met * (m / 1000) ** 2)
        raw = RawBatch.from_events(ev)
        raw.process = torch.full((len(raw),), i, dtype=torch.long)
        parts.append(raw)
    return cat_batches(parts)


def test_a_point_never_simulated_mixes_the_patterns_of_its_two_neighbours() -> None:
    torch.manual_seed(0)
    model = build_model("flow", TINY_CONFIGS["flow"], processes=POINTS)
    model.fit_data(_by_jets())
    assert model.param_conditional and model.param_dim == 1
    assert model.process_embed.num_embeddings == 1  # one family: the embedding is shared
    plain = build_model("flow", TINY_CONFIGS["flow"], processes=("a", "b", "c"))
    assert model.context_dim == plain.context_dim + 1 and not plain.param_conditional
    gen = torch.Generator().manual_seed(1)
    # 1700 GeV: 1/4 of the 1400 point's patterns (3 jets), 3/4 of the 1800 point's (>= 4)
    out = model.sample(2000, condition=Condition(process="g", params={"m": 1700}), generator=gen)
    jets = _jets(out)
    assert int(jets.min()) >= 3
    share = float((jets == 3).double().mean())
    assert abs(share - 0.25) < 4 * (0.25 * 0.75 / 2000) ** 0.5, share
    assert out.process.tolist() == [2] * 2000  # the nearest trained point
    # a trained point asked for by its parameters: its own patterns only
    out = model.sample(300, condition=Condition(process="g", params={"m": 1000}), generator=gen)
    assert int(_jets(out).max()) <= 2 and out.process.tolist() == [0] * 300
    # forced outside the range: the nearest trained point's patterns
    out = model.sample(300, condition=Condition(process="g", params={"m": 2500}), generator=gen)
    assert int(_jets(out).min()) >= 4
    with pytest.raises(ConfigError, match="not a process family of the model: g"):
        model.sample(3, condition=Condition(process="h", params={"m": 1000}), generator=gen)


def test_the_kinematics_follow_the_parameter_between_trained_points(tmp_path: Path) -> None:
    """Same patterns at every point, MET x (m/1000)^2: only the parameter input can tell the
    points apart, and the MET of 1600 (never trained) lies between 1400's and 1800's."""
    torch.manual_seed(0)
    raw = _met_scaled()
    # (the tiny flow of the contract tests is too small to learn this in 100 steps)
    model = build_model("flow", {**TINY_CONFIGS["flow"], "hidden": 64, "transforms": 2, "mode": "coupling"},
                        processes=POINTS)
    model.fit_data(raw)
    fit_steps(model, raw, 50, lr=1e-2, generator=torch.Generator().manual_seed(0))
    med = {}
    for m in (1000, 1400, 1600, 1800):
        out = model.sample(1500, condition=Condition(process="g", params={"m": m}),
                           generator=torch.Generator().manual_seed(2))
        med[m] = float(out.met.median())
    assert med[1000] < med[1400] < med[1600] < med[1800], med
    # saved and loaded: the same events at the never-simulated point
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.param_conditional
    a = model.sample(200, condition=Condition(process="g", params={"m": 1600}),
                     generator=torch.Generator().manual_seed(3))
    b = again.sample(200, condition=Condition(process="g", params={"m": 1600}),
                     generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.types, b.types)
    np.testing.assert_allclose(b.met.numpy(), a.met.numpy(), rtol=1e-5)


def test_range_guard_of_the_flow() -> None:
    model = build_model("flow", TINY_CONFIGS["flow"], processes=POINTS)
    model.fit_data(_by_jets())
    with pytest.raises(ConfigError, match=r"m=2200 is outside the trained range of g "
                                          r"\(1000 to 1800 GeV, points 1000, 1400, 1800\).*--force"):
        process_plan(model, process="g", params={"m": 2200})
    assert process_plan(model, process="g", params={"m": 2200}, force=True).label == "g@m=2200"
    with pytest.raises(ConfigError, match="choose one with --param m=VALUE"):
        process_plan(model, process="g")
    flow = build_model("flow", TINY_CONFIGS["flow"], processes=("ttbar", "z_jets"))
    with pytest.raises(ConfigError, match="not conditioned on physical parameters"):
        process_plan(flow, process="ttbar", params={"m": 1000})


def test_flow_points_through_prepare_train_generate(tmp_path: Path) -> None:
    """Files with fastmc simulate's parameter metadata (synthetic events) -> prepare -> train a
    flow -> generate a trained point (that point only) and a point never simulated."""
    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    paths = []
    for i, m in enumerate((1000.0, 1800.0)):
        ev = make_events(120, seed=20 + i, process="gluino_01")
        ev = dataclasses.replace(ev, met=ev.met * (m / 1000) ** 2,
                                 meta={"process": "gluino_01",
                                       "params": {"m_gluino": m, "m_neutralino": 100.0}})
        paths.append(tmp_path / f"g{int(m)}.parquet")
        write_events(paths[-1], ev)
    store = prepare(paths, tmp_path / "store", val=0.1, test=0.0, seed=0)
    assert open_store(store).processes == ("gluino_01@m_gluino=1000", "gluino_01@m_gluino=1800")
    model_dir = tmp_path / "model"
    train_from_store(store, model_dir, model_name="flow",
                     model_config={**TINY_CONFIGS["flow"], "mode": "coupling"},
                     config=TrainConfig(epochs=1, batch_size=32, batches_per_epoch=3,
                                        val_events=20, device="cpu"))
    assert load_model(model_dir).param_conditional
    # a trained point by its name: that point only
    ev = read_events(generate(model_dir, tmp_path / "t.parquet", 40,
                              process="gluino_01@m_gluino=1800", device="cpu").path)
    assert set(ev.process) == {"gluino_01@m_gluino=1800"} and ev.meta["mode"] == "process"
    # a point never simulated: labelled and described as that point
    rep = generate(model_dir, tmp_path / "p.parquet", 40, process="gluino_01",
                   params={"m_gluino": 1400}, device="cpu")
    ev = read_events(tmp_path / "p.parquet")
    assert set(ev.process) == {"gluino_01@m_gluino=1400"} and rep.process == "gluino_01@m_gluino=1400"
    assert ev.meta["params"] == {"m_gluino": 1400.0, "m_neutralino": 100.0}
    assert ev.meta["mode"] == "point" and ev.meta["forced"] is False and ev.meta["model"] == "flow"
    # a parameter held fixed in training may be repeated at its value, not changed
    generate(model_dir, tmp_path / "f.parquet", 5, process="gluino_01",
             params={"m_gluino": 1400, "m_neutralino": 100}, device="cpu")
    assert read_events(tmp_path / "f.parquet").meta["params"] == {"m_gluino": 1400.0,
                                                                  "m_neutralino": 100.0}
    with pytest.raises(ConfigError, match="trained with m_neutralino fixed at 100 GeV; it "
                                          "cannot generate m_neutralino=800"):
        generate(model_dir, tmp_path / "f2.parquet", 5, process="gluino_01",
                 params={"m_gluino": 1400, "m_neutralino": 800}, device="cpu")
    with pytest.raises(ConfigError, match="outside the trained range"):
        generate(model_dir, tmp_path / "x.parquet", 5, process="gluino_01",
                 params={"m_gluino": 2200}, device="cpu")
    generate(model_dir, tmp_path / "x.parquet", 5, process="gluino_01", params={"m_gluino": 2200},
             force=True, device="cpu")
    assert read_events(tmp_path / "x.parquet").meta["forced"] is True
    # the Python API takes the same conditions (in memory and to a file)
    import fastmc

    ev = fastmc.generate(model_dir, 30, process="gluino_01", params={"m_gluino": 1400},
                         where="met > 0", device="cpu", seed=3)
    assert len(ev) == 30 and set(ev.process) == {"gluino_01@m_gluino=1400"}
    with pytest.raises(ConfigError, match="outside the trained range"):
        fastmc.generate(model_dir, 5, process="gluino_01", params={"m_gluino": 2200}, device="cpu")
    out = fastmc.generate(model_dir, 12, cocktail=True, device="cpu", output=tmp_path / "c.parquet")
    assert len(read_events(out)) == 12
