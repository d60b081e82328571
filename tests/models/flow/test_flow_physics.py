"""The physics-aware parameterisation (fastmc.models.flow.physics) and the structure sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.events import Events
from fastmc.kinematics import sort_dark_machines
from fastmc.models.flow.physics import SlotLayout, fit_parameterisation
from fastmc.models.flow.structure import PatternDistribution
from modelhelpers import jet_pair_distances, object_jet_distances

SQSQ = "sqsq1_sq1400_neut800_chan1.csv"


@pytest.fixture(scope="module")
def real_events(data_dir) -> Events:
    from fastmc.io import read_events

    return read_events(data_dir / SQSQ)


LAYOUT = SlotLayout(jets=14, electrons=2, muons=2, photons=2)


OPTIONS = {
    "reference": {},
    "allowed": {"jet_azimuth": "allowed", "jet_edge_width": 0.2, "jet_edge_power": 0.5},
    "allowed-mass-bound": {"jet_azimuth": "allowed", "mass_margin": 1.5},
    "allowed-hard-canonical": {"jet_azimuth": "allowed", "jet_edge_width": 0.0, "canonical_eta_sign": True},
    "allowed-isolated": {"jet_azimuth": "allowed", "isolation": True, "mass_margin": 1.5,
                         "canonical_eta_sign": True},
}


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_round_trip_is_exact(real_events: Events, options) -> None:
    raw = RawBatch.from_events(real_events)
    par = fit_parameterisation(raw, LAYOUT, **options)
    if options.get("jet_azimuth") == "allowed":
        assert 0.5 < par.jet_radius < 0.6  # (y, phi): the detector's R = 0.6, smeared after clustering
    assert (par.mass_max is not None) == ("mass_margin" in options)
    assert (par.isolation_radius is not None) == ("isolation" in options)
    eta_sign = {"eta_sign": None}
    enc = par.encode(raw)
    assert enc["x"].shape == (len(real_events), LAYOUT.dim)
    assert int(enc["dropped"].sum()) == 0
    assert bool(torch.isfinite(enc["x"]).all())
    eta_sign["eta_sign"] = enc["eta_sign"]
    out, valid = par.decode(
        enc["x"].float(), enc["slot_types"], enc["phi_ref"], max_objects=real_events.max_objects, **eta_sign
    )
    assert bool(valid.all())  # every real event has its jets separated: none rejected
    back = out.to_events()
    np.testing.assert_array_equal(back.types, real_events.types)
    np.testing.assert_allclose(back.p4, real_events.p4, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(back.met, real_events.met, rtol=1e-6)
    np.testing.assert_allclose(back.met_phi, real_events.met_phi, atol=1e-6)


def test_round_trip_keeps_every_observable(real_events: Events) -> None:
    """A sample passed through the parameterisation is the same sample (every observable)."""
    from fastmc.evaluate.observables import compute_observables

    raw = RawBatch.from_events(real_events)
    par = fit_parameterisation(raw, LAYOUT)
    enc = par.encode(raw)
    back, valid = par.decode(enc["x"].float(), enc["slot_types"], enc["phi_ref"], max_objects=19)
    assert bool(valid.all())
    a = compute_observables(real_events).values
    b = compute_observables(back.to_events()).values
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4, equal_nan=True)


def test_allowed_azimuths_separate_every_decoded_vector(real_events: Events) -> None:
    """With ``jet_azimuth="allowed"`` arbitrary parameters decode to events whose jets are all
    at least the radius apart in (y, phi): built in, so every event is kept; the parameter
    of a jet's azimuth is monotone in it (same other parameters)."""
    raw = RawBatch.from_events(real_events[:500])
    par = fit_parameterisation(raw, LAYOUT, jet_azimuth="allowed", jet_edge_width=0.2, jet_edge_power=0.5,
                               mass_margin=1.5)
    enc = par.encode(raw)
    gen = torch.Generator().manual_seed(3)
    x = 2.0 * torch.randn(enc["x"].shape, generator=gen, dtype=torch.float64)
    phi_ref = torch.rand(len(raw), generator=gen, dtype=torch.float64) * 6.28 - 3.14
    out, valid = par.decode(x, enc["slot_types"], phi_ref, max_objects=19)
    ev = out.to_events()
    assert bool(valid.all())
    # no object heavier than its group's bound: m / pT <= mass_max (float32 slack)
    group = np.array([0, 0, 0, 1, 1, 2, 2, 3])[ev.types]
    p4 = ev.p4.astype(np.float64)
    real = ev.types > 0
    e, pt, eta = p4[..., 0][real], p4[..., 1][real], p4[..., 2][real]
    m_over_pt = np.sqrt(np.maximum((e / pt) ** 2 - np.cosh(eta) ** 2, 0.0))
    bound = np.asarray(par.mass_max)[group[real]]
    assert (m_over_pt <= bound * (1 + 1e-3) + 1e-3).all()
    assert (m_over_pt[group[real] == 0] > 0.5 * bound[group[real] == 0]).any()  # random parameters reach it
    for i in range(len(ev)):
        d = jet_pair_distances(ev, i, rapidity=True)
        assert (d >= par.jet_radius - 1e-4).all()  # y recomputed from float32 E, pT, eta
    # the old check in (eta, phi) at the same radius would have rejected some of them
    assert any(_closest_jet_pair(ev, i) < par.jet_radius for i in range(len(ev)))
    # re-encoding gives the jet azimuth parameters back (a bijection onto the allowed set; the
    # events are float32, so away from the saturated tails of tanh)
    again = par.encode(out)["x"].reshape(len(ev), -1)[:, : 4 * LAYOUT.n_slots].reshape(len(ev), -1, 4)
    sent = x[:, : 4 * LAYOUT.n_slots].reshape(len(ev), -1, 4)
    slot_present = enc["slot_types"] > 0
    jet = slot_present.clone()
    jet[:, LAYOUT.jets :] = False
    jet[:, 0] = False  # the leading jet is the reference azimuth: no parameter
    moderate = jet & (sent[..., 2].abs() < 2) & (sent[..., 1].abs() < 2)
    assert int(moderate.sum()) > 500
    diff = (again[..., 2][moderate] - sent[..., 2][moderate]).abs().numpy()
    # exact up to the float32 events: a jet whose row nearly touches a harder jet's circle
    # (|dy| -> R) moves its interval edge fast with the rapidity, which float32 E rounds
    assert (diff < 1e-3).mean() > 0.97 and diff.max() < 0.05


