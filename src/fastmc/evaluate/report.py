"""``evaluate``: every metric with its floor, the plots, ``metrics.json`` and ``index.html``.

>>> report = evaluate(reference, {"vae": generated}, out_dir="report", seed=0)  # doctest: +SKIP
>>> report.summary[0].auc, report.summary[0].w1_ratio_median                     # doctest: +SKIP

The protocol (matched sample sizes, seeded splits, floors, significances) is described in
:mod:`fastmc.evaluate.floors`; the classifier test in :mod:`fastmc.evaluate.classifier`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fastmc import __version__
from fastmc.config import derive_seed
from fastmc.evaluate.classifier import classifier_test
from fastmc.evaluate.floors import (
    FloorConfig,
    Sample,
    Stat,
    compare_with_floors,
    make_sample,
    matched_size,
)
from fastmc.evaluate.metrics import physicality
from fastmc.evaluate.observables import OBSERVABLES
from fastmc.events import Events
from fastmc.io.atomic import atomic_path

__all__ = ["Report", "SampleSummary", "evaluate", "evaluation_steps"]


@dataclasses.dataclass(frozen=True)
class SampleSummary:
    """One row of the ranking (best first in :attr:`Report.summary`).

    ``auc``/``auc_err``: held-out classifier AUC and its Hanley-McNeil error (NaN without the
    classifier), ``auc_floor``/``auc_floor_err`` the same for reference vs reference;
    ``w1_ratio_median``/``w1_ratio_max``: median/largest over observables of W1 divided by its
    floor, ``w1_worst`` the observable of the largest; ``max_significance``/``worst_metric``:
    the largest significance of all metrics and its key; ``fpd``, ``kpd`` (unitless, on the
    standardised observable vector) with floors and significances; ``physicality``: share of
    valid events; ``n_events``: events in the sample.
    """

    label: str
    rank: int
    n_events: int
    auc: float
    auc_err: float
    auc_floor: float
    auc_floor_err: float
    w1_ratio_median: float
    w1_ratio_max: float
    w1_worst: str
    max_significance: float
    worst_metric: str
    fpd: float
    fpd_floor: float
    fpd_significance: float
    kpd: float
    kpd_floor: float
    kpd_significance: float
    physicality: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class Report:
    """Result of :func:`evaluate`.

    ``summary``: :class:`SampleSummary` rows, best first; ``metrics``: everything, JSON-ready
    (the content of ``metrics.json``; non-finite numbers are ``None``); ``out_dir``: where the
    report was written (None if not written); ``plots``: paths of the PNGs written.
    """

    summary: list[SampleSummary]
    metrics: dict[str, Any]
    out_dir: Path | None = None
    plots: list[Path] = dataclasses.field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(self.metrics, indent=1, allow_nan=False)


def evaluation_steps(n_generated: int, *, repeats: int, classifier: bool = True, plots: bool = True) -> int:
    """How many times :func:`evaluate` calls ``progress(1)`` (for a progress bar's total)."""
    steps = repeats * (1 + n_generated)
    if classifier:
        steps += 1 + n_generated
    if plots:
        steps += len(OBSERVABLES) + 3
    return steps


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, Path):
        return str(x)
    return x


def _subsample(events: Events, max_events: int | None, rng: np.random.Generator) -> Events:
    if max_events is None or len(events) <= max_events:
        return events
    return events[np.sort(rng.choice(len(events), max_events, replace=False))]


