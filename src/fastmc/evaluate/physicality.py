"""Physicality: the share of events that a detector could have produced (design.md section 4)."""

from __future__ import annotations

import numpy as np

from fastmc.evaluate.features import closest_jet_pair_dr
from fastmc.events import ETA, GROUP_OF_TYPE, PHI, PT, TYPE_NAMES, E, Events
from fastmc.selection import passes_channel

__all__ = ["ENERGY_RTOL", "JET_DR_TOL", "JET_RADIUS", "PHI_TOL", "physicality"]

#: Relative tolerance of the check E >= pT cosh(eta) (Dark Machines files print 6 digits).
ENERGY_RTOL = 1e-4
#: Absolute tolerance (radians) of the check phi in (-pi, pi] (float32 rounding of pi).
PHI_TOL = 1e-6
#: Anti-kT jet radius R of the detector (detector.md, fastmc.simulate.card).
JET_RADIUS = 0.6
#: Slack of the jet-separation check, measured in rapidity (what FastJet uses; y = atanh(pz/E)
#: from the stored E, pT, eta): the detector smears jets after clustering, so real jet pairs
#: sit down to dR_y ~ 0.57 (0.566 in the real files; 0.599 in our Pythia samples).
JET_DR_TOL = 0.05


def physicality(events: Events, *, channel: str | None = None, jet_radius: float = JET_RADIUS) -> dict[str, float]:
    """Share of events that are physically valid, overall and per check.

    Checks (an event is valid when it passes all of them):

    - ``known_types``: every type code is 0..7 (0 = padding);
    - ``finite``: all four-vectors, MET and METphi finite; E, pT, MET >= 0;
    - ``energy``: every object has E >= pT cosh(eta) * (1 - ENERGY_RTOL), relative tolerance
      ``ENERGY_RTOL`` = 1e-4 (6-digit rounding of the Dark Machines files);
    - ``phi``: every object phi and METphi in (-pi, pi], with ``PHI_TOL`` = 1e-6 rad slack;
    - ``order``: objects in Dark Machines order (jets, electrons, muons, photons; each group by
      descending pT; padding only after the last object);
    - ``jet_separation``: no two jets closer than the anti-kT radius in rapidity and azimuth,
      dR_y >= ``jet_radius`` - ``JET_DR_TOL`` (0.6 - 0.05);
    - ``selection`` (only when ``channel`` is given): passes
      :func:`fastmc.selection.passes_channel`.

    Returns ``{"n_events": N, "valid": share, "<check>": share, ...}`` (shares in [0, 1]; NaN
    shares for an empty sample).
    """
    n = len(events)
    t = events.types.astype(np.int64)
    real = t != 0
    p4 = events.p4.astype(np.float64)
    known = ((t >= 0) & (t < len(TYPE_NAMES))).all(axis=1)
    finite = np.isfinite(p4).all(axis=(1, 2)) & np.isfinite(events.met) & np.isfinite(events.met_phi)
    with np.errstate(invalid="ignore"):
        finite &= ((p4[..., E] >= 0) & (p4[..., PT] >= 0)).all(axis=1) & (events.met >= 0)
        with np.errstate(over="ignore"):
            need = p4[..., PT] * np.cosh(p4[..., ETA]) * (1 - ENERGY_RTOL)
        energy = (~real | (p4[..., E] >= need)).all(axis=1)
        phi_ok = lambda a: (a > -np.pi - PHI_TOL) & (a <= np.pi + PHI_TOL)  # noqa: E731
        phi = (~real | phi_ok(p4[..., PHI])).all(axis=1) & phi_ok(events.met_phi.astype(np.float64))
    # group rank along the slots; padding ranks last, so an object after padding is disorder
    rank = np.where(real, GROUP_OF_TYPE[np.clip(t, 0, len(TYPE_NAMES) - 1)], 99)
    pt = np.where(real, p4[..., PT], -np.inf)
    if t.shape[1] > 1:
        same = rank[:, 1:] == rank[:, :-1]
        with np.errstate(invalid="ignore"):
            ordered = (rank[:, 1:] >= rank[:, :-1]) & (~same | ~real[:, 1:] | (pt[:, 1:] <= pt[:, :-1]))
        order = ordered.all(axis=1) & known
    else:
        order = known.copy()
    checks: dict[str, np.ndarray] = {
        "known_types": known,
        "finite": finite,
        "energy": energy,
        "phi": phi,
        "order": order,
        "jet_separation": ~(closest_jet_pair_dr(events, rapidity=True) < jet_radius - JET_DR_TOL),
    }
    if channel is not None:
        checks["selection"] = passes_channel(events, channel) & finite
    valid = np.logical_and.reduce(list(checks.values())) if n else np.zeros(0, bool)
    share = (lambda m: float(m.mean())) if n else (lambda m: float("nan"))
    out: dict[str, float] = {"n_events": float(n), "valid": share(valid)}
    out.update({k: share(v) for k, v in checks.items()})
    return out

