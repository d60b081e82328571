"""A second classifier test with features the whole-event features (and so a refiner) never
see: a cross-check of `fastmc refine` (docs/results.md, session 10 of issue 13).

Usage (from the repository root)::

    .venv/bin/python docs/scripts/auc_other_features.py REFERENCE.parquet SAMPLE.parquet [SAMPLE ...]

Features per event: the first 12 objects' type code, log pT, log E, eta and azimuth relative
to the leading object (NaN where absent), every four-jet invariant mass of the leading six jets
(log(m + 1), GeV), log MET, MET's azimuth relative to the leading object and the number of
jets.  Classifier: scikit-learn's ``HistGradientBoostingClassifier`` (up to 600 trees,
learning rate 0.05, early stopping), 5-fold, every event scored once, classes weighted to the
same total; prints the weighted ROC AUC of each sample against the reference.  Seeded.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from fastmc.events import Events
from fastmc.io import read_events


def features(ev: Events, k: int = 12) -> np.ndarray:
    """The per-event features of the module doc, float64 [N, D] (NaN = absent)."""
    t = ev.types[:, :k].astype(float)
    p = ev.p4[:, :k].astype(np.float64)
    real = t > 0
    lpt = np.where(real, np.log(np.maximum(p[..., 1], 1e-3)), np.nan)
    le = np.where(real, np.log(np.maximum(p[..., 0], 1e-3)), np.nan)
    eta = np.where(real, p[..., 2], np.nan)
    dphi = np.where(real, np.remainder(p[..., 3] - p[:, :1, 3] + np.pi, 2 * np.pi) - np.pi, np.nan)
    nj = np.isin(ev.types, (1, 2)).sum(axis=1)
    e, pt, et, ph = (p[:, :6, i] for i in range(4))
    px, py, pz = pt * np.cos(ph), pt * np.sin(ph), pt * np.sinh(et)
    m4 = []
    for c in itertools.combinations(range(6), 4):
        idx = list(c)
        s = [a[:, idx].sum(axis=1) for a in (e, px, py, pz)]
        m = np.sqrt(np.maximum(s[0] ** 2 - s[1] ** 2 - s[2] ** 2 - s[3] ** 2, 0.0))
        m[nj < max(idx) + 1] = np.nan  # jets come first in Dark Machines order
        m4.append(np.log(m + 1))
    met = np.stack([np.log(ev.met + 1.0),
                    np.remainder(ev.met_phi - p[:, 0, 3] + np.pi, 2 * np.pi) - np.pi], axis=1)
    return np.concatenate([t, lpt, le, eta, dphi, np.stack(m4, axis=1), met, nj[:, None]], axis=1)


def auc(ref: np.ndarray, gen: np.ndarray, seed: int = 0) -> float:
    """5-fold out-of-fold weighted ROC AUC of ``gen`` [N1, D] against ``ref`` [N0, D]."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    x = np.concatenate([ref, gen])
    y = np.r_[np.zeros(len(ref)), np.ones(len(gen))]
    w = np.r_[np.full(len(ref), len(x) / 2 / len(ref)), np.full(len(gen), len(x) / 2 / len(gen))]
    p = np.empty(len(x))
    for tr, te in StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y):
        clf = HistGradientBoostingClassifier(max_iter=600, learning_rate=0.05, early_stopping=True,
                                             validation_fraction=0.1, n_iter_no_change=20,
                                             random_state=seed)
        clf.fit(x[tr], y[tr], sample_weight=w[tr])
        p[te] = clf.predict_proba(x[te])[:, 1]
    return float(roc_auc_score(y, p, sample_weight=w))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reference")
    ap.add_argument("samples", nargs="+")
    args = ap.parse_args()
    ref = features(read_events(args.reference))
    for path in args.samples:
        print(f"{path}: AUC {auc(ref, features(read_events(path))):.3f}", flush=True)


if __name__ == "__main__":
    main()
