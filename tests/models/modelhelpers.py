"""Helpers of the models tests: tiny model settings and small synthetic events."""

from __future__ import annotations

import numpy as np

from fastmc.events import Events

#: Small widths so every test runs in a fraction of a second.
TINY = {
    "latent_dim": 4,
    "branch_widths": (16,),
    "trunk_widths": (16,),
    "decoder_widths": (16,),
    "head_width": 16,
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


def head(raw, n: int):
    """The first ``n`` events of a RawBatch."""
    import dataclasses

    return type(raw)(**{f.name: getattr(raw, f.name)[:n] for f in dataclasses.fields(raw)})
