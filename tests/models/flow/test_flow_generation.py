"""Generation of the flow without post-hoc repair (issue 13): rejection, its bookkeeping, the
fast inverse and its fused spline."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.errors import GenerationError
from fastmc.events import Events
from fastmc.models import build_model
from fastmc.models.flow import FlowModel
from modelhelpers import assert_isolated, assert_jets_separated, fitted_flow

pytest.importorskip("zuko")

TINY = {"hidden": 32, "transforms": 2, "bins": 4, "embedding": 4, "max_patterns": 16}


@pytest.fixture(scope="module")
def coupling(real_events: Events) -> FlowModel:
    """Untrained coupling flow with the plain azimuth: separation by whole-event rejection."""
    return fitted_flow(real_events, {**TINY, "mode": "coupling", "max_jets": 14, "jet_azimuth": "reference"})


@pytest.fixture(scope="module")
def allowed(real_events: Events) -> FlowModel:
    """Untrained coupling flow with jets placed in their allowed azimuths (the default)."""
    model = fitted_flow(real_events, {**TINY, "mode": "coupling", "max_jets": 14})
    assert model.config.jet_azimuth == "allowed"
    return model


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("azimuth", ["reference", "allowed"])
def test_generated_events_never_violate_separation_or_thresholds(
    coupling: FlowModel, allowed: FlowModel, azimuth: str, seed: int
) -> None:
    """Property over seeds: every jet pair at least the jet radius apart, every object above
    its group's pT threshold and inside its |eta| range, the pattern of each event the one
    drawn first (rejection redraws kinematics only).  With the plain azimuth an untrained flow
    puts jets too close and those events are rejected; with the allowed azimuths none is."""
    model = coupling if azimuth == "reference" else allowed
    gen = torch.Generator().manual_seed(seed)
    expect = model.patterns.sample(400, generator=gen)
    before = model.generation_stats()
    ev = model.sample(400, generator=torch.Generator().manual_seed(seed)).to_events()
    after = model.generation_stats()
    assert_jets_separated(model, ev)
    if azimuth == "allowed":
        assert_isolated(model, ev)
    group = np.array([0, 1, 1, 2, 2, 3, 3, 4])[ev.types]  # 1 jets .. 4 photons, 0 padding
    thr = np.r_[np.inf, model.pt_threshold.numpy()]
    emax = np.r_[0.0, model.eta_max.numpy()]
    real = ev.types > 0
    assert (ev.p4[..., 1] >= np.float32(thr[group]))[real].all()
    assert (np.abs(ev.p4[..., 2]) <= emax[group])[real].all()
    types = model.patterns.types(expect, ev.max_objects).numpy()
    np.testing.assert_array_equal(ev.types, types)
    drawn, rejected = after["drawn"] - before["drawn"], after["rejected"] - before["rejected"]
    assert drawn == 400 + rejected
    if azimuth == "reference":
        assert rejected > 0  # an untrained flow does put jets too close
    else:
        assert rejected == 0  # built in: nothing to reject


def test_rejected_share_is_in_the_generation_metadata(coupling: FlowModel, tmp_path) -> None:
    from fastmc.io import read_events
    from fastmc.workflows.generate import generate

    out = tmp_path / "gen.parquet"
    report = generate(coupling, out, 500, batch_size=200, seed=3, device="cpu")
    meta = read_events(out).meta["model_rejection"]
    assert meta["drawn"] == 500 + meta["rejected"] and meta["rejected"] > 0
    assert meta["rejected_share"] == pytest.approx(meta["rejected"] / meta["drawn"])
    assert report.model_rejected_share == pytest.approx(meta["rejected_share"])
    assert "jet radius" in meta["reason"]


def test_an_impossible_radius_gives_up_with_a_clear_error(real_events: Events) -> None:
    model = fitted_flow(real_events, {**TINY, "mode": "coupling", "max_jets": 14, "max_draw_factor": 2})
    model.jet_radius.fill_(50.0)  # no two jets can be that far apart
    with pytest.raises(GenerationError, match="jet radius"):
        model.sample(100, generator=torch.Generator().manual_seed(0))
    assert model.generation_stats()["rejected"] > 0


def test_fast_spline_matches_zuko() -> None:
    from zuko.transforms import MonotonicRQSTransform

    from fastmc.models.flow.inverse import fast_rqs_class, rqs_inverse

    g = torch.Generator().manual_seed(0)
    w, h = 3 * torch.randn(2000, 8, generator=g), 3 * torch.randn(2000, 8, generator=g)
    d = 3 * torch.randn(2000, 7, generator=g)
    x = 3 * torch.randn(2000, generator=g)  # some outside [-5, 5]: identity there
    theirs, ours = MonotonicRQSTransform(w, h, d), fast_rqs_class()(w, h, d)
    y, ladj = theirs.call_and_ladj(x)
    y2, ladj2 = ours.call_and_ladj(x)
    torch.testing.assert_close(y2, y, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ladj2, ladj, rtol=1e-3, atol=1e-3)
    back = rqs_inverse(torch.cat([w, h, d], dim=-1), y, 8)
    # extreme parameters make flat bins where x is ill-conditioned: compare in y
    torch.testing.assert_close(theirs(back), y, rtol=1e-4, atol=1e-4)
    # with moderate parameters (a trained network's range) the inverse is well conditioned
    w, h, d = w / 3, h / 3, d / 3
    y = MonotonicRQSTransform(w, h, d)(x)
    torch.testing.assert_close(rqs_inverse(torch.cat([w, h, d], dim=-1), y, 8), x, rtol=1e-4, atol=1e-4)


def test_bfloat16_sampling_is_close_to_float32(real_events: Events) -> None:
    """The bfloat16 fast path perturbs the spline parameters slightly, not the events' form."""
    models = [fitted_flow(real_events, {**TINY, "mode": "coupling", "max_jets": 14, "sample_precision": precision})
              for precision in ("float32", "bfloat16")]
    gen = torch.Generator().manual_seed(2)
    index = models[0].patterns.sample(256, generator=gen)
    ctx = models[0].context(models[0]._slot_types(index), index)
    z = torch.randn(256, models[0].layout.dim, generator=gen)
    with torch.no_grad():
        a, b = models[0]._inverse(ctx, z), models[1]._inverse(ctx, z)
    assert 0 < float((a - b).abs().max()) < 0.1
    ev = models[1].sample(200, generator=torch.Generator().manual_seed(1)).to_events()
    assert len(ev) == 200 and np.isfinite(ev.p4).all()


