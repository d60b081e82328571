"""Distances between two samples: per observable, whole event, multiplicities, physicality.

Every function here compares two *given* samples; the statistical floors (the same metric
between two reference samples of the same size, repeated over seeded splits) are computed by
:mod:`fastmc.evaluate.floors`.

Per observable (1-D, event weights supported, NaN entries dropped, i.e. each distance compares
the distributions of the observable *where it exists*; how often it exists is compared by the
multiplicity chi2):

- :func:`wasserstein1`: Wasserstein-1 distance (scipy), in the units of the observable; the
  protocol divides it by the reference's standard deviation;
- :func:`ks_statistic`: the two-sample Kolmogorov-Smirnov statistic sup|F1 - F2| (weighted ECDFs;
  equals ``scipy.stats.ks_2samp(...).statistic`` for unit weights);
- :func:`histogram_distances`: Jensen-Shannon divergence (base 2, in [0, 1]) and chi2/ndf of two
  histograms normalised to unit area, on fixed bins (:func:`make_bins`, under/overflow included).

Whole event (event weights supported: weighted means and covariances, weighted MMD^2; unit
weights give the unweighted estimates):

- :func:`fpd`: Frechet distance of Gaussian fits (Kansal et al., arXiv:2211.10295) evaluated at
  several sample sizes and linearly extrapolated in 1/N to 1/N -> 0;
- :func:`kpd`: unbiased MMD^2 with the polynomial kernel (x.y/d + 1)^4, median over batches;

both on :func:`event_features`, the observable vector standardised by the reference.

Multiplicities: :func:`multiplicity_counts` and :func:`histogram_distances` on integer bins.
Physicality: :func:`physicality` (defined in :mod:`fastmc.evaluate.physicality`).
"""

from __future__ import annotations

import warnings

import numpy as np

from fastmc.evaluate.observables import MISSING_GROUPS, Observables, presence
from fastmc.evaluate.physicality import ENERGY_RTOL, PHI_TOL, physicality
from fastmc.events import TYPE_NAMES, Events

__all__ = [
    "ENERGY_RTOL",
    "PHI_TOL",
    "FeatureScaler",
    "event_features",
    "fpd",
    "frechet_distance",
    "histogram_distances",
    "kpd",
    "ks_statistic",
    "make_bins",
    "mmd_poly_unbiased",
    "multiplicity_counts",
    "physicality",
    "w1_ks",
    "wasserstein1",
]

