"""Where a sample's closest jet pairs sit near the jet radius, split by their rapidity difference.

Usage (from the repository root)::

    .venv/bin/python docs/scripts/closest_pair_split.py REFERENCE.parquet GENERATED.parquet [...] \
        [--radius 0.6] [--window 0.02]

For every file: the share of events whose closest jet pair (j and b) has |dR - R| < window in
(eta, phi) (the boundary measure of ``fastmc evaluate``), the same in (y, phi) (y = atanh(pz / E),
the distance anti-kT uses), and the events of the (y, phi) window split by the rapidity
difference |dy| of that pair (per cent of all events).  Used in docs/results.md (session 4) to
show that a generator's excess at R sits in pairs that graze the circle (|dy| close to R).
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from fastmc.evaluate.features import closest_jet_pair_dr
from fastmc.events import Events
from fastmc.io import read_events

DY_EDGES = (0.0, 0.3, 0.45, 0.55, 0.6, 0.65)


def closest_pair_dy(events: Events) -> tuple[np.ndarray, np.ndarray]:
    """dR in (y, phi) of the closest jet pair of every event and |dy| of that pair, float64 [N]
    (NaN with fewer than two jets)."""
    p4 = events.p4.astype(np.float64)
    jets = events.mask("j", "b")
    with np.errstate(divide="ignore", invalid="ignore"):
        y = np.arctanh(np.clip(p4[..., 1] * np.sinh(p4[..., 2]) / p4[..., 0], -1 + 1e-15, 1 - 1e-15))
    best = np.full(len(events), np.inf)
    best_dy = np.full(len(events), np.nan)
    k = p4.shape[1]
    for i in range(k):
        for j in range(i + 1, k):
            both = jets[:, i] & jets[:, j]
            dphi = np.abs(p4[:, i, 3] - p4[:, j, 3])
            dphi = np.minimum(dphi, 2 * np.pi - dphi)
            dy = np.abs(y[:, i] - y[:, j])
            dr = np.sqrt(dy**2 + dphi**2)
            closer = both & (dr < best)
            best = np.where(closer, dr, best)
            best_dy = np.where(closer, dy, best_dy)
    best[~np.isfinite(best)] = np.nan
    return best, best_dy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+")
    ap.add_argument("--radius", type=float, default=0.6)
    ap.add_argument("--window", type=float, default=0.02)
    args = ap.parse_args()
    labels = " / ".join(f"[{a}, {b})" for a, b in itertools.pairwise(DY_EDGES))
    print(f"| file | within {args.window} of R in (eta, phi) | in (y, phi) | by |dy| {labels} (%) |")
    print("|---|---|---|---|")
    for path in args.files:
        events = read_events(path)
        eta_dr = closest_jet_pair_dr(events)
        y_dr, dy = closest_pair_dy(events)
        near_eta = np.abs(eta_dr - args.radius) < args.window
        near_y = np.abs(y_dr - args.radius) < args.window
        split, _ = np.histogram(dy[near_y], bins=DY_EDGES)
        parts = " / ".join(f"{100 * v / len(events):.2f}" for v in split)
        print(f"| {path} | {100 * near_eta.mean():.2f}% | {100 * near_y.mean():.2f}% | {parts} |")


if __name__ == "__main__":
    main()
