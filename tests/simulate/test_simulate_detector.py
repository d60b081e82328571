"""Detector response: hand-made events (exact expectations) and Pythia ttbar (b-tagging)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fastmc.events import TYPE_CODES

pytestmark = pytest.mark.simulate
pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")

ak = pytest.importorskip("awkward")


def _batch(events):
    """An awkward batch shaped like Pythia's nextBatch: events of (id, status, px, py, pz)."""
    rows = []
    for particles in events:
        prt = []
        for pid, status, px, py, pz, m in particles:
            e = float(np.sqrt(px**2 + py**2 + pz**2 + m**2))
            p = {"px": float(px), "py": float(py), "pz": float(pz), "e": e}
            prt.append({"id": pid, "status": status, "p": p})
        rows.append({"prt": prt})
    return ak.Array(rows)


def _spray(px, py, pz, n=10, pid=211):
    """n pions sharing momentum (px, py, pz): a narrow hadronic jet."""
    return [(pid, 91, px / n, py / n, pz / n, 0.1396) for _ in range(n)]


def _card(**kw):
    from fastmc.simulate.card import DetectorCard

    perfect = {"electron_eff": ((2.5, 1.0),), "muon_eff": ((2.5, 1.0),), "photon_eff": ((2.5, 1.0),)}
    return dataclasses.replace(DetectorCard(), **{**perfect, **kw})


def _respond(events, card=None, seed=0):
    from fastmc.simulate.detector import detector_response

    return detector_response(_batch(events), np.random.default_rng(seed), card or _card())


def test_isolated_muon_is_invisible_to_jets_and_met():
    # a 100 GeV muon recoiling against a 100 GeV hadronic jet
    out = _respond([[(13, 1, 100.0, 0.0, 0.0, 0.1057), *_spray(-100.0, 0.0, 0.0)]]).events
    assert set(out.types[0][out.types[0] > 0]) == {TYPE_CODES["m-"], TYPE_CODES["j"]}
    # MET = minus the calorimeter sum = the jet's recoil, i.e. about the muon pT, along +x
    assert out.met[0] == pytest.approx(100.0, rel=0.3)
    assert abs(out.met_phi[0]) < 0.2
    jets = out.mask("j", "b")[0]
    assert jets.sum() == 1
    assert out.p4[0, jets, 1][0] > 80  # smeared and corrected jet pT


def test_isolated_electron_removes_its_jet_and_nonisolated_is_dropped():
    isolated = [(11, 1, 0.0, 60.0, 10.0, 0.000511), *_spray(-50.0, -30.0, 0.0)]
    inside_jet = [(11, 1, 30.0, 0.0, 0.0, 0.000511), *_spray(60.0, 0.0, 0.0)]
    out = _respond([isolated, inside_jet]).events
    t0, t1 = out.types
    assert (t0 == TYPE_CODES["e-"]).sum() == 1  # kept electron...
    assert (t0 == TYPE_CODES["j"]).sum() == 1  # ...whose own cluster is not also a jet
    assert (t1 == TYPE_CODES["e-"]).sum() == 0  # electron inside a jet fails isolation
    assert (t1 == TYPE_CODES["j"]).sum() == 1


def test_neutrinos_and_neutralinos_make_met():
    ev = [(12, 1, 0.0, 200.0, 0.0, 0.0), (1000022, 1, 0.0, 100.0, 0.0, 100.0),
          *_spray(0.0, -300.0, 0.0)]  # fmt: skip
    out = _respond([ev]).events
    assert out.met[0] == pytest.approx(300.0, rel=0.2)
    assert out.met_phi[0] == pytest.approx(np.pi / 2, abs=0.1)


def test_jet_energy_scale_correction_follows_the_card():
    from fastmc.simulate.card import DetectorCard

    card = _card(ecal_resolution=((4.9, 0.0, 0.0, 0.0),), hcal_resolution=((4.9, 0.0, 0.0, 0.0),))
    out = _respond([_spray(50.0, 0.0, 0.0, n=5)], card=card).events
    raw = np.hypot(50.0, 0.0)
    expected = raw * DetectorCard().jes_factor(raw, 0.0)
    assert out.p4[0, 0, 1] == pytest.approx(expected, rel=1e-4)
    assert out.p4[0, 0, 1] > raw


def test_stored_object_cuts_on_handmade_events():
    # a jet at |eta| = 3.2 is clustered but not stored; an 8 GeV muon fails the efficiency cut
    forward = np.sinh(3.2) * 100
    ev = [*_spray(100.0, 0.0, forward), (13, 1, 0.0, 8.0, 0.0, 0.1057), *_spray(-80, 0, 0)]
    out = _respond([ev]).events
    assert out.n_objects[0] == 1
    assert abs(out.p4[0, 0, 2]) < 1


def test_btag_rate_of_b_jets_follows_the_formula(ttbar_detector_output):
    from fastmc.simulate.card import DetectorCard

    jets = ttbar_detector_output.jets
    card = DetectorCard()
    for flavour, min_jets in ((5, 200), (0, 300)):
        sel = jets["flavour"] == flavour
        assert sel.sum() >= min_jets
        p = card.btag_probability(jets["pt"][sel], np.full(sel.sum(), flavour))
        n_tag = jets["tagged"][sel].sum()
        assert abs(n_tag - p.sum()) < 4 * np.sqrt((p * (1 - p)).sum()) + 1
    # b-matched jets: about 2 per ttbar event inside the tracker, mostly tagged
    b = jets["flavour"] == 5
    assert 0.5 < jets["tagged"][b].mean() < 0.85
    assert jets["tagged"][jets["flavour"] == 0].mean() < 0.02


def test_btag_formula_values():
    from fastmc.simulate.card import DetectorCard

    card = DetectorCard()
    pt = np.array([50.0, 100.0])
    p_b = 0.80 * np.tanh(0.003 * pt) * 30 / (1 + 0.086 * pt)
    np.testing.assert_allclose(card.btag_probability(pt, np.array([5, 5])), p_b)
    np.testing.assert_allclose(
        card.btag_probability(pt, np.array([4, 0])),
        [0.20 * np.tanh(0.02 * 50) / (1 + 0.0034 * 50), 0.002 + 7.3e-6 * 100],
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("jet_r", 0.0), ("jet_pt_min", -1.0), ("electron_eff", ((2.5, 1.5),)),
     ("hcal_resolution", ((3.2, 0.1, 0.5, 0.0), (1.7, 0.1, 0.5, 0.0))), ("store_jet", (20.0, 0.0))],
)  # fmt: skip
def test_card_validation(field, value):
    from fastmc.simulate.card import DetectorCard

    with pytest.raises(ValueError, match=field):
        DetectorCard(**{field: value})
