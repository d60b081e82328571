"""Physics validation: Z and W/top mass peaks; every catalogued process runs."""

from __future__ import annotations

import numpy as np
import pytest

from fastmc.events import Events

pytestmark = pytest.mark.simulate
pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")


def _run(process, n, **kw):
    from fastmc.simulate import simulate

    return Events.concatenate(list(simulate(process, n, **kw)))


def _mass(p):
    """Invariant mass of summed (E, px, py, pz) vectors [..., 4], GeV."""
    return np.sqrt(np.clip(p[..., 0] ** 2 - (p[..., 1:] ** 2).sum(axis=-1), 0, None))


def _mll(ev):
    """m_ll of the two leading same-flavour opposite-sign leptons (events that have them)."""
    c, t = ev.cartesian(), ev.types
    out = []
    for minus, plus in ((3, 4), (5, 6)):
        has = ((t == minus).any(axis=1)) & ((t == plus).any(axis=1))
        i_m = np.argmax(t == minus, axis=1)
        i_p = np.argmax(t == plus, axis=1)
        rows = np.flatnonzero(has)
        out.append(_mass(c[rows, i_m[rows]] + c[rows, i_p[rows]]))
    return np.concatenate(out)


def _peak(values, lo, hi, width):
    """Peak position: the mode of a histogram smoothed over 3 bins, GeV."""
    h, edges = np.histogram(values, bins=np.arange(lo, hi + width, width))
    smooth = np.convolve(h, np.ones(3) / 3, mode="same")
    i = int(np.argmax(smooth))
    centres = 0.5 * (edges[1:] + edges[:-1])
    window = slice(max(i - 1, 0), i + 2)
    return float(np.average(centres[window], weights=smooth[window] + 1e-9))


def test_z_peak_fast():
    ev = _run("z_jets", 250, seed=21, params={"leptonic": 1})
    mll = _mll(ev)
    assert len(mll) > 100
    window = mll[(mll > 71.2) & (mll < 111.2)]
    assert abs(np.median(window) - 91.2) < 2.0


@pytest.mark.slow
def test_z_peak_precise():
    ev = _run("z_jets", 2000, seed=22, params={"leptonic": 1})
    mll = _mll(ev)
    assert abs(_peak(mll, 70, 112, 1.0) - 91.2) < 2.0


def _undo_jes(ev):
    """Jets scaled back by the card's energy-scale factor (pT_raw from pT_corrected)."""
    from fastmc.simulate.card import DetectorCard

    card = DetectorCard()
    a2 = (card.jes_a - card.jes_b * np.abs(ev.p4[..., 2].astype(np.float64))) ** 2
    pt = ev.p4[..., 1].astype(np.float64)
    raw = 0.5 * (-a2 + np.sqrt(a2**2 + 4 * pt**2))  # solves pt = raw * sqrt(a2 / raw + 1)
    scale = np.where(ev.mask("j", "b") & (pt > 0), raw / np.where(pt > 0, pt, 1), 1.0)
    out = ev[:]
    out.p4 = (ev.p4 * scale[..., None]).astype(np.float32)
    out.p4[..., 2:] = ev.p4[..., 2:]
    return out


def _w_top_candidates(ev):
    """Lepton + jets ttbar: the two leading light jets (W) and W + the lighter b+jj (top)."""
    c, t = ev.cartesian(), ev.types
    leptons = np.isin(t, (3, 4, 5, 6)).sum(axis=1)
    light, b = t == 1, t == 2
    sel = (leptons == 1) & (light.sum(axis=1) >= 2) & (b.sum(axis=1) == 2)
    mw, mt = [], []
    for i in np.flatnonzero(sel):
        j = np.flatnonzero(light[i])[:2]
        w = c[i, j[0]] + c[i, j[1]]
        mw.append(_mass(w))
        tops = [_mass(w + c[i, k]) for k in np.flatnonzero(b[i])]
        mt.append(min(tops))  # the lighter b+jj combination: the hadronic top more often
    return np.array(mw), np.array(mt)


@pytest.mark.slow
def test_ttbar_w_and_top_peaks():
    ev = _run("ttbar", 4000, seed=23)
    # at the calorimeter scale (energy-scale factor undone) the peaks sit at the pole masses
    mw, mt = _w_top_candidates(_undo_jes(ev))
    assert len(mw) > 200
    w_peak, top_peak = _peak(mw, 30, 150, 5.0), _peak(mt, 100, 300, 10.0)
    assert abs(w_peak - 80.4) < 6, w_peak
    assert abs(top_peak - 173) < 12, top_peak
    # the card's correction sqrt((3 - 0.2|eta|)^2 / pT + 1) > 1 moves them up by 5-10 %
    mw_c, mt_c = _w_top_candidates(ev)
    assert 1.03 < _peak(mw_c, 30, 150, 5.0) / w_peak < 1.15
    assert np.median(mt_c) > np.median(mt)


FAST_SMOKE = ("ttbar", "stop_02", "Zp_02")


@pytest.mark.slow
@pytest.mark.parametrize("process", [
    "njets", "w_jets", "z_jets", "gam_jets", "ww", "zz", "ZW", "Wgam", "Zgam", "2gam",
    "single_top", "single_topbar", "single_higgs", "ttbarHiggs", "gluino_01", "gluino_02",
    "stop_01", "Zp_01",
])  # fmt: skip
def test_every_process_runs(process):
    from fastmc.selection import passes_storage

    ev = _run(process, 15, seed=1, batch_size=50)
    assert len(ev) == 15 and passes_storage(ev).all()
    assert ev.meta["sigma_fb"] > 0 and (ev.weight > 0).all()


def test_catalogue_is_covered_by_smoke_tests():
    from fastmc.simulate import CATALOGUE

    slow = test_every_process_runs.pytestmark
    listed = next(m for m in slow if m.name == "parametrize").args[1]
    assert set(listed) | set(FAST_SMOKE) == set(CATALOGUE)


def test_single_top_charge_filter():
    from fastmc.simulate.processes import get_process
    from fastmc.simulate.pythia import PythiaGenerator
    from fastmc.simulate.run import _hard_filter

    proc = get_process("single_top")
    batch = PythiaGenerator(proc, proc.resolve_params(), seed=4).next_batch(60)
    top, antitop = _hard_filter(batch, 6), _hard_filter(batch, -6)
    assert (top ^ antitop).all()  # every event has exactly one of them in its hard process
    assert 0.4 < top.mean() < 0.85  # u-quark valence: more tops than antitops
