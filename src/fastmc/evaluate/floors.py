"""Every metric with its statistical floor, at matched sample sizes.

The question is "is the generated sample as close to the reference as a second Monte Carlo
sample of the same size would be?".  Distances between finite samples are biased upwards by
an amount that depends on the sample size, so the comparison is only fair when the floor and
the generated-vs-reference value are computed **at the same size** ``n``:

- ``n = min(N_ref // 2, N_gen (smallest generated sample), N_ref2 // 2 if a second reference
  is given)``, the same for all generated samples so that they can be ranked;
- for each of ``repeats`` seeded splits ``r``: the reference is shuffled, its first ``n``
  events form ``A_r``; the floor sample ``B_r`` is the next ``n`` events (disjoint from
  ``A_r``) or, with a second reference, ``n`` random events of it; every generated sample
  contributes ``n`` random events ``G_r`` (without replacement);
- ``floor_r = metric(B_r, A_r)`` and ``value_r = metric(G_r, A_r)``: both compare ``n`` events
  with the same ``n`` reference events.

Reported per metric (:class:`Stat`): ``value`` = mean of ``value_r``, ``value_std`` their
sample standard deviation (ddof=1); ``floor_mean``, ``floor_std`` the same for ``floor_r``;
``ratio = value / floor_mean``; ``significance = (value - floor_mean) / s`` with
``s = max(floor_std, sqrt((floor_std^2 + value_std^2) / 2))``: the single-split spread of the
floor, or the pooled spread of floor and value when the value scatters more (floors of JS/chi2
on sparse bins are skewed, and a few splits can underestimate their spread).  ``s`` is the
spread of *one* split while ``value`` and ``floor_mean`` are means over splits, so the
significance is conservative for the part of the noise that the splits average out; the
generated sample's own fluctuation does not average out (every split sees the same
generated events when ``n = N_gen``), so for a perfect generator each significance scatters
with a standard deviation of about 1 at most.  With ~120 metrics the largest |significance|
of a perfect generator is typically 2-3 and rarely above 4; read 3-5 as "look at it" and
> 5 as "different".  The price of the conservative scale is power: significances grow like
sqrt(n), and a 5% MET shift needs n of several thousand events to pass 5 (tests/evaluate).
For W1 the distance is divided by the
standard deviation of the *full* reference (the same unit for floor and value).

Robustness to heavy tails (a single 5 TeV forward jet can dominate a W1 of a few hundred
events): W1 of a continuous observable is computed on values clipped to the reference's
0.1%-99.9% quantile range (the finite range of its histogram bins; events beyond it still
count, at the edge), and the standard deviation is that of the clipped reference.  The tails
themselves are judged by the histogram chi2 and JS, whose under- and overflow bins catch
them, and by KS.

"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from fastmc.config import derive_seed
from fastmc.evaluate import metrics as M
from fastmc.evaluate._threads import single_threaded
from fastmc.evaluate.observables import Observables, compute_observables
from fastmc.events import TYPE_NAMES, Events

__all__ = ["FloorConfig", "Sample", "Stat", "compare_with_floors", "make_sample", "matched_size"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class FloorConfig:
    """Settings of :func:`compare_with_floors` (keyword-only, validated).

    ``repeats``: seeded splits (>= 3, to estimate the floor's spread); ``n_bins``: bins of
    continuous observables for JS/chi2; ``fpd_*``/``kpd_*``: see :func:`fastmc.evaluate.metrics.fpd`
    and :func:`~fastmc.evaluate.metrics.kpd`; ``whole_event``: compute FPD and KPD (the costly
    part).
    """

    repeats: int = 10
    n_bins: int = 40
    fpd_points: int = 4
    fpd_batches: int = 3
    fpd_max_samples: int = 50_000
    kpd_batch_size: int = 1000
    kpd_batches: int = 10
    whole_event: bool = True

    def __post_init__(self) -> None:
        if self.repeats < 3:
            raise ValueError(f"repeats must be >= 3 to estimate a spread, got {self.repeats}")
        for name in ("n_bins", "fpd_batches", "fpd_max_samples", "kpd_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.fpd_points < 3:
            raise ValueError(f"fpd_points must be >= 3 for the 1/N extrapolation, got {self.fpd_points}")
        if self.kpd_batch_size < 2:
            raise ValueError(f"kpd_batch_size must be >= 2, got {self.kpd_batch_size}")


@dataclasses.dataclass(frozen=True, eq=False)
class Sample:
    """A sample prepared for comparisons: observables [N, D], weights [N], multiplicities
    per type [N, 7] (j, b, e-, e+, m-, m+, g)."""

    obs: Observables
    mult: np.ndarray

    def __len__(self) -> int:
        return len(self.obs)

    def take(self, index: np.ndarray) -> Sample:
        return Sample(self.obs.take(index), self.mult[index])


def make_sample(events: Events) -> Sample:
    """Observables and multiplicities of ``events``."""
    return Sample(compute_observables(events), M.multiplicity_counts(events))


@dataclasses.dataclass(frozen=True)
class Stat:
    """One metric with its floor (see the module docstring for the definitions)."""

    value: float
    value_std: float
    floor_mean: float
    floor_std: float

    @property
    def ratio(self) -> float:
        if not math.isfinite(self.value) or not math.isfinite(self.floor_mean):
            return math.nan
        if self.floor_mean == 0:
            return 1.0 if self.value == 0 else math.inf
        return self.value / self.floor_mean

    @property
    def significance(self) -> float:
        d = self.value - self.floor_mean
        scale = max(self.floor_std, math.sqrt((self.floor_std**2 + self.value_std**2) / 2))
        if not math.isfinite(d) or not math.isfinite(scale):
            return math.nan
        if scale == 0:
            return 0.0 if d == 0 else math.copysign(math.inf, d)
        return d / scale

    def as_dict(self) -> dict[str, float]:
        return {
            "value": self.value,
            "value_std": self.value_std,
            "floor_mean": self.floor_mean,
            "floor_std": self.floor_std,
            "ratio": self.ratio,
            "significance": self.significance,
        }


def matched_size(n_ref: int, n_gens: list[int], n_ref2: int | None = None) -> int:
    """The common comparison size ``n`` (see the module docstring)."""
    n = min([n_ref // 2, *n_gens] + ([n_ref2 // 2] if n_ref2 is not None else []))
    if n < 10:
        raise ValueError(
            f"too few events to compare at matched sizes (n = {n}); the reference needs at "
            "least 20 events and every generated sample at least 10"
        )
    return n


class _Context:
    """Things fixed by the full reference: units of W1, bins, feature scaling."""

    def __init__(self, ref: Sample, n_bins: int) -> None:
        w = ref.obs.weight
        self.std: list[float] = []
        self.edges: list[np.ndarray] = []
        self.clip: list[tuple[float, float]] = []
        for i, spec in enumerate(ref.obs.specs):
            edges = M.make_bins(ref.obs.values[:, i], spec.kind, n_bins)
            self.edges.append(edges)
            # W1 on values clipped to the finite range of the bins (reference 0.1%-99.9%)
            lo, hi = (edges[1], edges[-2]) if spec.kind == "continuous" else (-np.inf, np.inf)
            self.clip.append((lo, hi))
            col = np.clip(ref.obs.values[:, i], lo, hi)
            ok = np.isfinite(col)
            if ok.sum() > 1 and w[ok].sum() > 0:
                mu = np.average(col[ok], weights=w[ok])
                sd = math.sqrt(np.average((col[ok] - mu) ** 2, weights=w[ok]))
            else:
                sd = math.nan
            self.std.append(sd if sd > 0 else math.nan)
        self.mult_edges = [M.make_bins(ref.mult[:, j], "count") for j in range(ref.mult.shape[1])]
        self.scaler = M.FeatureScaler(ref.obs)


def _metrics(
    a: Sample, b: Sample, ctx: _Context, cfg: FloorConfig, seed: np.random.Generator
) -> dict[str, float]:
    """All metrics of ``b`` against ``a``, flat ``{"w1/met": ..., "fpd": ...}``."""
    out: dict[str, float] = {}
    wa, wb = a.obs.weight, b.obs.weight
    for i, name in enumerate(a.obs.names):
        x, y = a.obs.values[:, i], b.obs.values[:, i]
        lo, hi = ctx.clip[i]
        w1, ks = M.w1_ks(np.clip(x, lo, hi), np.clip(y, lo, hi), wa, wb)
        out[f"w1/{name}"] = w1 / ctx.std[i]
        out[f"ks/{name}"] = ks
        js, chi2 = M.histogram_distances(x, y, ctx.edges[i], wa, wb)
        if np.isfinite(x).any() != np.isfinite(y).any():
            # the object exists in one sample only: the distributions are disjoint
            ks, js = 1.0, 1.0
            out[f"ks/{name}"] = ks
        out[f"js/{name}"] = js
        out[f"chi2/{name}"] = chi2
    for j, tname in enumerate(TYPE_NAMES[1:]):
        _, chi2 = M.histogram_distances(a.mult[:, j], b.mult[:, j], ctx.mult_edges[j], wa, wb)
        out[f"mult_chi2/{tname}"] = chi2
    if cfg.whole_event:
        fa, fb = ctx.scaler.transform(a.obs), ctx.scaler.transform(b.obs)
        out["fpd"], _ = M.fpd(
            fa,
            fb,
            seed=seed,
            n_points=cfg.fpd_points,
            n_batches=cfg.fpd_batches,
            max_samples=cfg.fpd_max_samples,
            wx=wa,
            wy=wb,
        )
        out["kpd"], _ = M.kpd(fa, fb, seed=seed, batch_size=cfg.kpd_batch_size, n_batches=cfg.kpd_batches,
                              wx=wa, wy=wb)
    return out


def _stats(values: list[dict[str, float]], floors: list[dict[str, float]]) -> dict[str, Stat]:
    out = {}
    for key in floors[0]:
        v = np.array([d[key] for d in values], np.float64)
        f = np.array([d[key] for d in floors], np.float64)
        with np.errstate(invalid="ignore"):
            v, f = v[np.isfinite(v)], f[np.isfinite(f)]
        out[key] = Stat(
            value=float(v.mean()) if len(v) else math.nan,
            value_std=float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            floor_mean=float(f.mean()) if len(f) else math.nan,
            floor_std=float(f.std(ddof=1)) if len(f) > 1 else math.nan,
        )
    return out


def compare_with_floors(
    reference: Sample,
    generated: Mapping[str, Sample],
    *,
    reference2: Sample | None = None,
    config: FloorConfig | None = None,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Every metric of every generated sample against the reference, with floors.

    Returns ``{"n": n, "repeats": R, "samples": {label: {metric: Stat}}}`` where metric keys
    are ``"w1/<obs>"`` (units of the reference std), ``"ks/<obs>"``, ``"js/<obs>"``,
    ``"chi2/<obs>"`` (chi2/ndf), ``"mult_chi2/<type>"`` and, with ``config.whole_event``,
    ``"fpd"`` and ``"kpd"``.  ``progress(1)`` is called once per split and sample, i.e.
    ``repeats * (1 + len(generated))`` times.  Seeded: the same ``seed`` gives the same numbers.
    """
    cfg = config or FloorConfig()
    with single_threaded():
        return _compare(reference, generated, reference2, cfg, seed, progress)


def _compare(
    reference: Sample,
    generated: Mapping[str, Sample],
    reference2: Sample | None,
    cfg: FloorConfig,
    seed: int,
    progress: Callable[[int], None] | None,
) -> dict[str, Any]:
    if not generated:
        raise ValueError("give at least one generated sample")
    n = matched_size(
        len(reference), [len(g) for g in generated.values()], None if reference2 is None else len(reference2)
    )
    ctx = _Context(reference, cfg.n_bins)
    floors: list[dict[str, float]] = []
    values: dict[str, list[dict[str, float]]] = {k: [] for k in generated}
    for r in range(cfg.repeats):
        rng = np.random.default_rng(derive_seed(seed, "floor split", r))
        perm = rng.permutation(len(reference))
        a = reference.take(perm[:n])
        if reference2 is None:
            b = reference.take(perm[n : 2 * n])
        else:
            b = reference2.take(rng.permutation(len(reference2))[:n])
        floors.append(_metrics(a, b, ctx, cfg, rng))
        if progress:
            progress(1)
        for label, gen in generated.items():
            g = gen.take(rng.permutation(len(gen))[:n])
            values[label].append(_metrics(a, g, ctx, cfg, rng))
            if progress:
                progress(1)
    return {
        "n": n,
        "repeats": cfg.repeats,
        "samples": {label: _stats(values[label], floors) for label in generated},
    }
