"""The headline of ``fastmc evaluate``: a classifier on whole-event features.

Protocol (``design.md`` section 4, issue 12):

- **Test**: class 0 = the *whole* reference (``N_ref`` events), class 1 = the whole generated
  sample (``N_gen``).  No sample is shrunk to the size of another.  The events are split into
  ``folds`` stratified folds (seeded); a classifier trained on the other folds scores each
  fold, so **every event is scored exactly once** by a classifier that never saw it.  Training
  weights give both classes the same total weight, so that w = p / (1 - p) estimates the
  density ratio p_gen(x) / p_ref(x) (arXiv:2305.16774).
- **Classifier**: scikit-learn's ``HistGradientBoostingClassifier`` with its default
  hyper-parameters (learning rate 0.1, 31 leaves, 255 bins), up to ``max_iter`` trees and
  early stopping (10% of the training folds, 10 rounds without improvement); missing objects
  stay NaN (handled natively).  ``model="mlp"``: a small torch MLP (3 x 128, SiLU, Adam,
  early stopping) on standardised features with presence flags (``fastmc[torch]``).
- **AUC** (weighted ROC AUC of the out-of-fold scores) with the Hanley-McNeil standard error
  at the Kish effective sizes of both classes.
- **Floor**: the same test between two disjoint parts of the reference: ``m = min(N_gen,
  N_ref // 2)`` reference events play "generated", the other ``N_ref - m`` play "reference".
  When ``N_gen <= N_ref / 2`` that is the generated sample's own size; otherwise (``N_gen``
  large) the floor is computed at ``m = N_ref // 2`` and the report says so.  One floor per
  size ``m``, shared by samples of that size.
- **significance** = (AUC - floor AUC) / sqrt(err^2 + floor err^2); "flagged" when >= 5.
- **per jet multiplicity**: AUC (and floor) of the same out-of-fold scores inside each bin of
  the number of jets; a bin needs ``min_bin_events`` events of each class, the top bins are
  merged into ">= k" until it has them; sparser bins are listed as skipped.
- **weights**: w = p / (1 - p) of every event; tail fractions (w < 0.2, w < 0.5, w > 2, w > 5)
  of generated and of reference events; a generator that fails somewhere puts generated
  events at large w (regions the reference does not populate) and reference events at small w
  (regions the generator misses).  The ``n_artificial`` generated events with the largest w
  are listed with readable features.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any

import numpy as np

from fastmc.config import derive_seed
from fastmc.errors import require
from fastmc.evaluate.classifier import auc_error
from fastmc.evaluate.features import WholeEventFeatures, as_presence, sparse_columns
from fastmc.evaluate.mlp import fit_predict_mlp

__all__ = [
    "ClassifierConfig",
    "WholeEventResult",
    "kfold_scores",
    "multiplicity_bins",
    "summarise",
    "whole_event_floor",
    "whole_event_test",
]

#: Tail thresholds of the classifier weight w = p / (1 - p).
WEIGHT_TAILS: tuple[tuple[str, float], ...] = (("lt_0.2", 0.2), ("lt_0.5", 0.5), ("gt_2", 2.0), ("gt_5", 5.0))
#: Readable features listed for the most artificial events (name in the feature table).
_READABLE = ("n_jets", "n_bjets", "n_electrons", "n_muons", "n_photons", "jet1_logpt", "jet2_logpt",
             "jet3_logpt", "jet4_logpt", "met_log", "ht_log", "dr_jj_min", "m_j1j2", "m_j1j2j3")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ClassifierConfig:
    """Settings of the whole-event classifier test (keyword-only, validated).

    ``model``: ``"hgb"`` (gradient boosting, default) or ``"mlp"`` (torch); ``folds``: k of
    the k-fold scoring (>= 2); ``max_iter``: trees (or MLP epochs) at most; ``min_bin_events``:
    events per class a jet-multiplicity bin needs; ``n_artificial``: generated events listed
    as most artificial; ``threads``: OpenMP/BLAS threads (None: the environment's setting).
    """

    model: str = "hgb"
    folds: int = 5
    max_iter: int = 100
    min_bin_events: int = 100
    n_artificial: int = 10
    threads: int | None = 1

    def __post_init__(self) -> None:
        if self.model not in ("hgb", "mlp"):
            raise ValueError(f"ClassifierConfig.model must be 'hgb' or 'mlp', got {self.model!r}")
        if self.folds < 2:
            raise ValueError(f"ClassifierConfig.folds must be >= 2, got {self.folds}")
        if self.max_iter < 1 or self.min_bin_events < 1 or self.n_artificial < 0:
            raise ValueError("ClassifierConfig: max_iter and min_bin_events must be >= 1, n_artificial >= 0")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"ClassifierConfig.threads must be >= 1 or None, got {self.threads}")


@dataclasses.dataclass(frozen=True, eq=False)
class WholeEventResult:
    """One whole-event classifier test (reference = class 0, other = class 1).

    ``auc``, ``auc_err``: weighted out-of-fold ROC AUC and its Hanley-McNeil error;
    ``n_reference``/``n_other``: events of each class (all scored once); ``p_reference`` [N_ref]
    and ``p_other`` [N_other]: out-of-fold probabilities of class 1 (in the order of the
    inputs); ``n_jets_reference``/``n_jets_other`` [N]: jet multiplicities; ``weight_*``: event
    weights.
    """

    auc: float
    auc_err: float
    n_reference: int
    n_other: int
    p_reference: np.ndarray
    p_other: np.ndarray
    n_jets_reference: np.ndarray
    n_jets_other: np.ndarray
    weight_reference: np.ndarray
    weight_other: np.ndarray

    def ratio_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """w = p / (1 - p) of reference [N_ref] and other [N_other] events (p clipped to
        [1e-6, 1 - 1e-6])."""
        return _w(self.p_reference), _w(self.p_other)


def _w(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return p / (1 - p)


def _kish(w: np.ndarray) -> float:
    s2 = float((w * w).sum())
    return float(w.sum()) ** 2 / s2 if s2 > 0 else 0.0


def _auc(p0: np.ndarray, p1: np.ndarray, w0: np.ndarray, w1: np.ndarray) -> tuple[float, float]:
    """Weighted ROC AUC of scores ``p1`` (positives) against ``p0`` and its error."""
    if len(p0) < 1 or len(p1) < 1:
        return math.nan, math.nan
    skm = require("sklearn.metrics", "stats")
    y = np.concatenate([np.zeros(len(p0)), np.ones(len(p1))])
    auc = float(skm.roc_auc_score(y, np.concatenate([p0, p1]), sample_weight=np.concatenate([w0, w1])))
    return auc, auc_error(auc, _kish(w1), _kish(w0))


def _prebin(x_tr: np.ndarray, x_te: np.ndarray, max_bins: int = 255) -> tuple[np.ndarray, np.ndarray]:
    """Quantile bin codes (float, NaN kept) of every column with more than ``max_bins`` distinct
    training values, edges from the unweighted training quantiles: what scikit-learn's binner
    does without weights.  With sample weights, scikit-learn >= 1.8 computes weighted
    percentiles per column, ~100x slower; the trees only see bin codes anyway."""
    x_tr, x_te = x_tr.copy(), x_te.copy()
    q = np.linspace(0, 1, max_bins + 1)[1:-1]
    for j in range(x_tr.shape[1]):
        col = x_tr[:, j]
        vals = col[~np.isnan(col)]
        if len(np.unique(vals[: 4 * max_bins])) < max_bins and len(np.unique(vals)) <= max_bins:
            continue
        edges = np.unique(np.quantile(vals, q))
        for x in (x_tr, x_te):
            c = x[:, j]
            nan = np.isnan(c)
            x[:, j] = np.where(nan, np.nan, np.searchsorted(edges, np.where(nan, 0, c), side="right"))
    return x_tr, x_te


def _fit_predict_hgb(x_tr: np.ndarray, y_tr: np.ndarray, w_tr: np.ndarray, x_te: np.ndarray,
                     cfg: ClassifierConfig, seed: int) -> np.ndarray:
    ensemble = require("sklearn.ensemble", "stats")
    # a column with (almost) no values in the training part trips scikit-learn's binner when
    # the early-stopping split leaves it all-NaN: it becomes its presence flag (0/1), which
    # keeps the information "this object exists"
    sparse = sparse_columns(x_tr)
    if sparse.any():
        x_tr, x_te = as_presence(x_tr, sparse), as_presence(x_te, sparse)
    x_tr, x_te = _prebin(x_tr, x_te)
    clf = ensemble.HistGradientBoostingClassifier(
        max_iter=cfg.max_iter, early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
        random_state=seed,
    )
    clf.fit(x_tr, y_tr, sample_weight=w_tr)
    return clf.predict_proba(x_te)[:, 1]


def _fit_predict_mlp(x_tr: np.ndarray, y_tr: np.ndarray, w_tr: np.ndarray, x_te: np.ndarray,
                     cfg: ClassifierConfig, seed: int) -> np.ndarray:
    return fit_predict_mlp(x_tr, y_tr, w_tr, x_te, max_epochs=cfg.max_iter, seed=seed)


def kfold_scores(x0: np.ndarray, x1: np.ndarray, w0: np.ndarray, w1: np.ndarray, *,
                 config: ClassifierConfig | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of class 1 for every row of ``x0`` [N0, D] (class 0) and ``x1``
    [N1, D] (class 1), each scored once by a classifier trained on the other folds.

    Training weights: the event weights ``w0`` [N0], ``w1`` [N1] rescaled so that both classes
    carry the same total weight.  Returns (p0 [N0], p1 [N1]).  Seeded.
    """
    cfg = config or ClassifierConfig()
    ms = require("sklearn.model_selection", "stats")
    x = np.concatenate([x0, x1]).astype(np.float64)
    y = np.concatenate([np.zeros(len(x0)), np.ones(len(x1))])
    w = np.concatenate([w0 / w0.sum(), w1 / w1.sum()]) * len(x) / 2
    rng = np.random.default_rng(seed)
    folds = ms.StratifiedKFold(n_splits=cfg.folds, shuffle=True, random_state=int(rng.integers(2**31)))
    p = np.empty(len(x))
    fit = _fit_predict_hgb if cfg.model == "hgb" else _fit_predict_mlp
    with _threads(cfg.threads):
        for tr, te in folds.split(x, y):
            p[te] = fit(x[tr], y[tr], w[tr], x[te], cfg, int(rng.integers(2**31)))
    return p[: len(x0)], p[len(x0) :]


def _threads(n: int | None) -> contextlib.AbstractContextManager[Any]:
    """At most ``n`` OpenMP/BLAS threads inside the block (None: leave the setting alone)."""
    if n is None:
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=n)


