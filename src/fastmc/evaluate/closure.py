"""Marginal closure of a weighted sample: does every feature's histogram match a target's?

A density-ratio reweighting (the classifier refinement of :mod:`fastmc.workflows.refine`)
should make the weighted generated events follow the target events in every projection, not
only in the classifier's score.  :func:`marginal_closure` compares, feature by feature, the
target's histogram with the weighted histogram of the other sample in up to ``bins``
quantile bins of the target (plus one bin for missing values, NaN) and returns the chi2 per
degree of freedom of each feature:

    chi2 = sum over bins of (p_t - p_w)^2 / (var_t + var_w),   ndf = bins - 1

with ``p_t`` the target's share of events in the bin (variance ``n_bin / N^2``) and ``p_w``
the weighted share (variance ``sum w^2 / (sum w)^2`` over the bin).  Two samples of the same
density give chi2 / ndf about 1 per feature; a shifted feature gives more.  One projection at
a time: a correlation can still be wrong where every marginal closes (the whole-event
classifier of :mod:`fastmc.evaluate.wholeevent` is the test of that).
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["Closure", "marginal_closure"]


@dataclasses.dataclass(frozen=True)
class Closure:
    """Per-feature chi2 / ndf (``chi2_ndf`` float [F], ``names`` [F]: the features compared,
    those with at least 3 distinct target values) and their mean."""

    names: tuple[str, ...]
    chi2_ndf: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.chi2_ndf.mean()) if len(self.chi2_ndf) else float("nan")

    def worst(self, k: int = 5) -> list[tuple[str, float]]:
        """The ``k`` features with the largest chi2 / ndf, largest first."""
        order = np.argsort(-self.chi2_ndf, kind="stable")[:k]
        return [(self.names[i], float(self.chi2_ndf[i])) for i in order]


def marginal_closure(target: np.ndarray, sample: np.ndarray, weights: np.ndarray | None = None,
                     *, names: tuple[str, ...] | list[str], bins: int = 20) -> Closure:
    """Closure of ``sample`` [M, F] weighted by ``weights`` [M] (None: 1) against ``target``
    [N, F], feature by feature (NaN = missing, its own bin); ``names`` [F].  Features with
    fewer than 3 distinct target values (after the quantile binning) are left out.
    ValueError on mismatched shapes, negative or all-zero weights."""
    target, sample = np.asarray(target, np.float64), np.asarray(sample, np.float64)
    if target.ndim != 2 or sample.ndim != 2 or len({target.shape[1], sample.shape[1], len(names)}) != 1:
        raise ValueError(f"marginal_closure: target [N, F], sample [M, F] and names [F] must "
                         f"agree, got {target.shape}, {sample.shape}, {len(names)} names")
    w = np.ones(len(sample)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(sample),) or (w < 0).any() or not w.sum() > 0:
        raise ValueError("marginal_closure: weights must be [M], >= 0 and not all zero")
    kept, chi = [], []
    for j, name in enumerate(names):
        t = target[:, j]
        finite = t[~np.isnan(t)]
        if len(finite) == 0:
            continue
        edges = np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1)))
        if len(edges) < 3:
            continue
        nb = len(edges)  # len(edges) - 1 quantile bins, then one for NaN
        ct, vt = _hist(t, np.ones(len(t)), edges, nb)
        cw, vw = _hist(sample[:, j], w, edges, nb)
        st, sw = ct.sum(), cw.sum()
        num = (ct / st - cw / sw) ** 2
        var = vt / st**2 + vw / sw**2
        used = var > 0
        chi.append(float((num[used] / var[used]).sum()) / max(int(used.sum()) - 1, 1))
        kept.append(name)
    return Closure(names=tuple(kept), chi2_ndf=np.asarray(chi, np.float64))


def _hist(v: np.ndarray, w: np.ndarray, edges: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """(sum of w, sum of w^2) per bin: the quantile bins (values outside the edges in the
    first or last), then the missing values (NaN) in bin ``nb - 1``."""
    inner = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, len(edges) - 2)
    idx = np.where(np.isnan(v), nb - 1, inner)
    return np.bincount(idx, w, nb), np.bincount(idx, w * w, nb)