def test_decode_of_any_vector_is_physical(real_events: Events) -> None:
    """Arbitrary parameters decode to ordered, physical events; the validity mask marks
    exactly the events whose jets are all separated (nothing is moved)."""
    raw = RawBatch.from_events(real_events[:500])
    par = fit_parameterisation(raw, LAYOUT)
    enc = par.encode(raw)
    gen = torch.Generator().manual_seed(3)
    x = 2.0 * torch.randn(enc["x"].shape, generator=gen)
    phi_ref = torch.rand(len(raw), generator=gen, dtype=torch.float64) * 6.28 - 3.14
    out, valid = par.decode(x, enc["slot_types"], phi_ref, max_objects=19)
    ev = out.to_events()
    np.testing.assert_array_equal(ev.types, real_events[:500].types)
    keep = valid.numpy()
    assert 0 < keep.sum() < len(keep)  # random parameters do put jets on top of each other
    _assert_physical(ev[keep], par.jet_radius, par.pt_threshold)
    # every rejected event really has a pair of jets closer than the radius
    assert all(_closest_jet_pair(ev, i) < par.jet_radius for i in np.flatnonzero(~keep))
    # the same parameters without the jet check are unchanged: decoding moved nothing
    same, _ = par.decode(x, enc["slot_types"], phi_ref, max_objects=19)
    assert torch.equal(same.p4, out.p4)


def _closest_jet_pair(ev: Events, i: int) -> float:
    jets = ev.mask("j", "b")[i]
    eta, phi = ev.p4[i, jets, 2].astype(np.float64), ev.p4[i, jets, 3].astype(np.float64)
    dp = np.remainder(phi[:, None] - phi[None, :] + np.pi, 2 * np.pi) - np.pi
    dr = np.sqrt((eta[:, None] - eta[None, :]) ** 2 + dp**2) + 10 * np.eye(len(eta))
    return float(dr.min()) if len(eta) > 1 else np.inf


def _assert_physical(ev: Events, jet_radius: float, thresholds) -> None:
    real = ev.types > 0
    p4 = ev.p4.astype(np.float64)
    assert np.isfinite(p4).all() and np.isfinite(ev.met).all()
    assert ((ev.types >= 0) & (ev.types <= 7)).all()
    assert (p4[..., 0] >= p4[..., 1] * np.cosh(p4[..., 2]))[real].all()
    assert ((p4[..., 3] > -np.pi) & (p4[..., 3] <= np.pi))[real].all()
    assert ((ev.met_phi > -np.pi) & (ev.met_phi <= np.pi)).all() and (ev.met > 0).all()
    assert ev.equals(ev.sorted())  # Dark Machines order
    jets = ev.mask("j", "b")
    for i in range(len(ev)):
        eta, phi = p4[i, jets[i], 2], p4[i, jets[i], 3]
        de = eta[:, None] - eta[None, :]
        dp = np.remainder(phi[:, None] - phi[None, :] + np.pi, 2 * np.pi) - np.pi
        dr = np.sqrt(de**2 + dp**2) + np.eye(len(eta)) * 10
        assert (dr >= jet_radius).all()
    assert (p4[..., 1][jets] >= np.float32(thresholds[0])).all()


