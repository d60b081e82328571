"""Test helpers of the evaluation tests: synthetic events and reading the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastmc.events import TYPE_CODES, Events


def synthetic_events(n: int, seed: int = 0, *, met_scale: float = 1.0, k: int = 19) -> Events:
    """``n`` plausible events (GeV) in Dark Machines order: jets with masses, a few leptons and
    photons (massless), exponential pT spectra, MET ~ 100 GeV.  Jets are spread in phi
    (2 pi / 10 apart, +-0.03), so no two are closer than the jet radius, as anti-kT jets."""
    rng = np.random.default_rng(seed)
    spread = np.random.default_rng([seed, 6])  # its own stream: the other quantities stay as they were
    phi0 = spread.uniform(-np.pi, np.pi, n)
    n_j = np.minimum(rng.poisson(3.0, n) + 1, 10)
    n_l = np.minimum(rng.poisson(0.7, n), 4)
    n_g = np.minimum(rng.poisson(0.3, n), 3)
    types = np.zeros((n, k), np.int8)
    p4 = np.zeros((n, k, 4), np.float32)
    for i in range(k):
        jet = i < n_j
        lep = (i >= n_j) & (i < n_j + n_l)
        pho = (i >= n_j + n_l) & (i < n_j + n_l + n_g)
        t = np.where(jet, np.where(rng.random(n) < 0.2, 2, 1), 0)
        t = np.where(lep, rng.choice([3, 4, 5, 6], n), t)
        t = np.where(pho, TYPE_CODES["g"], t)
        pt = np.where(jet, 30 + rng.exponential(80, n), 10 + rng.exponential(30, n))
        eta = rng.normal(0, 1.5, n)
        phi = rng.uniform(-np.pi, np.pi, n)
        phi = np.where(jet, np.remainder(phi0 + i * 2 * np.pi / 10 + spread.uniform(-0.03, 0.03, n) + np.pi,
                                         2 * np.pi) - np.pi, phi)
        m = np.where(jet, rng.uniform(2, 20, n), 0.0)
        e = np.sqrt(m**2 + (pt * np.cosh(eta)) ** 2)
        real = t > 0
        types[:, i] = t
        p4[:, i] = np.where(real[:, None], np.stack([e, pt, eta, phi], axis=1), 0)
    met = rng.exponential(100, n) * met_scale
    ev = Events.from_arrays(
        types=types,
        p4=p4,
        met=met,
        met_phi=rng.uniform(-np.pi, np.pi, n),
        process="synthetic",
    )
    return ev.sorted()


def read_real(path: Path) -> Events:
    """Read a Dark Machines CSV with fastmc's reader."""
    from fastmc.io import read_events

    return read_events(path)
