"""Checks that know the detector and the data: boundaries, shared events, memorisation.

- :func:`boundary_checks`: pile-ups of generated events at a boundary the reference does not
  have.  Anti-kT jets of radius R (0.6, ``fastmc.simulate.card``; ``detector.md``) are never
  closer than R (up to the rapidity/pseudorapidity difference: the closest pairs of the real
  files sit at dR >= 0.559), and every object has a pT threshold.  A decoder that pushes
  too-close jets out to R, or clamps pT at the threshold, piles events up there.  Checked: the
  share of events whose closest jet pair has |dR - R| < ``dr_window``; the share with dR <
  R - ``dr_tolerance`` (impossible for anti-kT); and, per object kind, the share of objects
  with pT between the reference's smallest value and its ``pt_quantile`` quantile (the window
  just above the threshold, ~2% of the reference's objects by construction), for jets,
  electrons, muons, photons and for the first to fourth jet by pT separately (a scale shift
  of one jet moves its own threshold).  Each share is
  compared with the reference's: z = (p_gen - p_ref) / sqrt(p_ref (1 - p_ref) / n_ref +
  p_gen (1 - p_gen) / n_gen); **flagged** when z >= 5 and p_gen > 1.5 p_ref (a pile-up) or,
  for the pT windows, z <= -5 and p_gen < p_ref / 1.5 (an emptied edge: a scale shift moves
  the threshold).
- :func:`shared_events`: how many generated events are identical to reference events (an
  evaluation against a copy of itself certifies nothing).
- :func:`memorisation`: distance of each generated event to its closest training event against
  the same for held-out reference events; a generator that copies its training sample puts
  its events closer.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fastmc.config import derive_seed
from fastmc.errors import require
from fastmc.evaluate.features import closest_jet_pair_dr
from fastmc.evaluate.metrics import FeatureScaler
from fastmc.evaluate.observables import compute_observables
from fastmc.evaluate.physicality import JET_DR_TOL, JET_RADIUS
from fastmc.events import PT, Events

__all__ = ["JET_RADIUS", "boundary_checks", "memorisation", "shared_events"]

#: Object kinds of the pT-threshold check: name -> type names.
_KINDS = {"jets": ("j", "b"), "electrons": ("e-", "e+"), "muons": ("m-", "m+"), "photons": ("g",)}


def _compare(p_ref: float, n_ref: int, p_gen: float, n_gen: int, *, deficit: bool) -> dict[str, Any]:
    var = (p_ref * (1 - p_ref) / n_ref if n_ref else math.nan) + (p_gen * (1 - p_gen) / n_gen if n_gen else math.nan)
    if n_ref and n_gen and var == 0:  # both shares 0 (or 1): nothing to see
        z = 0.0 if p_gen == p_ref else math.copysign(math.inf, p_gen - p_ref)
    else:
        z = (p_gen - p_ref) / math.sqrt(var) if var > 0 else math.nan
    pile = (math.isfinite(z) and z >= 5 and p_gen > 1.5 * p_ref) or z == math.inf
    empty = deficit and math.isfinite(z) and z <= -5 and p_gen < p_ref / 1.5
    return {"reference": p_ref, "generated": p_gen, "n_reference": n_ref, "n_generated": n_gen, "z": z,
            "flagged": bool(pile or empty)}


def boundary_checks(reference: Events, generated: Events, *, jet_radius: float = JET_RADIUS,
                    dr_window: float = 0.02, dr_tolerance: float = JET_DR_TOL,
                    pt_quantile: float = 0.02) -> dict[str, Any]:
    """Boundary pile-ups of ``generated`` against ``reference`` (both :class:`Events`, GeV).

    Returns ``{"jet_radius", "dr_window", "closest_pair_near_radius": {...},
    "closest_pair_below_radius": {...}, "pt_near_threshold": {kind: {...}}, "flagged": [names]}``
    where each ``{...}`` holds ``reference``/``generated`` shares, ``n_reference``/
    ``n_generated`` (events with >= 2 jets, or objects of the kind), ``z`` and ``flagged``;
    the pT entries add ``window_gev`` = [lo, hi] (see the module docstring).
    """
    out: dict[str, Any] = {"jet_radius": jet_radius, "dr_window": dr_window, "dr_tolerance": dr_tolerance}
    dr_r, dr_g = closest_jet_pair_dr(reference), closest_jet_pair_dr(generated)
    dr_r, dr_g = dr_r[np.isfinite(dr_r)], dr_g[np.isfinite(dr_g)]

    def share(x: np.ndarray, sel: np.ndarray) -> float:
        return float(sel.mean()) if len(x) else math.nan

    out["closest_pair_near_radius"] = _compare(
        share(dr_r, np.abs(dr_r - jet_radius) < dr_window), len(dr_r),
        share(dr_g, np.abs(dr_g - jet_radius) < dr_window), len(dr_g), deficit=False)
    out["closest_pair_below_radius"] = _compare(
        share(dr_r, dr_r < jet_radius - dr_tolerance), len(dr_r),
        share(dr_g, dr_g < jet_radius - dr_tolerance), len(dr_g), deficit=False)
    pts: dict[str, Any] = {}
    ranked = {f"jet{i}": i for i in range(1, 5)}
    for kind in (*_KINDS, *ranked):
        if kind in ranked:
            r, g = _ranked_jet_pt(reference, ranked[kind]), _ranked_jet_pt(generated, ranked[kind])
        else:
            r = reference.p4[..., PT][reference.mask(*_KINDS[kind])].astype(np.float64)
            g = generated.p4[..., PT][generated.mask(*_KINDS[kind])].astype(np.float64)
        if len(r) < 100 or not len(g):
            pts[kind] = None
            continue
        lo, hi = float(r.min()), float(np.quantile(r, pt_quantile))
        d = _compare(float(((r >= lo) & (r <= hi)).mean()), len(r), float(((g >= lo) & (g <= hi)).mean()), len(g),
                     deficit=True)
        d["window_gev"] = [lo, hi]
        d["below_window"] = float((g < lo).mean())
        pts[kind] = d
    out["pt_near_threshold"] = pts
    flagged = [k for k in ("closest_pair_near_radius", "closest_pair_below_radius") if out[k]["flagged"]]
    flagged += [f"pt_near_threshold/{k}" for k, d in pts.items() if d and d["flagged"]]
    out["flagged"] = flagged
    return out


def _ranked_jet_pt(events: Events, rank: int) -> np.ndarray:
    """pT (GeV) of the ``rank``-th jet by pT of every event that has one, float64 [M]."""
    pt = np.where(events.mask("j", "b"), events.p4[..., PT].astype(np.float64), -np.inf)
    if pt.shape[1] < rank:
        return np.zeros(0)
    v = -np.sort(-pt, axis=1)[:, rank - 1]
    return v[np.isfinite(v)]


def _rows(events: Events) -> np.ndarray:
    """One bytes-comparable row per event (types, four-vectors, MET) as a void array [N]."""
    n = len(events)
    parts = [events.types.reshape(n, -1).astype(np.float32), events.p4.reshape(n, -1),
             events.met[:, None], events.met_phi[:, None]]
    flat = np.ascontiguousarray(np.concatenate(parts, axis=1), dtype=np.float32)
    return flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()


def shared_events(reference: Events, generated: Events) -> int:
    """Number of ``generated`` events identical (bit for bit, after float32 storage) to some
    ``reference`` event.  Objects beyond the common width must be padding."""
    k = max(reference.max_objects, generated.max_objects)
    a, b = reference.with_max_objects(k), generated.with_max_objects(k)
    if not len(a) or not len(b):
        return 0
    return int(np.isin(_rows(b), _rows(a)).sum())


#: Distances (units of the reference std) below this are copies: the nearest-neighbour search
#: computes |x - y| through |x|^2 - 2 x.y + |y|^2, which leaves ~1e-6 for identical rows.
_SAME = 1e-4


def memorisation(train: Events, reference: Events, generated: Events, *, max_queries: int = 5000,
                 max_train: int = 50_000, seed: int = 0) -> dict[str, Any]:
    """Is ``generated`` closer to its training sample than held-out ``reference`` events are?

    Distance: Euclidean on the standardised observable vector of
    :class:`~fastmc.evaluate.metrics.FeatureScaler` (fitted on ``train``; energies as
    log(1 + E/GeV)), to the closest of (at most ``max_train``) training events, for (at most
    ``max_queries``) generated and reference events (seeded subsets).  Reported: the median
    distances, the share of generated and of reference events closer than the reference's 1%
    quantile (``close_*``; ~1% for a generator that does not copy), ``exact_copies`` (distance
    below 1e-4, i.e. a training event repeated), z of the difference and
    ``flagged`` (z >= 5: generated events sit closer to the training sample).
    """
    neighbors = require("sklearn.neighbors", "stats")
    rng = np.random.default_rng(derive_seed(seed, "memorisation"))

    def pick(ev: Events, k: int) -> Events:
        return ev if len(ev) <= k else ev[np.sort(rng.choice(len(ev), k, replace=False))]

    tr, ref, gen = pick(train, max_train), pick(reference, max_queries), pick(generated, max_queries)
    scaler = FeatureScaler(compute_observables(tr))
    x_tr, x_ref, x_gen = (scaler.transform(compute_observables(e)) for e in (tr, ref, gen))
    nn = neighbors.NearestNeighbors(n_neighbors=1).fit(x_tr)
    d_ref = nn.kneighbors(x_ref)[0][:, 0]
    d_gen = nn.kneighbors(x_gen)[0][:, 0]
    cut = float(np.quantile(d_ref, 0.01))
    c = _compare(float((d_ref <= cut).mean()), len(d_ref), float((d_gen <= cut).mean()), len(d_gen), deficit=False)
    return {
        "n_train": len(tr), "n_reference": len(ref), "n_generated": len(gen),
        "median_distance_reference": float(np.median(d_ref)), "median_distance_generated": float(np.median(d_gen)),
        "close_threshold": cut, "close_reference": c["reference"], "close_generated": c["generated"],
        "exact_copies": int((d_gen < _SAME).sum()), "z": c["z"], "flagged": c["flagged"],
    }