def test_layout_validation() -> None:
    with pytest.raises(ValueError, match="jets"):
        SlotLayout(jets=-1, electrons=2, muons=2, photons=2)
    with pytest.raises(ValueError, match="at least one slot"):
        SlotLayout(jets=0, electrons=0, muons=0, photons=0)


def test_truncation_counts_dropped_objects(real_events: Events) -> None:
    raw = RawBatch.from_events(real_events)
    small = SlotLayout(jets=4, electrons=1, muons=1, photons=1)
    enc = fit_parameterisation(raw, small).encode(raw)
    n_jets = real_events.counts()["j"] + real_events.counts()["b"]
    assert (enc["dropped"].numpy() >= np.clip(n_jets - 4, 0, None)).all()
    assert int(enc["dropped"].sum()) > 0


# ---------------------------------------------------------------------------- structure
def test_pattern_distribution_fit_sample_and_store(real_events: Events) -> None:
    dist = PatternDistribution.fit(real_events.types)
    keys = {tuple(int(t) for t in row if t) for row in real_events.types}
    assert dist.n_patterns == len(keys)
    assert int(dist.counts.sum()) == len(real_events)
    # every event finds its own pattern; a made-up pattern is unknown
    idx = dist.index_of(torch.as_tensor(real_events.types))
    assert bool((idx >= 0).all())
    back = dist.types(idx, real_events.max_objects)
    np.testing.assert_array_equal(back.numpy(), real_events.types)
    odd = torch.zeros(1, 19, dtype=torch.long)
    odd[0, :3] = 7
    assert int(dist.index_of(odd)[0]) == -1
    # sampling follows the frequencies and is seeded
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    s1, s2 = dist.sample(40_000, generator=g1), dist.sample(40_000, generator=g2)
    assert torch.equal(s1, s2)
    freq = torch.bincount(s1, minlength=dist.n_patterns).double() / len(s1)
    assert abs(float(freq[0] - dist.probabilities[0])) < 0.01
    # storage: tensors and JSON give the same distribution
    for copy in (
        PatternDistribution.from_tensors(dist.to_tensors("s.") , "s."),
        PatternDistribution.from_json(dist.to_json()),
    ):
        assert torch.equal(copy.counts, dist.counts)
        assert copy.names() == dist.names()


def test_pattern_distribution_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="positive"):
        PatternDistribution(torch.ones(2, 3, dtype=torch.int8), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="distinct"):
        PatternDistribution(torch.ones(2, 3, dtype=torch.int8), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="unknown object type"):
        PatternDistribution.from_json({"patterns": [{"types": "j x", "count": 1}]})


def test_quantile_radius_encodes_the_few_closer_pairs_at_the_radius(real_events: Events) -> None:
    """With ``radius_quantile`` the radius ignores the few closest pairs; those events' softer
    jet comes back at the radius (counted), every other event exactly."""
    from fastmc.models.flow.physics import jets_below_radius

    raw = RawBatch.from_events(real_events)
    exact = fit_parameterisation(raw, LAYOUT, jet_azimuth="allowed")
    par = fit_parameterisation(raw, LAYOUT, jet_azimuth="allowed", radius_quantile=1e-3)
    assert par.jet_radius > exact.jet_radius
    below = jets_below_radius(raw, par)
    assert jets_below_radius(raw, exact) == 0 and 1 <= below <= 5  # 1e-3 of 4,096 events
    enc = par.encode(raw)
    out, valid = par.decode(enc["x"], enc["slot_types"], enc["phi_ref"], max_objects=real_events.max_objects)
    assert bool(valid.all())
    back = out.to_events()
    moved = np.array([not np.allclose(back.p4[i], real_events.p4[i], rtol=2e-5, atol=1e-5)
                      for i in range(len(back))])
    assert moved.sum() == below
    for i in np.flatnonzero(moved):
        d = jet_pair_distances(back, i, rapidity=True)
        assert d.min() == pytest.approx(par.jet_radius, abs=1e-5)


