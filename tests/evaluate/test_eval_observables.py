"""Observables: known values on hand-made events, NaN for missing objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from evalsynth import synthetic_events

from fastmc.evaluate.observables import OBSERVABLES, compute_observables, presence
from fastmc.events import TYPE_CODES, Events


def _event(objects, met=50.0, met_phi=0.5, k=6):
    types = np.zeros((1, k), np.int8)
    p4 = np.zeros((1, k, 4), np.float32)
    for i, (t, pt, eta, phi, m) in enumerate(objects):
        types[0, i] = TYPE_CODES[t]
        e = math.sqrt(m**2 + (pt * math.cosh(eta)) ** 2)
        p4[0, i] = (e, pt, eta, phi)
    return Events.from_arrays(types=types, p4=p4, met=[met], met_phi=[met_phi])


def test_known_values_and_order_independence():
    # jets stored out of pT order: the observables pick by pT
    ev = _event(
        [
            ("j", 50.0, 0.3, 1.0, 0.0),
            ("b", 120.0, -0.4, -2.0, 0.0),
            ("e-", 30.0, 0.0, 0.0, 0.0),
            ("m+", 40.0, 0.0, math.pi / 2, 0.0),
            ("g", 20.0, 1.0, 0.0, 0.0),
        ]
    )
    o = compute_observables(ev)
    assert o.names == tuple(s.name for s in OBSERVABLES)
    assert o.values.shape == (1, len(OBSERVABLES)) and o.values.dtype == np.float64
    assert o["met"][0] == pytest.approx(50.0) and o["met_phi"][0] == pytest.approx(0.5)
    assert (o["n_jets"][0], o["n_bjets"][0], o["n_electrons"][0], o["n_muons"][0], o["n_photons"][0]) == (
        2, 1, 1, 1, 1
    )
    assert o["jet1_pt"][0] == pytest.approx(120.0) and o["jet2_pt"][0] == pytest.approx(50.0)
    assert o["jet1_eta"][0] == pytest.approx(-0.4) and o["jet1_phi"][0] == pytest.approx(-2.0)
    assert o["lep1_pt"][0] == pytest.approx(40.0) and o["lep2_pt"][0] == pytest.approx(30.0)
    assert o["ht"][0] == pytest.approx(170.0)
    # two massless leptons at eta = 0, 90 degrees apart: m^2 = 2 pT1 pT2 (1 - cos dphi)
    assert o["m_ll"][0] == pytest.approx(math.sqrt(2 * 40 * 30), rel=1e-5)
    # massless jets: m^2 = 2 pT1 pT2 (cosh deta - cos dphi)
    deta, dphi = 0.7, 3.0
    assert o["m_jj"][0] == pytest.approx(math.sqrt(2 * 120 * 50 * (math.cosh(deta) - math.cos(dphi))), rel=1e-4)
    assert o["dr_jj"][0] == pytest.approx(math.hypot(deta, dphi), rel=1e-5)
    # wrapped dphi: jets at phi 3.0 and -3.0 are 0.283 apart
    ev2 = _event([("j", 100.0, 0.0, 3.0, 0.0), ("j", 90.0, 0.0, -3.0, 0.0)])
    assert compute_observables(ev2)["dr_jj"][0] == pytest.approx(2 * math.pi - 6.0, rel=1e-5)
    assert o.units[o.names.index("met")] == "GeV" and o.units[o.names.index("jet1_phi")] == "rad"


def test_missing_objects_are_nan_not_zero():
    ev = _event([("j", 100.0, 0.1, 0.2, 10.0)])
    o = compute_observables(ev)
    assert o["jet1_pt"][0] == pytest.approx(100.0)
    for name in ("jet2_e", "jet2_pt", "jet2_eta", "jet2_phi", "m_jj", "dr_jj"):
        assert np.isnan(o[name][0]), name
    for name in ("lep1_e", "lep1_pt", "lep2_phi", "m_ll"):
        assert np.isnan(o[name][0]), name
    for name in ("n_electrons", "n_muons", "n_photons", "met"):
        assert o[name][0] == (0 if name != "met" else 50.0)
    np.testing.assert_array_equal(presence(o), [[1, 0, 0, 0]])
    empty = compute_observables(_event([]))
    assert empty["ht"][0] == 0 and np.isnan(empty["jet1_pt"][0])


def test_vectorised_matches_per_event():
    ev = synthetic_events(300, seed=3)
    o = compute_observables(ev)
    single = np.concatenate([compute_observables(ev[i]).values for i in range(0, 300, 37)])
    np.testing.assert_array_equal(o.values[::37], single)
    assert o["ht"] == pytest.approx(ev.ht())
    with pytest.raises(KeyError, match="no observable"):
        o["nope"]