def test_mirror_in_the_parameterisation_is_exact(real_events: Events) -> None:
    """canonical_eta_sign: mirrored events have the same parameters, the round trip is exact,
    and generated events come in both orientations with equal probability."""
    from fastmc.models.flow.symmetry import mirror_events

    raw = RawBatch.from_events(real_events)
    model = fitted_flow(real_events, {**TINY, "mode": "coupling", "max_jets": 14, "canonical_eta_sign": True,
                                      "radius_quantile": 0.0})  # every training event exact
    par = model.parameterisation
    enc = par.encode(raw)
    mirrored = par.encode(mirror_events(raw, torch.ones(len(raw), dtype=torch.bool)))
    torch.testing.assert_close(mirrored["x"], enc["x"], rtol=0, atol=1e-9)
    assert torch.equal(mirrored["eta_sign"], -enc["eta_sign"])
    out, valid = par.decode(enc["x"].float(), enc["slot_types"], enc["phi_ref"], max_objects=19,
                            eta_sign=enc["eta_sign"])
    assert bool(valid.all())
    np.testing.assert_allclose(out.to_events().p4, real_events.p4, rtol=2e-5, atol=1e-5)
    with pytest.raises(ValueError, match="eta_sign"):
        par.decode(enc["x"], enc["slot_types"], enc["phi_ref"], max_objects=19)
    ev = model.sample(2000, generator=torch.Generator().manual_seed(5)).to_events()
    first_eta = ev.p4[:, 0, 2]
    assert abs(float((first_eta > 0).mean()) - 0.5) < 0.05  # 4.5 standard errors