# ---------------------------------------------------------------------------- 1-D distances
def _clean(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
    keep = np.isfinite(x)
    return x[keep], w[keep]


def w1_ks(
    x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, wy: np.ndarray | None = None
) -> tuple[float, float]:
    """(Wasserstein-1, KS statistic) of samples ``x`` [N] and ``y`` [M] from one sort.

    W1 = integral |F_x - F_y| dt (units of x), KS = sup_t |F_x(t) - F_y(t)| (in [0, 1]) with
    weighted ECDFs F.  NaN entries are dropped; (NaN, NaN) when either side is empty.
    Equal to ``scipy.stats.wasserstein_distance`` and, for unit weights,
    ``scipy.stats.ks_2samp(...).statistic``.
    """
    x, wx = _clean(x, wx)
    y, wy = _clean(y, wy)
    if not len(x) or not len(y) or wx.sum() <= 0 or wy.sum() <= 0:
        return float("nan"), float("nan")
    ox, oy = np.argsort(x, kind="stable"), np.argsort(y, kind="stable")
    x, wx, y, wy = x[ox], wx[ox], y[oy], wy[oy]
    cx = np.concatenate([[0.0], np.cumsum(wx) / wx.sum()])
    cy = np.concatenate([[0.0], np.cumsum(wy) / wy.sum()])
    grid = np.sort(np.concatenate([x, y]), kind="stable")
    fx = cx[np.searchsorted(x, grid, side="right")]
    fy = cy[np.searchsorted(y, grid, side="right")]
    diff = np.abs(fx - fy)
    w1 = float((diff[:-1] * np.diff(grid)).sum())
    return w1, float(diff.max())


def wasserstein1(
    x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, wy: np.ndarray | None = None
) -> float:
    """Wasserstein-1 distance between samples ``x`` [N] and ``y`` [M] (units of x), weighted.

    NaN entries are dropped; NaN is returned when either side has nothing left.
    """
    return w1_ks(x, y, wx, wy)[0]


def ks_statistic(
    x: np.ndarray, y: np.ndarray, wx: np.ndarray | None = None, wy: np.ndarray | None = None
) -> float:
    """Kolmogorov-Smirnov statistic sup_t |F_x(t) - F_y(t)| of weighted ECDFs, in [0, 1].

    NaN entries dropped; NaN when either side is empty.  For unit weights this equals
    ``scipy.stats.ks_2samp(x, y).statistic``.
    """
    return w1_ks(x, y, wx, wy)[1]


def make_bins(reference: np.ndarray, kind: str = "continuous", n_bins: int = 40) -> np.ndarray:
    """Bin edges [B+1] for an observable, fixed by the reference values (NaN ignored).

    ``"count"``: one bin per integer 0..max(reference), plus an overflow bin to +inf;
    ``"angle"``: ``n_bins`` equal bins on [-pi, pi]; otherwise ``n_bins`` equal bins between the
    0.1% and 99.9% quantiles of the reference, with an underflow bin from -inf and an overflow
    bin to +inf, so that no value is lost.
    """
    ref = np.asarray(reference, np.float64)
    ref = ref[np.isfinite(ref)]
    if kind == "count":
        top = int(ref.max()) if len(ref) else 0
        return np.concatenate([np.arange(top + 2) - 0.5, [np.inf]])
    if kind == "angle":
        return np.linspace(-np.pi, np.pi, n_bins + 1)
    if not len(ref):
        return np.array([-np.inf, 0.0, np.inf])
    lo, hi = np.quantile(ref, [0.001, 0.999])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.concatenate([[-np.inf], np.linspace(lo, hi, n_bins + 1), [np.inf]])


def _hist(x: np.ndarray, w: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if np.isinf(edges[0]) or np.isinf(edges[-1]):
        # np.histogram cannot take infinite edges: digitize instead
        idx = np.searchsorted(edges, x, side="right") - 1
        idx = np.clip(idx, 0, len(edges) - 2)
        h = np.bincount(idx, weights=w, minlength=len(edges) - 1)
        h2 = np.bincount(idx, weights=w * w, minlength=len(edges) - 1)
        return h, h2
    xc = np.clip(x, edges[0], edges[-1])
    h, _ = np.histogram(xc, bins=edges, weights=w)
    h2, _ = np.histogram(xc, bins=edges, weights=w * w)
    return h, h2


def histogram_distances(
    x: np.ndarray,
    y: np.ndarray,
    edges: np.ndarray,
    wx: np.ndarray | None = None,
    wy: np.ndarray | None = None,
) -> tuple[float, float]:
    """(JS divergence, chi2/ndf) of the histograms of ``x`` and ``y`` on ``edges``.

    Both histograms are normalised to unit area (NaN dropped).  JS is base 2, in [0, 1].
    chi2 = sum_i (p_i - q_i)^2 / (s2x_i / Wx^2 + s2y_i / Wy^2) over bins that are not empty in
    both, where s2 is the sum of squared weights in the bin and W the total weight; ndf is
    that number of bins minus 1 (the normalisation).  chi2/ndf is ~1 for compatible samples.
    """
    x, wx = _clean(x, wx)
    y, wy = _clean(y, wy)
    if not len(x) or not len(y) or wx.sum() <= 0 or wy.sum() <= 0:
        return float("nan"), float("nan")
    hx, sx = _hist(x, wx, edges)
    hy, sy = _hist(y, wy, edges)
    tx, ty = hx.sum(), hy.sum()
    p, q = hx / tx, hy / ty
    m = 0.5 * (p + q)
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    js = float(max(0.5 * kl_p.sum() + 0.5 * kl_q.sum(), 0.0))
    var = sx / tx**2 + sy / ty**2
    used = var > 0
    ndf = int(used.sum()) - 1
    if ndf < 1:
        return js, 0.0
    chi2 = float(((p - q)[used] ** 2 / var[used]).sum())
    return js, chi2 / ndf


# ---------------------------------------------------------------------------- multiplicities
def multiplicity_counts(events: Events) -> np.ndarray:
    """Objects per type per event, float64 [N, 7] for the types j, b, e-, e+, m-, m+, g."""
    counts = events.counts()
    return np.stack([counts[t] for t in TYPE_NAMES[1:]], axis=1).astype(np.float64)


# ---------------------------------------------------------------------------- whole event
class FeatureScaler:
    """Standardisation of the observable vector for FPD and KPD, fitted on a reference.

    ``transform(obs)`` returns float64 [N, D + 4].  Energy-like observables (E, pT, MET, HT,
    masses: those with ``spec.log``) first become log(1 + x / GeV), so that a few TeV-scale
    forward jets do not dominate Gaussian fits and polynomial kernels.  Each column then has
    the reference mean (over the events where it exists) subtracted and is divided by the
    reference standard deviation (1 where that is 0); NaN (missing object) becomes 0, i.e.
    the reference mean.  The last 4 columns are the presence indicators of
    :data:`~fastmc.evaluate.observables.MISSING_GROUPS` (has leading jet, second jet,
    leading lepton, second lepton), standardised the same way: they carry the "missing"
    information the 0-fill removes, so that a generator that drops leptons is seen by FPD
    and KPD.  Standardised values are clipped to +-20 reference standard deviations.
    """

    def __init__(self, reference: Observables) -> None:
        self._log = np.array([s.log for s in reference.specs] + [False] * len(MISSING_GROUPS))
        raw = self._raw(reference)
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
            mean = np.nanmean(raw, axis=0) if len(raw) else np.zeros(raw.shape[1])
            std = np.nanstd(raw, axis=0) if len(raw) else np.ones(raw.shape[1])
        self.mean = np.nan_to_num(mean)
        std = np.nan_to_num(std)
        self.std = np.where(std > 0, std, 1.0)
        self.names = (*reference.names, *(f"has_{g}" for g in MISSING_GROUPS))

    def _raw(self, obs: Observables) -> np.ndarray:
        raw = np.concatenate([obs.values, presence(obs)], axis=1)
        with np.errstate(invalid="ignore"):
            raw[:, self._log] = np.log1p(np.clip(raw[:, self._log], 0, None))
        return raw

    def transform(self, obs: Observables) -> np.ndarray:
        out = (self._raw(obs) - self.mean) / self.std
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=20.0, neginf=-20.0), -20.0, 20.0)


