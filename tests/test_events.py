"""Tests of the Events type, phi wrapping and the Dark Machines selections."""

from __future__ import annotations

import numpy as np
import pytest

from fastmc.events import PAD, TYPE_CODES, Events, wrap_phi
from fastmc.selection import passes_channel, passes_storage


def make_events(rng: np.random.Generator, n: int = 50, k: int = 19) -> Events:
    nobj = rng.integers(0, 8, size=n)
    types = np.zeros((n, k), np.int8)
    p4 = np.zeros((n, k, 4), np.float32)
    for i, m in enumerate(nobj):
        types[i, :m] = rng.integers(1, 8, size=m)
        pt = rng.uniform(20, 500, size=m)
        eta = rng.uniform(-2.5, 2.5, size=m)
        p4[i, :m] = np.stack(
            [pt * np.cosh(eta) * 1.01, pt, eta, rng.uniform(-np.pi, np.pi, m)], axis=1
        )
    return Events.from_arrays(
        types=types,
        p4=p4,
        met=rng.uniform(0, 500, n),
        met_phi=rng.uniform(-np.pi, np.pi, n),
        process=rng.choice(["ttbar", "njets"], size=n),
        weight=rng.uniform(0, 1, n),
    )


def test_shapes_are_validated():
    with pytest.raises(ValueError, match="p4 must have shape"):
        Events.from_arrays(
            types=np.zeros((2, 3)), p4=np.zeros((2, 4, 4)), met=np.zeros(2), met_phi=np.zeros(2)
        )
    with pytest.raises(ValueError, match="met must have shape"):
        Events.from_arrays(
            types=np.zeros((2, 3)), p4=np.zeros((2, 3, 4)), met=np.zeros(3), met_phi=np.zeros(2)
        )


def test_dtypes_and_process_names(rng):
    ev = make_events(rng)
    assert ev.types.dtype == np.int8 and ev.p4.dtype == np.float32
    assert ev.weight.dtype == np.float64 and ev.event_id.dtype == np.int64
    assert set(ev.process) <= {"ttbar", "njets"}
    assert len(ev) == 50 and ev.max_objects == 19


def test_indexing_and_concatenate_merge_process_names(rng):
    a = make_events(rng, 10)
    b = Events.from_arrays(
        types=a.types, p4=a.p4, met=a.met, met_phi=a.met_phi, process="stop_02", weight=a.weight
    )
    both = Events.concatenate([a, b])
    assert len(both) == 20
    assert list(both.process[:10]) == list(a.process)
    assert set(both.process[10:]) == {"stop_02"}
    assert both[10:].equals(b)
    assert len(both[both.met > 100]) == int((both.met > 100).sum())
    assert len(both[3]) == 1 and len(both[-1]) == 1


def test_concatenate_rejects_mixed_widths(rng):
    with pytest.raises(ValueError, match="different widths"):
        Events.concatenate([make_events(rng, 3, 19), make_events(rng, 3, 20)])


def test_with_max_objects_pads_and_truncates(rng):
    ev = make_events(rng)
    wide = ev.with_max_objects(25)
    assert wide.max_objects == 25 and (wide.types[:, 19:] == PAD).all()
    assert wide.with_max_objects(19).equals(ev)
    with pytest.raises(ValueError, match="more than 3 objects"):
        ev.with_max_objects(3)
    cut = ev.with_max_objects(3, truncate=True)
    assert cut.max_objects == 3 and (cut.n_objects <= 3).all()


def test_sorted_gives_dark_machines_order(rng):
    ev = make_events(rng).sorted()
    group = np.array([99, 0, 0, 1, 1, 2, 2, 3])[ev.types]
    assert (np.diff(group, axis=1) >= 0).all()
    same = (np.diff(group, axis=1) == 0) & (ev.types[:, 1:] != PAD)
    assert (np.diff(ev.pt, axis=1)[same] <= 0).all()
    # sorting twice changes nothing
    assert ev.sorted().equals(ev)


def test_kinematics(rng):
    ev = make_events(rng)
    jets = ev.mask("j", "b")
    np.testing.assert_allclose(ev.ht(), np.where(jets, ev.pt, 0).sum(1), rtol=1e-6)
    c = ev.cartesian()
    np.testing.assert_allclose(np.hypot(c[..., 1], c[..., 2]), ev.pt, rtol=1e-5)
    real = ev.types != PAD
    assert (ev.mass()[real] > 0).all()
    counts = ev.counts()
    assert sum(counts.values()).tolist() == ev.n_objects.tolist()
    assert set(counts) == set(TYPE_CODES)


def test_wrap_phi():
    phi = np.array([0.0, np.pi, -np.pi, 3 * np.pi, -3.5, 7.0])
    w = wrap_phi(phi)
    assert ((w > -np.pi) & (w <= np.pi)).all()
    np.testing.assert_allclose(np.cos(w), np.cos(phi), atol=1e-12)
    assert w[2] == pytest.approx(np.pi)


def _one_event(objs, met):
    k = 19
    types = np.zeros((1, k), np.int8)
    p4 = np.zeros((1, k, 4), np.float32)
    for i, (t, pt, eta) in enumerate(objs):
        types[0, i] = TYPE_CODES[t]
        p4[0, i] = (pt * np.cosh(eta), pt, eta, 0.1 * i)
    return Events.from_arrays(types=types, p4=p4, met=[met], met_phi=[0.0])


def test_channel_1_cuts():
    good = _one_event([("j", 250, 0), ("j", 200, 0), ("b", 100, 1), ("j", 60, 2)], met=250)
    assert passes_channel(good, "chan1").tolist() == [True]
    three_jets = _one_event([("j", 350, 0), ("j", 200, 0), ("j", 100, 1)], met=250)
    assert passes_channel(three_jets, "chan1").tolist() == [False]
    low_met = _one_event([("j", 250, 0), ("j", 200, 0), ("b", 100, 1), ("j", 60, 2)], met=100)
    assert passes_channel(low_met, "chan1").tolist() == [False]
    assert passes_channel(low_met, "chan3").tolist() == [True]
    with pytest.raises(ValueError, match="unknown channel"):
        passes_channel(good, "chan9")


def test_lepton_channels_and_storage():
    ev = _one_event([("e-", 30, 0), ("m+", 20, 0), ("e+", 16, 1)], met=60)
    assert passes_channel(ev, "chan2a").tolist() == [True]
    assert passes_channel(ev, "chan2b").tolist() == [False]  # HT = 0 < 50
    assert passes_storage(ev).tolist() == [True]
    crack = _one_event([("e-", 30, 1.4)], met=60)
    assert passes_storage(crack).tolist() == [False]
    soft_jet = _one_event([("j", 59, 0)], met=60)
    assert passes_storage(soft_jet).tolist() == [False]
