"""simulate(): determinism, provenance, stored-object cuts, storage requirement, jet spacing."""

from __future__ import annotations

import numpy as np
import pytest

from fastmc.events import ETA, PT, Events
from fastmc.selection import passes_channel, passes_storage

pytestmark = pytest.mark.simulate
pytest.importorskip("pythia8mc")
pytest.importorskip("fastjet")


def _run(process, n, **kw):
    from fastmc.simulate import simulate

    return Events.concatenate(list(simulate(process, n, **kw)))


def test_same_seed_gives_identical_events():
    a = _run("ttbar", 20, seed=5, batch_size=25)
    b = _run("ttbar", 20, seed=5, batch_size=25)
    c = _run("ttbar", 20, seed=6, batch_size=25)
    assert a.equals(b)
    assert a.p4.tobytes() == b.p4.tobytes() and a.met.tobytes() == b.met.tobytes()
    assert not np.array_equal(a.met, c.met)


def test_counts_weights_and_meta(ttbar_small):
    ev = ttbar_small
    m = ev.meta
    assert len(ev) == 300 and ev.max_objects == 19
    assert m["process"] == "ttbar" and m["seed"] == 11 and m["jobs"] == 1
    assert m["n_generated"] >= 300 and m["channel"] is None
    assert m["pythia_version"].startswith("8.3")
    # Pythia's LO ttbar cross section at 13 TeV is about 500 pb
    assert 3e5 < m["sigma_fb"] < 8e5
    np.testing.assert_allclose(ev.weight, m["sigma_fb"] * 10 / m["n_generated"])
    np.testing.assert_allclose(ev.weight.sum(), m["sigma_stored_fb"] * 10)
    assert set(ev.process) == {"ttbar"}
    assert len(np.unique(ev.event_id)) == len(ev)


def test_every_event_passes_storage_and_objects_pass_cuts(ttbar_small):
    ev = ttbar_small
    assert passes_storage(ev).all()
    pt, aeta = ev.p4[..., PT], np.abs(ev.p4[..., ETA])
    jets, leps, phos = ev.mask("j", "b"), ev.mask("e-", "e+", "m-", "m+"), ev.mask("g")
    assert (pt[jets] > 20).all() and (aeta[jets] < 2.8).all()
    assert (pt[leps] > 15).all() and (aeta[leps] < 2.7).all()
    assert (pt[phos] > 20).all() and (aeta[phos] < 2.37).all()
    # E >= pT cosh(eta) up to float32 rounding (massive jets, massless-ish leptons)
    real = ev.types > 0
    e = ev.p4[..., 0]
    assert (e[real] >= pt[real] * np.cosh(ev.p4[..., ETA][real]) * (1 - 1e-4)).all()
    # Dark Machines order
    assert ev.equals(ev.sorted())
    # ttbar: about 4 jets of which 1-2 b-tagged per event
    counts = ev.counts()
    assert 3 < (counts["j"] + counts["b"]).mean() < 7
    assert 0.8 < counts["b"].mean() < 1.8


def test_jets_are_at_least_r_apart_in_rapidity_phi(ttbar_small):
    ev = ttbar_small
    jets = ev.mask("j", "b")
    c = ev.cartesian()
    with np.errstate(divide="ignore", invalid="ignore"):
        y = 0.5 * np.log((c[..., 0] + c[..., 3]) / (c[..., 0] - c[..., 3]))
    phi = ev.p4[..., 3]
    pair = jets[:, :, None] & jets[:, None, :] & ~np.eye(ev.max_objects, dtype=bool)
    dphi = np.remainder(phi[:, :, None] - phi[:, None, :] + np.pi, 2 * np.pi) - np.pi
    dr = np.hypot(y[:, :, None] - y[:, None, :], dphi)
    assert pair.sum() > 1000
    assert dr[pair].min() > 0.6 - 2e-3  # anti-kT R = 0.6 (float32 rounding)


def test_channel_selection_and_pthat_default():
    ev = _run("ttbar", 3, seed=2, channel="chan3", batch_size=100)
    assert passes_channel(ev, "chan3").all()
    assert ev.meta["params"]["pthat_min"] == 200.0  # the chan3 generator cut of the catalogue
    assert ev.meta["channel"] == "chan3"