def _summary_row(label: str, n_events: int, stats: dict[str, Stat], clf: dict[str, float] | None,
                 clf_floor: dict[str, float] | None, phys: float) -> dict[str, Any]:
    w1 = {k[3:]: s.ratio for k, s in stats.items() if k.startswith("w1/") and math.isfinite(s.ratio)}
    sig = {k: s.significance for k, s in stats.items() if not math.isnan(s.significance)}
    worst = max(sig, key=lambda k: sig[k]) if sig else ""
    nan = math.nan
    fpd, kpd = stats.get("fpd"), stats.get("kpd")
    return {
        "label": label,
        "n_events": n_events,
        "auc": clf["auc"] if clf else nan,
        "auc_err": clf["auc_err"] if clf else nan,
        "auc_floor": clf_floor["auc"] if clf_floor else nan,
        "auc_floor_err": clf_floor["auc_err"] if clf_floor else nan,
        "w1_ratio_median": float(np.median(list(w1.values()))) if w1 else nan,
        "w1_ratio_max": max(w1.values()) if w1 else nan,
        "w1_worst": max(w1, key=lambda k: w1[k]) if w1 else "",
        "max_significance": sig[worst] if worst else nan,
        "worst_metric": worst,
        "fpd": fpd.value if fpd else nan,
        "fpd_floor": fpd.floor_mean if fpd else nan,
        "fpd_significance": fpd.significance if fpd else nan,
        "kpd": kpd.value if kpd else nan,
        "kpd_floor": kpd.floor_mean if kpd else nan,
        "kpd_significance": kpd.significance if kpd else nan,
        "physicality": phys,
    }


def _rank_key(row: dict[str, Any]) -> tuple[float, float]:
    auc = row["auc"]
    w1 = row["w1_ratio_median"]
    return (abs(auc - 0.5) if math.isfinite(auc) else math.inf, w1 if math.isfinite(w1) else math.inf)


def _classifier(ref: Sample, gens: Mapping[str, Sample], ref2: Sample | None, n: int, seed: int,
                progress: Callable[[int], None] | None) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    rng = np.random.default_rng(derive_seed(seed, "classifier split"))
    perm = rng.permutation(len(ref))
    a = ref.take(perm[:n])
    b = ref.take(perm[n : 2 * n]) if ref2 is None else ref2.take(rng.permutation(len(ref2))[:n])

    def run(other: Sample) -> dict[str, float]:
        res = classifier_test(a.obs.values, other.obs.values, reference_weight=a.obs.weight,
                              other_weight=other.obs.weight, seed=int(rng.integers(2**31)))
        if progress:
            progress(1)
        return res.as_dict()

    floor = run(b)
    out = {}
    for label, gen in gens.items():
        d = run(gen.take(rng.permutation(len(gen))[:n]))
        err = math.hypot(d["auc_err"], floor["auc_err"])
        d["floor_auc"], d["floor_auc_err"] = floor["auc"], floor["auc_err"]
        d["significance"] = (d["auc"] - floor["auc"]) / err if err > 0 else math.nan
        out[label] = d
    return floor, out


