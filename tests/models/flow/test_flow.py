"""The structure-first flow (fastmc.models.flow): model contract, structure and physicality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.events import Events
from fastmc.models import build_model, get_model, load_model, save_model
from fastmc.models.flow import FlowConfig, FlowModel
from fastmc.workflows.generate import generate_events
from modelhelpers import assert_jets_separated, fit_steps

pytest.importorskip("zuko")

# the mirror as training-data augmentation (canonical_eta_sign: false), which these tests check
TINY = {"hidden": 32, "transforms": 2, "bins": 4, "embedding": 4, "max_patterns": 16, "max_jets": 8,
        "canonical_eta_sign": False}


def _fitted(events: Events, mode: str, **extra) -> FlowModel:
    torch.manual_seed(0)
    model = build_model("flow", {**TINY, "mode": mode, **extra}, processes=("sqsq",))
    assert isinstance(model, FlowModel)
    with pytest.warns(UserWarning, match="softest objects are dropped"):
        model.fit_data(RawBatch.from_events(events))  # 8 jet slots < 14 jets
    return model


@pytest.fixture(scope="module", params=["autoregressive", "coupling"])
def model(request, real_events) -> FlowModel:
    return _fitted(real_events, request.param)


def test_registered_and_config_validated() -> None:
    assert get_model("flow").model_cls is FlowModel
    with pytest.raises(ValueError, match="mode"):
        FlowConfig(mode="spline")
    with pytest.raises(ValueError, match="hidden"):
        FlowConfig(hidden=0)
    with pytest.raises(ValueError, match="max_jets"):
        FlowConfig(max_jets=-1)


def test_unfitted_model_says_what_to_do() -> None:
    model = build_model("flow", TINY)
    with pytest.raises(ValueError, match="fit_data"):
        model.sample(3)


def test_gradients_reach_every_parameter(model: FlowModel, real_events: Events) -> None:
    raw = RawBatch.from_events(real_events[:400])
    loss, parts = model.training_loss(raw, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and np.isfinite(parts["nll"])
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    model.zero_grad(set_to_none=True)


def test_sample_shapes_and_seed(model: FlowModel) -> None:
    a = model.sample(50, generator=torch.Generator().manual_seed(7))
    b = model.sample(50, generator=torch.Generator().manual_seed(7))
    c = model.sample(50, generator=torch.Generator().manual_seed(8))
    assert a.types.shape == (50, 19) and a.p4.shape == (50, 19, 4) and a.met.shape == (50,)
    assert torch.equal(a.p4, b.p4) and torch.equal(a.types, b.types)
    assert not torch.equal(a.p4, c.p4)
    assert model.sample(0).types.shape == (0, 19)
    with pytest.raises(ValueError, match="standard-normal"):
        list(generate_events(model, 5, prior="bgmm"))


def test_save_load_gives_identical_samples(model: FlowModel, tmp_path) -> None:
    save_model(model, tmp_path / "m")
    desc = json.loads((tmp_path / "m" / "config.json").read_text())
    assert desc["model"] == "flow" and desc["model_config"]["mode"] == model.config.mode
    loaded = load_model(tmp_path / "m")
    assert loaded.patterns is not None and torch.equal(loaded.patterns.counts, model.patterns.counts)
    a = model.sample(64, generator=torch.Generator().manual_seed(3))
    b = loaded.sample(64, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.types, b.types) and torch.equal(a.p4, b.p4)
    assert torch.equal(a.met, b.met) and torch.equal(a.met_phi, b.met_phi)


def test_training_lowers_the_loss(real_events: Events) -> None:
    model = _fitted(real_events, "coupling")
    raw = RawBatch.from_events(real_events[:256])
    gen = torch.Generator().manual_seed(0)
    first = float(model.training_loss(raw, generator=gen)[0].detach())
    fit_steps(model, raw, 30, lr=3e-3, generator=gen)
    assert float(model.training_loss(raw, generator=gen)[0].detach()) < first - 1.0


def test_generated_patterns_are_training_patterns_and_physical(
    model: FlowModel, real_events: Events
) -> None:
    from fastmc.evaluate.metrics import physicality

    n = 1500 if model.config.mode == "coupling" else 500
    before = model.generation_stats()
    ev = model.sample(n, generator=torch.Generator().manual_seed(11)).to_events()
    after = model.generation_stats()
    drawn, rejected = after["drawn"] - before["drawn"], after["rejected"] - before["rejected"]
    assert len(ev) == n and drawn - rejected >= n and rejected >= 0
    layout = model.layout
    # the training patterns, after dropping objects beyond the slots
    kept, _ = layout.from_slots(
        *layout.to_slots(torch.as_tensor(real_events.types).long(), torch.zeros(len(real_events), 19, 4))[:2],
        19,
    )
    train_patterns = {tuple(r[r > 0].tolist()) for r in kept.numpy()}
    gen_patterns = {tuple(r[r > 0].tolist()) for r in ev.types.astype(np.int64)}
    assert gen_patterns <= train_patterns
    assert len(gen_patterns) > 10
    phys = physicality(ev)
    assert phys["valid"] == 1.0, phys
    # exact checks, without tolerance
    real = ev.types > 0
    p4 = ev.p4.astype(np.float64)
    assert (p4[..., 0] >= p4[..., 1] * np.cosh(p4[..., 2]))[real].all()
    assert ((p4[..., 3] > -np.pi) & (p4[..., 3] <= np.pi))[real].all()
    assert ev.equals(ev.sorted())
    assert_jets_separated(model, ev)


def test_mirror_augmentation_is_the_symmetry_of_the_parameters(
    model: FlowModel, real_events: Events
) -> None:
    """(eta, phi) -> (-eta, -phi) of the events negates exactly the angle parameters, so the
    training-data mirror is a symmetry of the parameterisation (not only of the events)."""
    import dataclasses

    from fastmc.events import wrap_phi

    p4 = real_events.p4.copy()
    real = real_events.types > 0
    p4[..., 2] = np.where(real, -p4[..., 2], 0)
    p4[..., 3] = np.where(real, wrap_phi(-p4[..., 3]), 0)
    mirrored = dataclasses.replace(real_events, p4=p4, met_phi=wrap_phi(-real_events.met_phi))
    par = model.parameterisation
    a = par.encode(RawBatch.from_events(real_events))
    b = par.encode(RawBatch.from_events(mirrored))
    cols = torch.zeros(model.layout.dim, dtype=torch.bool)
    end = 4 * model.layout.n_slots
    cols[1:end:4] = True  # eta parameters
    cols[2:end:4] = True  # phi parameters
    cols[-1] = True  # MET phi
    expect = torch.where(cols, -a["x"], a["x"])
    np.testing.assert_allclose(b["x"].numpy(), expect.numpy(), atol=1e-4)
    assert cols.sum() == 2 * model.layout.n_slots + 1


def test_fast_inverse_equals_zuko_inverse(model: FlowModel) -> None:
    gen = torch.Generator().manual_seed(4)
    index = model.patterns.sample(64, generator=gen)
    ctx = model.context(model._slot_types(index), index)
    z = torch.randn(64, model.layout.dim, generator=gen)
    with torch.no_grad():
        ours = model._inverse(ctx, z)
        theirs = model.flow(ctx).transform.inv(z)
        back = model.flow(ctx).transform(ours)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back, z, rtol=1e-4, atol=1e-4)