def test_signal_and_zprime_run(tmp_path):
    from fastmc.io import read_events
    from fastmc.simulate import simulate_to_file

    stop = _run("stop_02", 10, seed=3, batch_size=20)
    assert stop.meta["params"] == {"m_stop": 800.0, "m_neutralino": 100.0}
    assert stop.met.mean() > 100  # two neutralinos
    meta = simulate_to_file(
        tmp_path / "zp.parquet", "Zp_02", 10, seed=3, batch_size=20, params={"m_zp": 1500}
    )
    zp = read_events(tmp_path / "zp.parquet")
    assert zp.meta["process"] == "Zp_02" and zp.meta["sigma_fb"] == meta["sigma_fb"]
    np.testing.assert_allclose(zp.weight, meta["weight"])
    leptons = zp.mask("e-", "e+", "m-", "m+").sum(axis=1)
    assert (leptons >= 1).mean() > 0.7
    # two leading opposite-sign leptons near the 1500 GeV Z' mass
    c = zp.cartesian()
    lead = np.argsort(~zp.mask("e-", "e+", "m-", "m+"), axis=1, kind="stable")[:, :2]
    two = (leptons >= 2)
    p = np.take_along_axis(c, lead[..., None], axis=1).sum(axis=1)[two]
    mll = np.sqrt(np.clip(p[:, 0] ** 2 - (p[:, 1:] ** 2).sum(axis=1), 0, None))
    assert two.sum() >= 4 and np.median(mll) == pytest.approx(1500, rel=0.1)


def test_bad_arguments():
    from fastmc.simulate import simulate
    from fastmc.simulate.processes import UnknownProcessError

    with pytest.raises(ValueError, match="n_events"):
        simulate("ttbar", 0, seed=1)
    with pytest.raises(ValueError, match="channel"):
        simulate("ttbar", 10, seed=1, channel="chan9")
    with pytest.raises(ValueError, match="m_gluino"):
        simulate("ttbar", 10, seed=1, params={"m_gluino": 1000})
    with pytest.raises(UnknownProcessError, match="tW associated"):
        simulate("wtop", 10, seed=1)
    with pytest.raises(UnknownProcessError, match="Supported: njets"):
        simulate("nonsense", 10, seed=1)


def test_pythia_errors_are_reported():
    from fastmc.simulate.processes import get_process
    from fastmc.simulate.pythia import PythiaError, PythiaGenerator

    proc = get_process("ttbar")
    with pytest.raises(PythiaError, match="rejected the setting 'Foo:bar = 1'"):
        PythiaGenerator(proc, proc.resolve_params(), seed=1, extra_settings=("Foo:bar = 1",))
    with pytest.raises(ValueError, match="top neutralino"):
        stop = get_process("stop_02")
        PythiaGenerator(stop, stop.resolve_params({"m_stop": 200}), seed=1)


def test_truncation_is_counted():
    ev = _run("ttbar", 20, seed=9, batch_size=50, max_objects=4)
    assert ev.max_objects == 4
    assert ev.meta["n_truncated"] > 0


def test_worker_errors_reach_the_caller_with_jobs2():
    from fastmc.simulate.pythia import PythiaError

    with pytest.raises(PythiaError, match="Foo:bar"):
        _run("ttbar", 4, seed=1, jobs=2, extra_settings=("Foo:bar = 1",))


def test_settings_database_is_found_or_named(tmp_path, monkeypatch):
    """Pythia's xmldoc is found next to a relocated install; a missing one gives a clear error."""
    from fastmc.simulate.processes import get_process
    from fastmc.simulate.pythia import PythiaError, PythiaGenerator, pythia_xmldoc

    monkeypatch.delenv("PYTHIA8DATA", raising=False)
    prefix = tmp_path / "prefix"
    (prefix / "share" / "Pythia8" / "xmldoc").mkdir(parents=True)
    assert pythia_xmldoc([tmp_path / "nowhere", prefix]) == ""  # no Index.xml yet
    (prefix / "share" / "Pythia8" / "xmldoc" / "Index.xml").write_text("<x/>")
    assert pythia_xmldoc([tmp_path / "nowhere", prefix]) == str(prefix / "share/Pythia8/xmldoc")
    monkeypatch.setenv("PYTHIA8DATA", str(tmp_path / "given"))
    assert pythia_xmldoc([prefix]) == str(tmp_path / "given")

    # the real install is found without PYTHIA8DATA; a wrong PYTHIA8DATA is named in the error
    monkeypatch.delenv("PYTHIA8DATA")
    assert pythia_xmldoc().endswith("xmldoc")
    monkeypatch.setenv("PYTHIA8DATA", str(tmp_path / "empty"))
    proc = get_process("ttbar")
    with pytest.raises(PythiaError, match=r"settings database.*PYTHIA8DATA"):
        PythiaGenerator(proc, proc.resolve_params(), seed=1)