def evaluate(
    reference: Events,
    generated: Mapping[str, Events],
    *,
    reference2: Events | None = None,
    channel: str | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    config: FloorConfig | None = None,
    classifier: bool = True,
    plots: bool = True,
    max_events: int | None = None,
    reference_label: str = "reference",
    progress: Callable[[int], None] | None = None,
) -> Report:
    """Compare generated samples with reference events; optionally write a report folder.

    Parameters
    ----------
    reference : Events
        Held-out reference events (GeV), never seen in training.
    generated : mapping label -> Events
        One or more generated samples.
    reference2 : Events, optional
        A second, independent reference sample; the floors are then reference vs reference2
        instead of reference half vs half.
    channel : str, optional
        Dark Machines channel (``"chan1"``...): physicality then includes passing its selection.
    out_dir : path, optional
        Write ``metrics.json``, ``plots/*.png`` and ``index.html`` (self-contained: CSS and
        images inline) there.  Plots are only made when ``out_dir`` is given and ``plots``.
    seed : int
        Seeds every split, subsample and classifier; same seed, same numbers.
    config : FloorConfig, optional
        Repeats, binning and FPD/KPD settings (:class:`fastmc.evaluate.floors.FloorConfig`).
    classifier : bool
        Run the classifier two-sample test (scikit-learn).
    max_events : int, optional
        Use at most this many events of each sample (a seeded random subset).
    progress : callable, optional
        Called with 1 per step; :func:`evaluation_steps` gives the total.

    Returns
    -------
    Report
        ``.summary`` (ranked :class:`SampleSummary` rows), ``.metrics`` (JSON-ready dict),
        ``.out_dir``, ``.plots``.  Ranking: by |AUC - 0.5| (closest to 0.5 first), then by
        the median W1-to-floor ratio.
    """
    if not generated:
        raise ValueError("give at least one generated sample")
    if reference_label in generated:
        raise ValueError(f"a generated sample is labelled {reference_label!r}, like the reference; rename it")
    cfg = config or FloorConfig()
    rng = np.random.default_rng(derive_seed(seed, "subsample"))
    reference = _subsample(reference, max_events, rng)
    generated = {k: _subsample(v, max_events, rng) for k, v in generated.items()}
    if reference2 is not None:
        reference2 = _subsample(reference2, max_events, rng)
    n = matched_size(len(reference), [len(g) for g in generated.values()],
                     None if reference2 is None else len(reference2))
    ref_s = make_sample(reference)
    gen_s = {k: make_sample(v) for k, v in generated.items()}
    ref2_s = make_sample(reference2) if reference2 is not None else None
    cmp = compare_with_floors(ref_s, gen_s, reference2=ref2_s, config=cfg, seed=seed, progress=progress)
    clf_floor, clf = (None, {})
    if classifier:
        clf_floor, clf = _classifier(ref_s, gen_s, ref2_s, n, seed, progress)
    phys = {k: physicality(v, channel=channel) for k, v in generated.items()}
    ref_phys = physicality(reference, channel=channel)
    rows = [
        _summary_row(k, len(generated[k]), cmp["samples"][k], clf.get(k), clf_floor, phys[k]["valid"])
        for k in generated
    ]
    rows.sort(key=_rank_key)
    summary = [SampleSummary(rank=i + 1, **row) for i, row in enumerate(rows)]
    metrics: dict[str, Any] = {
        "fastmc_version": __version__,
        "seed": seed,
        "channel": channel,
        "n_matched": n,
        "repeats": cfg.repeats,
        "config": dataclasses.asdict(cfg),
        "floor_source": "reference half vs half" if reference2 is None else "reference vs reference2",
        "reference": {"label": reference_label, "n_events": len(reference), "physicality": ref_phys},
        "reference2": None if reference2 is None else {"n_events": len(reference2)},
        "observables": [{"name": s.name, "unit": s.unit, "label": s.label} for s in OBSERVABLES],
        "classifier_floor": clf_floor,
        "summary": [s.as_dict() for s in summary],
        "samples": {
            k: {
                "n_events": len(generated[k]),
                "physicality": phys[k],
                "classifier": clf.get(k),
                "metrics": {m: st.as_dict() for m, st in cmp["samples"][k].items()},
            }
            for k in generated
        },
    }
    plot_paths: list[Path] = []
    out = None
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if plots:
            plot_paths = _make_plots(out / "plots", ref_s, gen_s, reference_label, progress)
        metrics["plots"] = [str(p.relative_to(out)) for p in plot_paths]
    metrics = _jsonable(metrics)
    report = Report(summary=summary, metrics=metrics, out_dir=out, plots=plot_paths)
    if out is not None:
        from fastmc.evaluate.html import render_html

        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(report.to_json())
        with atomic_path(out / "index.html") as tmp:
            tmp.write_text(render_html(report), encoding="utf-8")
    return report


def _make_plots(folder: Path, ref: Sample, gens: Mapping[str, Sample], ref_label: str,
                progress: Callable[[int], None] | None) -> list[Path]:
    from fastmc.evaluate import plots as P

    folder.mkdir(parents=True, exist_ok=True)
    paths = []

    def done(p: Path) -> None:
        paths.append(p)
        if progress:
            progress(1)

    gen_obs = {k: g.obs for k, g in gens.items()}
    for spec in OBSERVABLES:
        done(P.plot_observable(spec, ref.obs, gen_obs, folder / f"{spec.name}.png", reference_label=ref_label))
    done(P.plot_multiplicities(ref.mult, {k: g.mult for k, g in gens.items()}, folder / "multiplicities.png",
                               reference_weight=ref.obs.weight,
                               generated_weight={k: g.obs.weight for k, g in gens.items()}))
    both = {ref_label: ref.obs, **gen_obs}
    done(P.plot_phi_holes(both, folder / "phi_jet1_vs_jet2.png"))
    done(P.plot_eta_pt(both, folder / "eta_vs_pt_jet1.png"))
    return paths