def event_features(obs: Observables, reference: Observables) -> np.ndarray:
    """``FeatureScaler(reference).transform(obs)``: float64 [N, D + 4] (see FeatureScaler)."""
    return FeatureScaler(reference).transform(obs)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray) -> float:
    """Frechet distance |mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)) of two Gaussians.

    ``mu`` [D], ``s`` [D, D].  The trace of the matrix square root is computed from the
    eigenvalues of S1^(1/2) S2 S1^(1/2) (symmetric, clipped at 0), which is stable for singular
    covariances.
    """
    diff = mu1 - mu2
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    tr = float(np.sqrt(np.clip(ev, 0, None)).sum())
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr)


def _mean_cov(x: np.ndarray, w: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] of ``x`` [N, D]; with weights ``w`` [N] (>= 0) the
    weighted mean and the unbiased weighted covariance (reliability weights: divided by
    sum w - sum w^2 / sum w, which is N - 1 for unit weights)."""
    if w is None:
        mu = x.mean(axis=0)
        xc = x - mu
        return mu, (xc.T @ xc) / max(len(x) - 1, 1)
    sw = float(w.sum())
    mu = (w @ x) / sw
    xc = x - mu
    norm = sw - float(w @ w) / sw
    return mu, ((xc * w[:, None]).T @ xc) / (norm if norm > 0 else 1.0)


def _check_weights(w: np.ndarray | None, n: int, name: str) -> np.ndarray | None:
    """``w`` as float64 [n] (None stays None); ValueError for another length, a negative or
    non-finite weight, or a zero total."""
    if w is None:
        return None
    w = np.asarray(w, np.float64)
    if w.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {w.shape}")
    if not np.isfinite(w).all() or (w < 0).any() or not w.sum() > 0:
        raise ValueError(f"{name} must be finite, >= 0 and not all zero")
    return w


def fpd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int | np.random.Generator = 0,
    min_fraction: float = 0.4,
    max_samples: int = 50_000,
    n_points: int = 5,
    n_batches: int = 10,
    wx: np.ndarray | None = None,
    wy: np.ndarray | None = None,
) -> tuple[float, float]:
    """Frechet physics distance between feature sets ``x`` [N, D] and ``y`` [M, D], with event
    weights ``wx`` [N], ``wy`` [M] (>= 0; None: unit) in the Gaussian fits.

    As Kansal et al. (arXiv:2211.10295): at ``n_points`` sample sizes equally spaced in 1/n
    between ``min_fraction * n_max`` and ``n_max = min(N, M, max_samples)``, ``n_batches``
    random subsets of each sample are drawn, Gaussians fitted and their Frechet distance
    averaged; a straight line in 1/n fitted to those averages gives the value at 1/n -> 0
    (the intercept), with its standard error.  Two differences from jetnet's ``fpd``: subsets
    are drawn **without** replacement (so the finite-sample noise scales as 1/n), and the
    intercept is not clipped at 0 (it can be slightly negative when the samples agree, which
    keeps the floor unbiased).  Returns (value, error), unitless when the inputs are
    standardised.
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    wx, wy = _check_weights(wx, len(x), "wx"), _check_weights(wy, len(y), "wy")
    n_max = min(len(x), len(y), max_samples)
    if n_max < 4:
        return float("nan"), float("nan")
    n_min = max(int(min_fraction * n_max), 3)
    sizes = np.unique((1.0 / np.linspace(1.0 / n_min, 1.0 / n_max, n_points)).astype(np.int64))
    vals = []
    for size in sizes:
        pts = []
        # a subset of the full size is the whole sample: one evaluation is enough
        reps = 1 if size >= len(x) and size >= len(y) else n_batches
        for _ in range(reps):
            ix = rng.choice(len(x), size, replace=False) if size < len(x) else slice(None)
            iy = rng.choice(len(y), size, replace=False) if size < len(y) else slice(None)
            m1, s1 = _mean_cov(x[ix], None if wx is None else wx[ix])
            m2, s2 = _mean_cov(y[iy], None if wy is None else wy[iy])
            pts.append(frechet_distance(m1, s1, m2, s2))
        vals.append(np.mean(pts))
    inv = 1.0 / sizes
    vals_a = np.asarray(vals)
    if len(sizes) < 3:
        return float(vals_a[-1]), float("nan")
    design = np.stack([np.ones_like(inv), inv], axis=1)
    coef, *_ = np.linalg.lstsq(design, vals_a, rcond=None)
    resid = vals_a - design @ coef
    dof = len(sizes) - 2
    cov = np.linalg.inv(design.T @ design) * (resid @ resid) / dof
    return float(coef[0]), float(np.sqrt(max(cov[0, 0], 0.0)))