def test_isolation_keeps_every_decoded_lepton_and_photon_off_the_jets(real_events: Events) -> None:
    """With ``isolation`` the electrons and photons of any decoded vector are at least their
    group's radius (about the detector's R = 0.6: a jet holding one is dropped) from every jet;
    muons, which come close to jets in the data, get a small radius; without it, random
    parameters put electrons inside jets."""
    from fastmc.models.flow.physics import objects_below_isolation

    raw = RawBatch.from_events(real_events)
    par = fit_parameterisation(raw, LAYOUT, jet_azimuth="allowed", isolation=True, mass_margin=1.5)
    iso = par.isolation_radius
    assert iso is not None and iso[0] == 0.0
    assert 0.55 < iso[1] < 0.62 and 0.55 < iso[3] < 0.62  # electrons, photons
    assert iso[2] < 0.3  # muons
    assert objects_below_isolation(raw, par) == 0  # the minimum: every training object exact
    plain = fit_parameterisation(raw, LAYOUT, jet_azimuth="allowed", mass_margin=1.5)
    enc = par.encode(raw)
    gen = torch.Generator().manual_seed(5)
    x = 2.0 * torch.randn(enc["x"].shape, generator=gen, dtype=torch.float64)
    phi_ref = torch.rand(len(raw), generator=gen, dtype=torch.float64) * 6.28 - 3.14
    out, valid = par.decode(x, enc["slot_types"], phi_ref, max_objects=19)
    out0, _ = plain.decode(x, enc["slot_types"], phi_ref, max_objects=19)
    ev, ev0 = out.to_events(), out0.to_events()
    assert bool(valid.all())
    n_checked, inside_before = 0, 0
    for i in range(len(ev)):
        for codes, radius in (((3, 4), iso[1]), ((5, 6), iso[2]), ((7,), iso[3])):
            d = object_jet_distances(ev, i, codes)
            assert (d >= radius - 1e-4).all(), (i, codes, d, radius)
            n_checked += len(d)
        inside_before += int((object_jet_distances(ev0, i, (3, 4)) < iso[1]).sum())
    assert n_checked > 500 and inside_before > 20


def test_quantile_isolation_encodes_the_few_closer_objects_at_the_radius(real_events: Events) -> None:
    """A quantile radius leaves a few muons closer to a jet: they are counted and come back at
    the radius; every other event exactly."""
    from fastmc.models.flow.physics import jets_below_radius, objects_below_isolation

    raw = RawBatch.from_events(real_events)
    par = fit_parameterisation(raw, LAYOUT, jet_azimuth="allowed", isolation=True, radius_quantile=0.02)
    below = objects_below_isolation(raw, par)
    assert below >= 5 and jets_below_radius(raw, par) >= 1
    enc = par.encode(raw)
    out, valid = par.decode(enc["x"], enc["slot_types"], enc["phi_ref"], max_objects=real_events.max_objects)
    assert bool(valid.all())
    back = out.to_events()
    moved = [i for i in range(len(back))
             if not np.allclose(back.p4[i], real_events.p4[i], rtol=2e-5, atol=1e-5)]
    assert 0 < len(moved) <= below + jets_below_radius(raw, par)
    for i in moved:
        d = object_jet_distances(back, i, (5, 6))
        assert (d >= par.isolation_radius[2] - 1e-4).all()


def test_muon_isolation_quantile_sets_the_muon_radius_only(real_events: Events) -> None:
    """``muon_isolation_quantile`` replaces ``radius_quantile`` for the muons' radius: it is
    that quantile of the muons' distances to their nearest jet (counted below), and the jet,
    electron and photon radii stay those of ``radius_quantile``."""
    from fastmc.models.flow.physics import _nearest_jet, objects_below_isolation

    raw = RawBatch.from_events(real_events)
    kw = {"jet_azimuth": "allowed", "isolation": True, "radius_quantile": 1e-3}
    base = fit_parameterisation(raw, LAYOUT, **kw)
    mu = fit_parameterisation(raw, LAYOUT, muon_isolation_quantile=0.05, **kw)
    assert mu.isolation_radius[2] > base.isolation_radius[2] + 0.1
    assert (mu.isolation_radius[0], mu.isolation_radius[1], mu.isolation_radius[3]) == (
        base.isolation_radius[0], base.isolation_radius[1], base.isolation_radius[3])
    assert mu.jet_radius == base.jet_radius
    types, p4 = sort_dark_machines(raw.types.long(), raw.p4)
    slot_types, sp4, _ = LAYOUT.to_slots(types, p4.double())
    near = _nearest_jet(sp4, slot_types, LAYOUT.jets, mass_floor=1e-6)
    d = near[torch.isin(slot_types, torch.tensor([5, 6]))]
    d = d[torch.isfinite(d)].numpy()
    assert mu.isolation_radius[2] == pytest.approx(np.quantile(d, 0.05, method="lower") - 1e-3)
    below = objects_below_isolation(raw, mu) - objects_below_isolation(raw, base)
    assert below == int((d < mu.isolation_radius[2]).sum()) - int((d < base.isolation_radius[2]).sum())
    assert below >= 0.04 * len(d) - 1
