"""Events <-> awkward (vector behaviours) and pandas; hand-written four-vector code vs vector."""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import vector

from fastmc.errors import MissingExtraError
from fastmc.events import TYPE_NAMES, Events
from fastmc.io import read_events, write_events
from test_events import make_events


@pytest.fixture
def events(rng: np.random.Generator) -> Events:
    return make_events(rng, n=200, k=12)


def test_awkward_round_trip_with_vector_behaviours(events: Events) -> None:
    before = dict(ak.behavior)
    arr = events.to_awkward()
    assert ak.behavior == before  # behaviours travel with the array, nothing global
    assert len(arr) == len(events)
    assert ak.fields(arr.objects) == ["obj_type", "E", "pt", "eta", "phi"]
    assert "?" not in str(arr.type)
    assert isinstance(arr.objects, vector.backends.awkward.MomentumArray4D)
    assert ak.to_list(ak.num(arr.objects)) == events.n_objects.tolist()
    # vector's mass and px agree with the padded numpy kinematics
    mass = ak.to_numpy(ak.flatten(arr.objects.mass))
    assert np.allclose(mass, events.mass()[events.types != 0], rtol=1e-4, atol=1e-2)
    px = ak.to_numpy(ak.flatten(arr.objects.px))
    assert np.allclose(px, events.cartesian()[..., 1][events.types != 0], rtol=1e-5, atol=1e-4)
    assert ak.to_list(arr.process) == events.process.tolist()
    back = Events.from_awkward(arr)
    assert back.equals(events) and back.max_objects == events.max_objects
    # slices and a sum of four-vectors keep the behaviours
    two = arr[ak.num(arr.objects) >= 2]
    pair = two.objects[:, 0] + two.objects[:, 1]
    assert isinstance(pair, vector.backends.awkward.MomentumArray4D)
    assert Events.from_awkward(arr[5:17]).equals(events[5:17])


def test_from_awkward_any_vector_coordinates(events: Events) -> None:
    arr = events.to_awkward()
    o = arr.objects
    cartesian = ak.zip(
        {"obj_type": o.obj_type, "px": o.px, "py": o.py, "pz": o.pz, "E": o.E}, depth_limit=2
    )
    plain = ak.zip({"objects": cartesian, "met": arr.met, "met_phi": arr.met_phi}, depth_limit=1)
    back = Events.from_awkward(plain, max_objects=events.max_objects)
    assert np.array_equal(back.types, events.types)
    assert np.allclose(back.p4, events.p4, rtol=1e-4, atol=1e-3)
    assert back.process_names == ("unknown",)
    assert np.array_equal(back.event_id, np.arange(len(events)))
    assert np.all(back.weight == 1)


def test_from_awkward_errors(events: Events) -> None:
    arr = events.to_awkward()
    with pytest.raises(ValueError, match=r"needs the fields \['met'\]"):
        Events.from_awkward(ak.without_field(arr, "met"))
    no_type = ak.zip({"objects": ak.without_field(arr.objects, "obj_type"), "met": arr.met,
                      "met_phi": arr.met_phi}, depth_limit=1)
    with pytest.raises(ValueError, match="type-code field 'obj_type'"):
        Events.from_awkward(no_type)
    with pytest.raises(ValueError, match="more than max_objects=3"):
        Events.from_awkward(arr, max_objects=3)
    cut = Events.from_awkward(arr, max_objects=3, truncate=True)
    assert np.array_equal(cut.types, events.types[:, :3])
    holes = ak.concatenate([arr.met[:3], ak.Array([None])])
    bad = ak.zip({"objects": arr.objects[:4], "met": holes, "met_phi": arr.met_phi[:4]},
                 depth_limit=1)
    with pytest.raises(ValueError, match="met has missing values"):
        Events.from_awkward(bad)


def test_awkward_reads_parquet_files_directly(events: Events, tmp_path: Path) -> None:
    path = tmp_path / "e.parquet"
    write_events(path, events)
    back = Events.from_awkward(ak.from_parquet(path), max_objects=events.max_objects)
    assert back.equals(events)
    assert back.equals(read_events(path))


