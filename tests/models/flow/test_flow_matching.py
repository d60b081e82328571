"""The flow's matching mode (issue 13): conditional flow matching with a transformer over the
object slots (fastmc.models.flow.matching) behind the same patterns, parameterisation and
whole-event rejection as the spline modes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from fastmc.data.batch import RawBatch
from fastmc.errors import ConfigError
from fastmc.models import ModelDir, build_model
from fastmc.models.flow import FlowConfig, FlowModel
from fastmc.models.flow.matching import VelocityField, integrate
from modelhelpers import TINY_CONFIGS, TINY_MATCHING, assert_jets_separated, fit_steps, make_events

SETTINGS = {**TINY_MATCHING, "cfm_dim": 32, "cfm_heads": 4, "cfm_layers": 2, "max_jets": 8}


@pytest.fixture(scope="module")
def trained() -> FlowModel:
    """A matching model after 60 Adam steps on 600 synthetic events (seeded)."""
    torch.manual_seed(0)
    model = build_model("flow", SETTINGS, processes=("proc",))
    assert isinstance(model, FlowModel) and model.flow is None and model.velocity is not None
    raw = RawBatch.from_events(make_events(600, seed=4))
    model.fit_data(raw)
    def held_out() -> float:  # the same noise and times before and after training
        model.eval()
        with torch.no_grad():
            loss, _ = model.training_loss(raw, generator=torch.Generator().manual_seed(99))
        model.train()
        return float(loss)

    first = held_out()
    fit_steps(model, raw, 60, lr=3e-3, generator=torch.Generator().manual_seed(0))
    model.info["first_mse"], model.info["last_mse"] = first, held_out()
    # the synthetic events' fitted jet radius is tiny (random azimuths); the detector's 0.4
    # makes the whole-event rejection work
    model.jet_radius.fill_(0.4)
    return model.eval()


def test_config_defaults_and_validation() -> None:
    c = FlowConfig(mode="matching")
    assert (c.cfm_dim, c.cfm_layers, c.cfm_heads, c.cfm_ff_width, c.cfm_dropout) == (128, 4, 4, 512, 0.0)
    assert (c.ode_steps, c.ode_solver) == (16, "midpoint")
    assert FlowConfig(cfm_dim=64, cfm_ff=100).cfm_ff_width == 100
    with pytest.raises(ConfigError, match="cfm_heads"):
        FlowConfig(mode="matching", cfm_dim=30, cfm_heads=4)
    with pytest.raises(ValueError, match="ode_solver"):
        FlowConfig(ode_solver="heun")
    with pytest.raises(ValueError, match="ode_steps"):
        FlowConfig(ode_steps=0)


def test_training_reduces_the_loss(trained: FlowModel) -> None:
    assert trained.info["last_mse"] < 0.9 * trained.info["first_mse"]


def _field_inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    field = VelocityField(n_slots=5, context_dim=3, dim=16, layers=2, heads=2, ff=32)
    torch.nn.init.normal_(field.out.weight, generator=g)  # not the zero start: a real field
    slot_types = torch.tensor([[1, 2, 0, 3, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 7], [2, 1, 1, 4, 7]])
    present = torch.ones(4, 22, dtype=torch.bool)
    present[:, :20] = (slot_types > 0).repeat_interleave(4, dim=1)
    present[0, 2] = present[1, 2] = present[2, 18] = present[3, 2] = False  # first object's phi
    x = torch.randn(4, 22, generator=g)
    return field, x, torch.rand(4, generator=g), slot_types, torch.randn(4, 3, generator=g), present


@pytest.mark.parametrize("train", [True, False])
def test_padding_does_not_reach_present_tokens(train: bool) -> None:
    """Absent parameters (any value) and absent tokens (their embedding) leave the velocity
    of every present parameter unchanged; a present parameter does change it."""
    field, x, t, st, ctx, present = _field_inputs()
    field.train(train)
    with torch.no_grad():
        ref = field(x, t, st, ctx, present)
        noisy = torch.where(present, x, 1e3 * torch.randn_like(x))
        torch.testing.assert_close(field(noisy, t, st, ctx, present)[present], ref[present],
                                   rtol=0, atol=1e-6)
        field.type_embed.weight[0] += 50.0  # the embedding of absent slots
        torch.testing.assert_close(field(x, t, st, ctx, present)[present], ref[present],
                                   rtol=0, atol=1e-6)
        field.type_embed.weight[0] -= 50.0
        moved = x.clone()
        moved[0, 0] += 1.0  # the first jet's pT parameter of event 0
        other = field(moved, t, st, ctx, present)
    assert not torch.allclose(other[0, 4:8], ref[0, 4:8])  # seen by event 0's other tokens
    torch.testing.assert_close(other[1:][present[1:]], ref[1:][present[1:]], rtol=0, atol=1e-6)


@pytest.mark.parametrize("solver", ["euler", "midpoint", "rk4"])
def test_ode_solvers_known_answers(solver: str) -> None:
    x0 = torch.randn(7, 3, generator=torch.Generator().manual_seed(0))
    c = torch.tensor([0.5, -2.0, 3.0])
    out = integrate(lambda x, t: c.expand_as(x), x0, steps=5, solver=solver)
    torch.testing.assert_close(out, x0 + c, rtol=0, atol=1e-6)  # constant: exact
    a = torch.tensor([1.0, -4.0, 2.0])
    out = integrate(lambda x, t: t[:, None] * a, x0, steps=4, solver=solver)
    expect = x0 + a * (0.5 if solver != "euler" else 3 / 8)  # Euler: sum_i (i/4)(1/4)
    torch.testing.assert_close(out, expect, rtol=0, atol=1e-6)
    out = integrate(lambda x, t: x, torch.ones(2, 1), steps=16, solver=solver)  # e^t
    gain = {"euler": (1 + 1 / 16) ** 16, "midpoint": (1 + 1 / 16 + 1 / 512) ** 16,
            "rk4": (1 + 1 / 16 + 1 / 512 + 1 / 24576 + 1 / 1572864) ** 16}[solver]
    torch.testing.assert_close(out, torch.full((2, 1), gain), rtol=1e-5, atol=0)
    assert abs(float(out[0, 0]) - math.e) < {"euler": 0.09, "midpoint": 2e-3, "rk4": 1e-6}[solver]
    with pytest.raises(ValueError, match="ode_solver"):
        integrate(lambda x, t: x, x0, steps=2, solver="heun")


@pytest.mark.parametrize("seed", range(3))
def test_sampled_events_respect_separation_and_thresholds(trained: FlowModel, seed: int) -> None:
    """Property over seeds: jets at least the jet radius apart, objects above their group's
    pT threshold and inside |eta| < eta_max, the drawn patterns kept, rejections counted."""
    expect = trained.patterns.sample(300, generator=torch.Generator().manual_seed(seed))
    before = trained.generation_stats()
    ev = trained.sample(300, generator=torch.Generator().manual_seed(seed)).to_events()
    after = trained.generation_stats()
    assert_jets_separated(trained, ev)
    group = np.array([0, 1, 1, 2, 2, 3, 3, 4])[ev.types]
    thr = np.r_[np.inf, trained.pt_threshold.numpy()]
    emax = np.r_[0.0, trained.eta_max.numpy()]
    real = ev.types > 0
    assert (ev.p4[..., 1] >= np.float32(thr[group]))[real].all()
    assert (np.abs(ev.p4[..., 2]) <= emax[group])[real].all()
    assert (ev.p4[..., 0] >= ev.p4[..., 1] * np.cosh(ev.p4[..., 2]))[real].all()
    np.testing.assert_array_equal(ev.types, trained.patterns.types(expect, ev.max_objects).numpy())
    drawn, rejected = after["drawn"] - before["drawn"], after["rejected"] - before["rejected"]
    assert drawn == 300 + rejected and rejected == 0  # separation built in: nothing to reject


def test_solver_steps_and_bfloat16(trained: FlowModel) -> None:
    """More steps converge (midpoint 8 vs 64 closer than Euler 8 vs 64); bfloat16 autocast
    perturbs the parameters a little; the chunks do not change the result."""
    gen = torch.Generator().manual_seed(2)
    index = trained.patterns.sample(200, generator=gen)
    st = trained._slot_types(index)
    ctx = trained.context(st, index)
    z = torch.randn(200, trained.layout.dim, generator=gen)
    present = trained.parameterisation.presence(st)

    def run(**over) -> torch.Tensor:
        saved = trained.config
        trained.config = FlowConfig(**{**saved.__dict__, **over})
        try:
            with torch.no_grad():
                return trained._integrate(ctx, z, st)[present]
        finally:
            trained.config = saved

    fine = run(ode_steps=64, ode_solver="rk4")
    err_mid = float((run(ode_steps=8, ode_solver="midpoint") - fine).abs().max())
    err_euler = float((run(ode_steps=8, ode_solver="euler") - fine).abs().max())
    assert err_mid < err_euler
    torch.testing.assert_close(run(sample_chunk=7), run())
    diff = float((run(sample_precision="bfloat16") - run()).abs().max())
    assert 0 < diff < 0.5


def test_save_load_round_trip_of_a_trained_model(trained: FlowModel, tmp_path: Path) -> None:
    mdir = ModelDir(tmp_path / "m")
    mdir.save(trained)
    loaded = mdir.load()
    assert loaded.config == trained.config and loaded.velocity is not None
    a = trained.sample(64, generator=torch.Generator().manual_seed(9))
    b = loaded.sample(64, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a.p4, b.p4) and torch.equal(a.types, b.types) and torch.equal(a.met, b.met)
    assert trained.core_runner(50)() == 50


def test_spline_model_directories_without_the_new_keys_still_load(tmp_path: Path) -> None:
    """A coupling model saved before the matching settings existed (config.json without the
    cfm_*/ode_* keys) loads with their defaults and samples as before."""
    torch.manual_seed(0)
    model = build_model("flow", {**TINY_CONFIGS["flow"], "mode": "coupling"})
    model.fit_data(RawBatch.from_events(make_events(200, seed=2)))
    mdir = ModelDir(tmp_path / "old")
    mdir.save(model.eval())
    cfg_path = tmp_path / "old" / "config.json"
    desc = json.loads(cfg_path.read_text())
    for key in [k for k in desc["model_config"] if k.startswith(("cfm_", "ode_"))]:
        del desc["model_config"][key]
    cfg_path.write_text(json.dumps(desc))
    loaded = mdir.load()
    assert loaded.config == model.config and loaded.velocity is None
    a = model.sample(32, generator=torch.Generator().manual_seed(1))
    b = loaded.sample(32, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.p4, b.p4)


def test_cli_train_and_generate_matching(tiny_store: Path, tmp_path: Path) -> None:
    """`fastmc train --config X.yaml` (model: flow, mode: matching) then `fastmc generate`."""
    from fastmc.cli import app
    from fastmc.io import read_events

    cfg = tmp_path / "cfm.yaml"
    cfg.write_text("model: flow\nmodel_config: {mode: matching, cfm_dim: 16, cfm_layers: 1, "
                   "cfm_heads: 2, ode_steps: 2, max_jets: 6}\n")
    model_dir = tmp_path / "model"
    runner = CliRunner()
    res = runner.invoke(app, ["train", str(tiny_store), "-o", str(model_dir), "--config", str(cfg),
                              "--epochs", "2", "--batch-size", "64", "--batches-per-epoch", "2",
                              "--seed", "1", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and "cfm_mse" in history[0]["val_parts"]
    out = tmp_path / "gen.parquet"
    res = runner.invoke(app, ["generate", str(model_dir), "-n", "80", "-o", str(out), "--seed", "2",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    ev = read_events(out)
    assert len(ev) == 80
    meta = ev.meta["model_rejection"]
    assert meta["drawn"] == 80 + meta["rejected"]


def test_events_do_not_depend_on_the_thread_count(trained: FlowModel) -> None:
    """Chunks of the ODE run on the worker threads (as the spline modes): same events."""
    saved = trained.config
    trained.config = FlowConfig(**{**saved.__dict__, "sample_chunk": 64})
    try:
        one = trained.sample(200, generator=torch.Generator().manual_seed(4))
        torch.set_num_threads(2)  # restored by the one_torch_thread fixture
        two = trained.sample(200, generator=torch.Generator().manual_seed(4))
    finally:
        trained.config = saved
    assert torch.equal(one.p4, two.p4) and torch.equal(one.met, two.met)