def mmd_poly_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 4, *,
                      wx: np.ndarray | None = None, wy: np.ndarray | None = None) -> float:
    """Unbiased MMD^2 estimate with the kernel k(a, b) = (a.b / D + 1)^degree.

    ``x`` [n, D], ``y`` [m, D]; the diagonal terms are removed from the within-sample sums.
    With event weights ``wx`` [n], ``wy`` [m] every kernel term k(a_i, b_j) counts with
    ``w_i w_j`` and each sum is divided by its total weight (sum_{i != j} w_i w_j within a
    sample): unit weights give the unweighted estimate.
    """
    d = x.shape[1]
    wx = np.ones(len(x)) if wx is None else wx
    wy = np.ones(len(y)) if wy is None else wy

    def ksum(a: np.ndarray, b: np.ndarray, wa: np.ndarray, wb: np.ndarray, diag: bool) -> float:
        k = a @ b.T
        k /= d
        k += 1.0
        if degree == 4:
            k *= k
            k *= k
        else:
            k **= degree
        total = float(wa @ k @ wb)
        if not diag:
            return total / (wa.sum() * wb.sum())
        return (total - float((wa * wa) @ np.diagonal(k))) / (wa.sum() ** 2 - float(wa @ wa))

    return ksum(x, x, wx, wx, True) + ksum(y, y, wy, wy, True) - 2 * ksum(x, y, wx, wy, False)


def kpd(
    x: np.ndarray,
    y: np.ndarray,
    *,
    seed: int | np.random.Generator = 0,
    batch_size: int = 5000,
    n_batches: int = 10,
    wx: np.ndarray | None = None,
    wy: np.ndarray | None = None,
) -> tuple[float, float]:
    """Kernel physics distance: median over ``n_batches`` of the unbiased MMD^2 (degree-4
    polynomial kernel) between random subsets (without replacement) of ``batch_size`` events of
    ``x`` [N, D] and ``y`` [M, D] (capped at min(N, M)), with event weights ``wx`` [N], ``wy``
    [M] (>= 0; None: unit; see :func:`mmd_poly_unbiased`).  Returns (median, half the 16-84%
    interquantile range), as jetnet's ``kpd``.
    """
    rng = np.random.default_rng(seed)
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    wx, wy = _check_weights(wx, len(x), "wx"), _check_weights(wy, len(y), "wy")
    size = min(batch_size, len(x), len(y))
    if size < 2:
        return float("nan"), float("nan")
    vals = []
    for _ in range(n_batches):
        ix = rng.choice(len(x), size, replace=False)
        iy = rng.choice(len(y), size, replace=False)
        vals.append(mmd_poly_unbiased(x[ix], y[iy], wx=None if wx is None else wx[ix],
                                      wy=None if wy is None else wy[iy]))
    lo, hi = np.percentile(vals, [16.0, 84.0])
    return float(np.median(vals)), float((hi - lo) / 2)
