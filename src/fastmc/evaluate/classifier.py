"""Classifier two-sample test: can gradient-boosted trees tell generated from reference events?

A :class:`sklearn.ensemble.HistGradientBoostingClassifier` (which handles NaN natively, so
missing objects need no filling) is trained on the observable vector of half of each sample
and its ROC AUC measured on the other, held-out half.  AUC = 0.5 means indistinguishable; the
floor is the same test between two disjoint reference samples of the same size.  The AUC
uncertainty is that of Hanley & McNeil (Radiology 143 (1982) 29), computed with the effective
numbers of held-out events (Kish, (sum w)^2 / sum w^2).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fastmc.errors import require
from fastmc.evaluate._threads import single_threaded

__all__ = ["ClassifierResult", "auc_error", "classifier_test"]


@dataclasses.dataclass(frozen=True)
class ClassifierResult:
    """Held-out AUC of a reference-vs-other classifier.

    ``auc`` in [0, 1] (0.5 = indistinguishable), ``auc_err`` its Hanley-McNeil standard error,
    ``n_train``/``n_test`` events used for training/testing (both classes together).
    """

    auc: float
    auc_err: float
    n_train: int
    n_test: int

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def auc_error(auc: float, n_pos: float, n_neg: float) -> float:
    """Hanley-McNeil standard error of an AUC from ``n_pos`` positive and ``n_neg`` negative
    (possibly effective, non-integer) held-out events."""
    if n_pos < 1 or n_neg < 1:
        return math.nan
    q1 = auc / (2 - auc)
    q2 = 2 * auc**2 / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return math.sqrt(max(var, 0.0))


def _kish(w: np.ndarray) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def classifier_test(
    reference: np.ndarray,
    other: np.ndarray,
    *,
    reference_weight: np.ndarray | None = None,
    other_weight: np.ndarray | None = None,
    seed: int = 0,
    test_fraction: float = 0.5,
    max_iter: int = 100,
) -> ClassifierResult:
    """Train reference (label 0) vs other (label 1) and return the held-out AUC.

    ``reference`` [N, D], ``other`` [M, D]: observable vectors (NaN allowed, any units; trees
    are invariant to monotone rescaling).  Each sample is split at random (seeded) into a
    training part and a test part of ``test_fraction``; a column with fewer than 20 values in
    the training data is replaced by its presence indicator (0/1); weights are normalised so that both
    classes carry the same total weight in training.  The classifier uses early stopping on
    10% of the training data.  Returns :class:`ClassifierResult`.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    ensemble = require("sklearn.ensemble", "stats")
    skm = require("sklearn.metrics", "stats")
    x0, x1 = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    w0 = np.ones(len(x0)) if reference_weight is None else np.asarray(reference_weight, np.float64)
    w1 = np.ones(len(x1)) if other_weight is None else np.asarray(other_weight, np.float64)
    if len(x0) < 10 or len(x1) < 10:
        raise ValueError(f"need at least 10 events per class, got {len(x0)} and {len(x1)}")
    rng = np.random.default_rng(seed)
    p0, p1 = rng.permutation(len(x0)), rng.permutation(len(x1))
    c0, c1 = int(len(x0) * (1 - test_fraction)), int(len(x1) * (1 - test_fraction))
    tr0, te0, tr1, te1 = p0[:c0], p0[c0:], p1[:c1], p1[c1:]
    # A column with (almost) no values in the training data trips sklearn's binner when the
    # early-stopping split leaves it all-NaN; such a column becomes its presence indicator
    # (0/1), which keeps the information "this object exists".
    n_values = (~np.isnan(np.concatenate([x0[tr0], x1[tr1]]))).sum(axis=0)
    sparse = n_values < 20
    if sparse.any():
        x0, x1 = x0.copy(), x1.copy()
        x0[:, sparse] = ~np.isnan(x0[:, sparse])
        x1[:, sparse] = ~np.isnan(x1[:, sparse])
    x_train = np.concatenate([x0[tr0], x1[tr1]])
    y_train = np.concatenate([np.zeros(len(tr0)), np.ones(len(tr1))])
    w_train = np.concatenate([w0[tr0] / w0[tr0].sum(), w1[tr1] / w1[tr1].sum()]) * len(x_train) / 2
    clf = ensemble.HistGradientBoostingClassifier(
        max_iter=max_iter,
        learning_rate=0.1,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=int(rng.integers(2**31)),
    )
    x_test = np.concatenate([x0[te0], x1[te1]])
    y_test = np.concatenate([np.zeros(len(te0)), np.ones(len(te1))])
    w_test = np.concatenate([w0[te0], w1[te1]])
    with single_threaded():
        clf.fit(x_train, y_train, sample_weight=w_train)
        score = clf.predict_proba(x_test)[:, 1]
    auc = float(skm.roc_auc_score(y_test, score, sample_weight=w_test))
    err = auc_error(auc, _kish(w1[te1]), _kish(w0[te0]))
    return ClassifierResult(auc=auc, auc_err=err, n_train=len(x_train), n_test=len(x_test))