def _run(x0: WholeEventFeatures, x1: WholeEventFeatures, cfg: ClassifierConfig, seed: int) -> WholeEventResult:
    if len(x0) < 2 * cfg.folds or len(x1) < 2 * cfg.folds:
        raise ValueError(
            f"the whole-event classifier needs at least {2 * cfg.folds} events per class, got "
            f"{len(x0)} and {len(x1)}"
        )
    both = np.concatenate([x0.values, x1.values])
    p0, p1 = kfold_scores(both[: len(x0)], both[len(x0) :], x0.weight, x1.weight, config=cfg, seed=seed)
    auc, err = _auc(p0, p1, x0.weight, x1.weight)
    return WholeEventResult(
        auc=auc, auc_err=err, n_reference=len(x0), n_other=len(x1), p_reference=p0, p_other=p1,
        n_jets_reference=x0.n_jets, n_jets_other=x1.n_jets, weight_reference=x0.weight,
        weight_other=x1.weight,
    )


def whole_event_test(reference: WholeEventFeatures, generated: WholeEventFeatures, *,
                     config: ClassifierConfig | None = None, seed: int = 0) -> WholeEventResult:
    """Whole reference (class 0) against the whole generated sample (class 1), k-fold scored
    (see the module docstring).  Features from
    :func:`~fastmc.evaluate.features.whole_event_features` with the same config."""
    if reference.names != generated.names:
        raise ValueError("reference and generated features were made with different FeatureConfig")
    return _run(reference, generated, config or ClassifierConfig(), seed)