def test_pandas_export_events_and_objects(events: Events) -> None:
    pd = pytest.importorskip("pandas")
    df = events.to_pandas()
    assert list(df.columns) == ["event_id", "process", "weight", "met", "met_phi", "n_objects"]
    assert df.index.name == "entry" and len(df) == len(events)
    assert df["process"].tolist() == events.process.tolist()
    assert df.attrs["units"]["met"] == "GeV"
    obj = events.to_pandas("objects")
    assert obj.index.names == ["entry", "object"]
    assert len(obj) == int(events.n_objects.sum())
    assert obj["name"].tolist() == [TYPE_NAMES[t] for t in events.types[events.types != 0]]
    assert obj.attrs["units"]["pt"] == "GeV" and obj.attrs["type_codes"]["2"] == "b"
    # per-event sums from the object table match HT
    jets = obj[obj["name"].isin(["j", "b"])]
    ht = jets.groupby(level="entry")["pt"].sum().reindex(df.index, fill_value=0.0)
    assert np.allclose(ht.to_numpy(), events.ht(), rtol=1e-5)
    joined = obj.join(df[["met"]], on="entry")
    assert np.allclose(joined["met"].to_numpy(), np.repeat(events.met, events.n_objects))
    with pytest.raises(ValueError, match="level must be"):
        events.to_pandas("jets")
    assert isinstance(df, pd.DataFrame)


def test_pandas_export_of_observables(events: Events) -> None:
    pytest.importorskip("pandas")
    from fastmc.evaluate.observables import compute_observables
    from fastmc.interop import observables_to_pandas

    obs = compute_observables(events)
    df = observables_to_pandas(events)
    assert list(df.columns) == [*obs.names, "weight"]
    assert np.array_equal(df[list(obs.names)].to_numpy(), obs.values, equal_nan=True)
    assert df.attrs["units"]["m_jj"] == "GeV" and df.attrs["units"]["jet1_phi"] == "rad"


def test_pandas_missing_names_the_extra(events: Events, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(MissingExtraError, match=r"fastmc\[pandas\]"):
        events.to_pandas()


# -------------------------------------------------- hot-path four-vector code checked with vector
def test_hot_path_kinematics_match_vector(events: Events) -> None:
    from fastmc.evaluate.observables import compute_observables

    valid = events.types != 0
    p4 = events.p4.astype(np.float64)
    v = vector.array({"E": p4[..., 0], "pt": p4[..., 1], "eta": p4[..., 2], "phi": p4[..., 3]})
    c = events.cartesian()
    for i, name in enumerate(("E", "px", "py", "pz")):
        assert np.allclose(c[..., i][valid], getattr(v, name)[valid], rtol=1e-12, atol=1e-9)
    assert np.allclose(events.mass()[valid], v.mass[valid], rtol=1e-9, atol=1e-6)

    # the evaluation's m_jj and dR_jj (two leading jets by pT) against vector
    obs = compute_observables(events)
    arr = events.to_awkward()
    jets = arr.objects[(arr.objects.obj_type == 1) | (arr.objects.obj_type == 2)]
    jets = jets[ak.argsort(jets.pt, ascending=False, stable=True)]
    two = ak.num(jets) >= 2
    j1, j2 = jets[two][:, 0], jets[two][:, 1]
    m_jj = ak.to_numpy((j1 + j2).mass)
    dr = ak.to_numpy(j1.deltaR(j2))
    assert np.allclose(obs["m_jj"][two], m_jj, rtol=1e-4, atol=1e-2)
    assert np.allclose(obs["dr_jj"][two], dr, rtol=1e-5, atol=1e-5)
    assert np.all(np.isnan(obs["m_jj"][~ak.to_numpy(two)]))


def test_detector_momentum_conversion_matches_vector(rng: np.random.Generator) -> None:
    from fastmc.simulate.detector import _delta_r, _pt_eta_phi

    px, py, pz = (rng.normal(0, 100, 500) for _ in range(3))
    pt, eta, phi = _pt_eta_phi(px, py, pz)
    v = vector.array({"px": px, "py": py, "pz": pz})
    assert np.allclose(pt, v.pt) and np.allclose(eta, v.eta) and np.allclose(phi, v.phi)
    w = vector.array({"px": py, "py": pz, "pz": px})
    assert np.allclose(_delta_r(eta, phi, w.eta, w.phi), v.deltaR(w))