def test_model_saved_before_jet_azimuth_existed_loads_as_reference(coupling: FlowModel, tmp_path) -> None:
    """config.json without the jet_azimuth keys (models of earlier versions) decodes with the
    plain azimuth and rejection, as it was trained."""
    import json

    from fastmc.models.modeldir import ModelDir

    mdir = ModelDir(tmp_path / "old")
    mdir.save(coupling.eval())
    path = tmp_path / "old" / "config.json"
    desc = json.loads(path.read_text())
    for key in ("jet_azimuth", "jet_edge_width", "jet_edge_power", "radius_quantile"):
        del desc["model_config"][key]
    path.write_text(json.dumps(desc))
    loaded = mdir.load()
    assert loaded.config.jet_azimuth == "reference"
    a = coupling.sample(64, generator=torch.Generator().manual_seed(4))
    b = loaded.sample(64, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a.p4, b.p4)


def test_model_saved_before_the_mass_bound_decodes_unbounded(allowed: FlowModel) -> None:
    """Weights without ``param.mass_max`` (models of earlier versions): the plain log mass
    parameter, as they were trained."""
    assert allowed.mass_max is not None and allowed.parameterisation.mass_max is not None
    tensors = {k: v for k, v in allowed.extra_tensors().items() if k != "param.mass_max"}
    old = build_model("flow", dataclasses.asdict(allowed.config))
    old.load_state_dict(allowed.state_dict())
    old.load_extra_tensors(tensors)
    assert old.mass_max is None and old.parameterisation.mass_max is None


def test_model_saved_before_isolation_places_leptons_freely(allowed: FlowModel) -> None:
    """Weights without ``param.isolation_radius`` (models of earlier versions): leptons and
    photons keep the plain azimuth, as they were trained."""
    assert allowed.parameterisation.isolation_radius is not None
    tensors = {k: v for k, v in allowed.extra_tensors().items() if k != "param.isolation_radius"}
    old = build_model("flow", dataclasses.asdict(allowed.config))
    old.load_state_dict(allowed.state_dict())
    old.load_extra_tensors(tensors)
    assert old.isolation_radius is None and old.parameterisation.isolated_slots() == []


def test_saved_config_fills_the_old_defaults_only_where_missing() -> None:
    """Settings whose default changed get the value older model directories were trained with
    when config.json lacks them; a value written in config.json is kept."""
    old = FlowModel.saved_config({"mode": "coupling"})
    assert old == {"mode": "coupling", "jet_azimuth": "reference", "canonical_eta_sign": False,
                   "object_isolation": False, "reflect_augment": False}
    # session 5's models fitted the muons' radius at radius_quantile
    assert FlowModel.saved_config({"radius_quantile": 1e-3})["muon_isolation_quantile"] == 1e-3
    settings = {"jet_azimuth": "allowed", "canonical_eta_sign": True, "object_isolation": True,
                "reflect_augment": True, "radius_quantile": 1e-3, "muon_isolation_quantile": 0.02}
    assert FlowModel.saved_config(settings) == settings
    assert build_model("flow", {}).config.canonical_eta_sign  # the default of new models


def test_reflect_augment_trains_on_the_reflected_events(real_events: Events) -> None:
    """reflect_augment: in training mode the loss is that of the events reflected phi -> -phi
    where the generator's first draw says so (the same draws replayed by hand); in evaluation
    mode nothing is reflected."""
    from fastmc.models.flow.symmetry import reflect_events

    raw = RawBatch.from_events(real_events[:300])
    model = fitted_flow(real_events, {**TINY, "mode": "coupling", "max_jets": 14, "reflect_augment": True})
    model.train()
    with torch.no_grad():
        loss, _ = model.training_loss(raw, generator=torch.Generator().manual_seed(7))
    replay = torch.Generator().manual_seed(7)
    flip = torch.rand(len(raw), generator=replay) < 0.5
    assert 0 < int(flip.sum()) < len(raw)
    model.eval()
    with torch.no_grad():
        by_hand, _ = model.training_loss(reflect_events(raw, flip), generator=replay)
        plain, _ = model.training_loss(raw, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(loss, by_hand)
    assert abs(plain.item() - loss.item()) > 1e-4
