"""Helpers of the models and workflows tests: tiny model settings, small synthetic events,
and their fixtures (imported by tests/models/conftest.py and tests/workflows/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fastmc.data.batch import RawBatch
from fastmc.events import Events

#: Small widths so every test runs in a fraction of a second.
TINY = {
    "latent_dim": 4,
    "branch_widths": (16,),
    "trunk_widths": (16,),
    "decoder_widths": (16,),
    "head_width": 16,
}

#: Tiny settings of every registered model (a new model family adds its own here).
TINY_CONFIGS = {
    "beta-vae": TINY,
    "alpha-vae": TINY,
    "flow": {"transforms": 1, "hidden": 16, "layers": 1, "bins": 4, "embedding": 4,
             "max_patterns": 16},
}

#: Tiny flow-matching settings of the flow (mode: matching, issue 13).
TINY_MATCHING = {"mode": "matching", "cfm_dim": 16, "cfm_layers": 1, "cfm_heads": 2,
                 "embedding": 4, "max_patterns": 16, "ode_steps": 3}

#: Further (registry name, settings) cases of the model contract: modes of a family whose
#: network differs (a registered name runs with TINY_CONFIGS under its own name).
MODEL_VARIANTS = {
    "flow-matching": ("flow", TINY_MATCHING),
    "flow-coupling-linear": ("flow", {**TINY_CONFIGS["flow"], "mode": "coupling", "linear_mixing": True}),
}


def make_events(n: int, seed: int = 0, process: str = "proc") -> Events:
    """``n`` synthetic events (GeV): 1-6 jets (some b), sometimes a lepton or a photon."""
    rng = np.random.default_rng(seed)
    k = 19
    types = np.zeros((n, k), np.int8)
    p4 = np.zeros((n, k, 4), np.float32)
    for i in range(n):
        objs = [rng.choice([1, 2], p=[0.8, 0.2]) for _ in range(rng.integers(1, 7))]
        if rng.random() < 0.3:
            objs.append(rng.integers(3, 7))
        if rng.random() < 0.1:
            objs.append(7)
        for j, t in enumerate(objs):
            pt = rng.exponential(120) + 30
            eta = rng.normal(0, 1.2)
            m = rng.uniform(2, 20) if t <= 2 else 0.0
            e = np.sqrt((pt * np.cosh(eta)) ** 2 + m**2)
            types[i, j] = t
            p4[i, j] = (e * 1.0001, pt, eta, rng.uniform(-np.pi, np.pi))
    met = rng.exponential(150, n) + 20
    ev = Events.from_arrays(
        types=types,
        p4=p4,
        met=met,
        met_phi=rng.uniform(-np.pi, np.pi, n),
        process=process,
        weight=0.01,
    )
    return ev.sorted()


def fit_steps(model, raw, steps: int, *, lr: float, generator) -> float:
    """``steps`` Adam steps of ``model.training_loss`` on the same batch ``raw`` (noise from
    ``generator``); the last loss."""
    import torch

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss = None
    for _ in range(steps):
        loss, _ = model.training_loss(raw, generator=generator)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float("nan") if loss is None else float(loss.detach())


def jet_pair_distances(ev: Events, i: int, *, rapidity: bool = False) -> np.ndarray:
    """dR in (eta, phi), or (y, phi) with ``rapidity``, of every pair of jets (j and b) of
    event ``i``, float64 [pairs]."""
    jets = ev.mask("j", "b")[i]
    p4 = ev.p4[i, jets].astype(np.float64)
    eta, phi = p4[:, 2], p4[:, 3]
    if rapidity:
        eta = np.arctanh(p4[:, 1] * np.sinh(eta) / p4[:, 0])
    dp = np.remainder(phi[:, None] - phi[None, :] + np.pi, 2 * np.pi) - np.pi
    dr = np.sqrt((eta[:, None] - eta[None, :]) ** 2 + dp**2)
    return dr[np.triu_indices(len(eta), 1)]


def head(raw, n: int):
    """The first ``n`` events of a RawBatch."""
    import dataclasses

    return type(raw)(**{f.name: getattr(raw, f.name)[:n] for f in dataclasses.fields(raw)})


@pytest.fixture(scope="session")
def events() -> Events:
    return make_events(64, seed=1)


@pytest.fixture
def raw(events: Events) -> RawBatch:
    return RawBatch.from_events(events)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An event store of 600 synthetic events of one process (train 480, val 60, test 60)."""
    from fastmc.data.store import prepare
    from fastmc.io import write_events

    root = tmp_path_factory.mktemp("models_store")
    csv = root / "tiny.csv"
    write_events(csv, make_events(600, seed=7, process="ttbar"))
    store = root / "store"
    prepare(csv, store, val=0.1, test=0.1, seed=0)
    return store


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny networks run fastest on one thread (and the 2 cores are shared): use one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def assert_jets_separated(model, ev: Events) -> None:
    """Every pair of jets of every event at least the model's jet radius apart: in (y, phi)
    with ``jet_azimuth: allowed`` (built in, in float64; the rapidity recomputed here from the
    float32 E, pT and eta written out is off by up to ~cosh(y)^2 x 1e-7, so 1e-4 slack), else
    in (eta, phi) (rejection on the values written out: no slack)."""
    par = model.parameterisation if hasattr(model, "parameterisation") else model
    allowed = par.jet_azimuth == "allowed"
    radius = float(par.jet_radius) - (1e-4 if allowed else 0.0)
    for i in range(len(ev)):
        d = jet_pair_distances(ev, i, rapidity=allowed)
        assert (d >= radius).all(), (i, d.min(), radius)


def object_jet_distances(ev: Events, i: int, codes: tuple[int, ...] = (3, 4, 5, 6, 7)) -> np.ndarray:
    """(y, phi) distance of every object of type ``codes`` of event ``i`` to its nearest jet
    (j or b), float64 [n] (empty without jets); y recomputed from the float32 E, pT, eta."""
    p4 = ev.p4[i].astype(np.float64)
    real = ev.types[i] > 0
    y = np.arctanh(p4[:, 1] * np.sinh(p4[:, 2]) / np.where(real, p4[:, 0], 1.0))
    jets = np.isin(ev.types[i], (1, 2))
    objs = np.isin(ev.types[i], codes)
    if not jets.any() or not objs.any():
        return np.zeros(0)
    dp = np.remainder(p4[objs, 3][:, None] - p4[jets, 3][None, :] + np.pi, 2 * np.pi) - np.pi
    return np.sqrt((y[objs][:, None] - y[jets][None, :]) ** 2 + dp**2).min(axis=1)


def assert_isolated(model, ev: Events) -> None:
    """Every electron, muon and photon of every event with jets at least its group's isolation
    radius from every jet, in (y, phi) (built in, in float64; 1e-4 slack for the rapidity
    recomputed from float32 values)."""
    radius = model.parameterisation.isolation_radius
    assert radius is not None
    for codes, g in (((3, 4), 1), ((5, 6), 2), ((7,), 3)):
        for i in range(len(ev)):
            d = object_jet_distances(ev, i, codes)
            assert (d >= radius[g] - 1e-4).all(), (i, codes, d, radius[g])


def fitted_flow(events: Events, settings: dict, *, seed: int = 0):
    """A structure-first flow built from ``settings`` (torch seeded with ``seed`` first) and
    fitted on ``events`` (untrained: its network is the initial one)."""
    import torch

    from fastmc.models import build_model

    torch.manual_seed(seed)
    model = build_model("flow", settings)
    model.fit_data(RawBatch.from_events(events))
    return model