def whole_event_floor(reference: WholeEventFeatures, n_other: int, *,
                      config: ClassifierConfig | None = None, seed: int = 0) -> WholeEventResult:
    """The floor of a test against ``n_other`` generated events: ``m = min(n_other, N_ref // 2)``
    random reference events (seeded) as class 1 against the other ``N_ref - m`` as class 0."""
    m = min(n_other, len(reference) // 2)
    perm = np.random.default_rng(derive_seed(seed, "whole-event floor", m)).permutation(len(reference))
    return _run(reference.take(np.sort(perm[m:])), reference.take(np.sort(perm[:m])),
                config or ClassifierConfig(), seed)


def multiplicity_bins(n0: np.ndarray, n1: np.ndarray, min_events: int) -> tuple[list[tuple[int, int]], list[int]]:
    """Jet-multiplicity bins [(lo, hi)] (hi inclusive; hi = -1 means "and above") with at least
    ``min_events`` events of each class, and the values skipped for too few events.
    ``n0`` [N0], ``n1`` [N1]: jet multiplicities of the two classes."""
    top = int(max(n0.max(initial=0), n1.max(initial=0)))
    # the top bin ">= k": the largest k with enough events of both classes
    k = top
    while k > 0 and ((n0 >= k).sum() < min_events or (n1 >= k).sum() < min_events):
        k -= 1
    bins: list[tuple[int, int]] = []
    skipped: list[int] = []
    for v in range(k):
        if (n0 == v).sum() >= min_events and (n1 == v).sum() >= min_events:
            bins.append((v, v))
        elif (n0 == v).sum() or (n1 == v).sum():
            skipped.append(v)
    if (n0 >= k).sum() >= min_events and (n1 >= k).sum() >= min_events:
        bins.append((k, -1) if k < top else (k, k))
    elif (n0 >= k).sum() or (n1 >= k).sum():
        skipped.append(k)
    return bins, skipped


def _bin_label(lo: int, hi: int) -> str:
    return f">={lo}" if hi < 0 else str(lo)


def _in_bin(n: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return (n >= lo) if hi < 0 else (n == lo)


def _tails(w: np.ndarray, ew: np.ndarray) -> dict[str, float]:
    tot = ew.sum()
    out = {}
    for name, t in WEIGHT_TAILS:
        sel = (w < t) if name.startswith("lt") else (w > t)
        out[f"frac_w_{name}"] = float(ew[sel].sum() / tot) if tot > 0 else math.nan
    return out


def _artificial(res: WholeEventResult, features: WholeEventFeatures, k: int) -> list[dict[str, Any]]:
    _, w1 = res.ratio_weights()
    top = np.argsort(-w1, kind="stable")[:k]
    rows = []
    for i in top:
        row: dict[str, Any] = {"index": int(i), "p": float(res.p_other[i]), "w": float(w1[i])}
        for name in _READABLE:
            if name not in features.names:
                continue
            v = float(features[name][i])
            if name.endswith("_logpt"):
                row[name.replace("_logpt", "_pt_gev")] = math.exp(v) if math.isfinite(v) else math.nan
            elif name.endswith("_log"):
                row[name.replace("_log", "_gev")] = math.expm1(v) if math.isfinite(v) else math.nan
            else:
                row[name] = v
        rows.append(row)
    return rows


def summarise(res: WholeEventResult, floor: WholeEventResult, generated: WholeEventFeatures,
              cfg: ClassifierConfig) -> dict[str, Any]:
    """The JSON-ready record of one sample (the keys of ``metrics.json["whole_event"]``, see
    ``docs/evaluation.md``)."""
    err = math.hypot(res.auc_err, floor.auc_err)
    sig = (res.auc - floor.auc) / err if err > 0 else math.nan
    bins, skipped = multiplicity_bins(res.n_jets_reference, res.n_jets_other, cfg.min_bin_events)
    per = []
    for lo, hi in bins:
        s0, s1 = _in_bin(res.n_jets_reference, lo, hi), _in_bin(res.n_jets_other, lo, hi)
        auc, aerr = _auc(res.p_reference[s0], res.p_other[s1], res.weight_reference[s0], res.weight_other[s1])
        f0, f1 = _in_bin(floor.n_jets_reference, lo, hi), _in_bin(floor.n_jets_other, lo, hi)
        if f0.sum() >= 10 and f1.sum() >= 10:
            fa, fe = _auc(floor.p_reference[f0], floor.p_other[f1], floor.weight_reference[f0],
                          floor.weight_other[f1])
        else:
            fa, fe = math.nan, math.nan
        e = math.hypot(aerr, fe)
        per.append({
            "n_jets": _bin_label(lo, hi), "auc": auc, "auc_err": aerr, "floor_auc": fa, "floor_auc_err": fe,
            "significance": (auc - fa) / e if e > 0 and math.isfinite(e) else math.nan,
            "n_reference": int(s0.sum()), "n_generated": int(s1.sum()),
        })
    w0, w1 = res.ratio_weights()
    _, fw1 = floor.ratio_weights()
    return {
        "auc": res.auc,
        "auc_err": res.auc_err,
        "floor_auc": floor.auc,
        "floor_auc_err": floor.auc_err,
        "significance": sig,
        "flagged": bool(math.isfinite(sig) and sig >= 5),
        "n_reference": res.n_reference,
        "n_generated": res.n_other,
        "floor_n_reference": floor.n_reference,
        "floor_n_generated": floor.n_other,
        "model": cfg.model,
        "folds": cfg.folds,
        "per_n_jets": per,
        "per_n_jets_skipped": [str(v) for v in skipped],
        "weights": {
            "generated": _tails(w1, res.weight_other),
            "reference": _tails(w0, res.weight_reference),
            "floor_generated": _tails(fw1, floor.weight_other),
        },
        "most_artificial": _artificial(res, generated, cfg.n_artificial),
    }
