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
from fastmc.evaluate.checks import boundary_checks, memorisation, shared_events
from fastmc.evaluate.features import FeatureConfig, WholeEventFeatures, whole_event_features
from fastmc.evaluate.floors import (
    FloorConfig,
    Stat,
    compare_with_floors,
    make_sample,
    matched_size,
)
from fastmc.evaluate.generation import generation_record
from fastmc.evaluate.html import render_html
from fastmc.evaluate.metrics import physicality
from fastmc.evaluate.observables import OBSERVABLES
from fastmc.evaluate.report_plots import make_plots, plot_count
from fastmc.evaluate.wholeevent import (
    ClassifierConfig,
    WholeEventResult,
    summarise,
    whole_event_floor,
    whole_event_test,
)
from fastmc.events import Events
from fastmc.io.atomic import atomic_path

__all__ = ["Report", "SampleSummary", "evaluate", "evaluation_steps"]


@dataclasses.dataclass(frozen=True)
class SampleSummary:
    """One row of the ranking (best first in :attr:`Report.summary`).

    ``auc``/``auc_err``: the headline, the whole-event classifier's out-of-fold AUC of the whole
    sample against the whole reference and its Hanley-McNeil error (NaN without the
    classifier); ``auc_floor``/``auc_floor_err`` the same for two disjoint parts of the
    reference (:mod:`fastmc.evaluate.wholeevent`); ``auc_significance`` = (AUC - floor) /
    combined error (>= 5: flagged); ``n_reference``: reference events in the test;
    ``w1_ratio_median``/``w1_ratio_max``: median/largest over observables of W1 divided by its
    floor, ``w1_worst`` the observable of the largest; ``max_significance``/``worst_metric``:
    the largest significance of all metrics and its key; ``fpd``, ``kpd`` (unitless, on the
    standardised observable vector) with floors and significances; ``physicality``: share of
    valid events; ``n_events``: events in the sample; ``kind``: ``"generation"`` or
    ``"reconstruction"`` (decoded real events, e.g. the VAE "truth" prior: not a generator).
    """

    label: str
    rank: int
    n_events: int
    auc: float
    auc_err: float
    auc_floor: float
    auc_floor_err: float
    auc_significance: float
    n_reference: int
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
    kind: str = "generation"

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class Report:
    """Result of :func:`evaluate`.

    ``summary``: :class:`SampleSummary` rows, best first; ``metrics``: everything, JSON-ready
    (the content of ``metrics.json``; non-finite numbers are ``None``); ``out_dir``: where the
    report was written (None if not written); ``plots``: paths of the PNGs written;
    ``whole_event``: label -> :class:`~fastmc.evaluate.wholeevent.WholeEventResult` (the
    out-of-fold classifier scores of every event, for the API user's own plots).
    """

    summary: list[SampleSummary]
    metrics: dict[str, Any]
    out_dir: Path | None = None
    plots: list[Path] = dataclasses.field(default_factory=list)
    whole_event: dict[str, WholeEventResult] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(self.metrics, indent=1, allow_nan=False)

    def _repr_html_(self) -> str:
        """Jupyter display: the HTML report (plots when written) in a frame of its own."""
        import html

        from fastmc.evaluate.html import render_html

        page = html.escape(render_html(self.metrics, self.plots))
        return f'<iframe srcdoc="{page}" style="width:100%;height:640px;border:0"></iframe>'


def evaluation_steps(n_generated: int, *, repeats: int, classifier: bool = True, plots: bool = True) -> int:
    """How many times :func:`evaluate` calls ``progress(1)`` (for a progress bar's total)."""
    steps = repeats * 2 * n_generated
    if classifier:
        steps += 2 * n_generated  # a test and (at most) a floor per sample
    if plots:
        steps += plot_count(n_generated, classifier=classifier)
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


#: Below this many events a sample's numbers are noisy: the terminal and the report warn.
TINY_SAMPLE = 1000


def _size_warnings(reference: Events, generated: Mapping[str, Events], before: dict[str, int],
                   max_events: int | None) -> list[str]:
    out = []
    for k, ev in {"reference": reference, **generated}.items():
        if len(ev) < TINY_SAMPLE:
            out.append(f"{k}: only {len(ev)} events; its AUC error is ~{0.5 / math.sqrt(max(len(ev), 1)):.3f} "
                       "or worse and the per-multiplicity bins may be skipped; use >= 50k events where you can")
        if before[k] > len(ev):
            out.append(f"{k}: subsampled from {before[k]} to {len(ev)} events (--max-events {max_events}); "
                       "omit --max-events to use all")
    return out


def _summary_row(label: str, n_events: int, n_reference: int, stats: dict[str, Stat],
                 clf: dict[str, Any] | None, phys: float) -> dict[str, Any]:
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
        "auc_floor": clf["floor_auc"] if clf else nan,
        "auc_floor_err": clf["floor_auc_err"] if clf else nan,
        "auc_significance": clf["significance"] if clf else nan,
        "n_reference": n_reference,
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


def _whole_event(ref: WholeEventFeatures, gens: Mapping[str, WholeEventFeatures], ref2: WholeEventFeatures | None,
                 cfg: ClassifierConfig, seed: int,
                 progress: Callable[[int], None] | None) -> tuple[dict[str, Any], dict[str, WholeEventResult]]:
    """Whole-event classifier test of every sample against the whole reference, with floors at
    each sample's own size (one floor per size, shared).  With ``ref2``: the floor is the whole
    reference against min(N_gen, N_ref2) events of ref2."""
    floors: dict[int, WholeEventResult] = {}
    out: dict[str, Any] = {}
    results: dict[str, WholeEventResult] = {}
    for label, gen in gens.items():
        m = min(len(gen), len(ref) // 2) if ref2 is None else min(len(gen), len(ref2))
        if progress:
            progress(1)
        if m not in floors:
            if ref2 is None:
                floors[m] = whole_event_floor(ref, len(gen), config=cfg, seed=seed)
            else:
                pick = np.sort(np.random.default_rng(derive_seed(seed, "reference2 floor", m)).permutation(len(ref2))[:m])
                floors[m] = whole_event_test(ref, ref2.take(pick), config=cfg, seed=seed)
        res = whole_event_test(ref, gen, config=cfg, seed=seed)
        results[label] = res
        out[label] = summarise(res, floors[m], gen, cfg)
        if progress:
            progress(1)
    return out, results


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
    feature_config: FeatureConfig | None = None,
    classifier_config: ClassifierConfig | None = None,
    train: Events | None = None,
    reconstruction: tuple[str, ...] = (),
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
        Run the whole-event classifier test, the headline (scikit-learn;
        :mod:`fastmc.evaluate.wholeevent`).
    feature_config, classifier_config : optional
        Objects in the whole-event features (:class:`~fastmc.evaluate.features.FeatureConfig`)
        and the classifier's settings (:class:`~fastmc.evaluate.wholeevent.ClassifierConfig`).
    train : Events, optional
        The generators' training sample: enables the memorisation check
        (:func:`fastmc.evaluate.checks.memorisation`) and warns when it shares events with the
        reference.
    reconstruction : labels
        Samples that are reconstructions of real events (e.g. a VAE decoding encoded test
        events), not generation: kept in every table, labelled "reconstruction".
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
    unknown = [k for k in reconstruction if k not in generated]
    if unknown:
        raise ValueError(f"reconstruction labels {unknown} are not among the samples {list(generated)}")
    cfg = config or FloorConfig()
    ccfg = classifier_config or ClassifierConfig()
    rng = np.random.default_rng(derive_seed(seed, "subsample"))
    n_before = {"reference": len(reference), **{k: len(v) for k, v in generated.items()}}
    reference = _subsample(reference, max_events, rng)
    generated = {k: _subsample(v, max_events, rng) for k, v in generated.items()}
    if reference2 is not None:
        reference2 = _subsample(reference2, max_events, rng)
    warnings_: list[str] = _size_warnings(reference, generated, n_before, max_events)
    for k, g in generated.items():
        shared = shared_events(reference, g)
        if shared:
            warnings_.append(
                f"{k}: {shared} of {len(g)} events are identical to reference events (the same file?); "
                "a generated sample must be independent of the reference, or every number here is "
                "too good: evaluate against held-out events")
    if train is not None:
        shared = shared_events(train, reference)
        if shared:
            warnings_.append(f"the reference shares {shared} of {len(reference)} events with --train: it is "
                             "not held out; use the test split")
    n_ref2 = None if reference2 is None else len(reference2)
    # honest sizes: every sample at its own size, none shrinks another
    sizes = {k: matched_size(len(reference), [len(g)], n_ref2) for k, g in generated.items()}
    ref_s = make_sample(reference)
    gen_s = {k: make_sample(v) for k, v in generated.items()}
    ref2_s = make_sample(reference2) if reference2 is not None else None
    cmp_samples: dict[str, dict[str, Stat]] = {}
    for k, g in gen_s.items():
        cmp_samples[k] = compare_with_floors(ref_s, {k: g}, reference2=ref2_s, config=cfg, seed=seed,
                                             progress=progress)["samples"][k]
    we: dict[str, Any] = {}
    we_results: dict[str, WholeEventResult] = {}
    fcfg = feature_config or FeatureConfig()
    if classifier:
        ref_f = whole_event_features(reference, fcfg)
        gen_f = {k: whole_event_features(v, fcfg) for k, v in generated.items()}
        ref2_f = whole_event_features(reference2, fcfg) if reference2 is not None else None
        we, we_results = _whole_event(ref_f, gen_f, ref2_f, ccfg, seed, progress)
    phys = {k: physicality(v, channel=channel) for k, v in generated.items()}
    ref_phys = physicality(reference, channel=channel)
    bounds = {k: boundary_checks(reference, v) for k, v in generated.items()}
    memo = {k: memorisation(train, reference, v, seed=seed) for k, v in generated.items()} if train is not None else {}
    for k in generated:
        if bounds[k]["flagged"]:
            warnings_.append(f"{k}: events pile up at a detector boundary: {', '.join(bounds[k]['flagged'])} "
                             "(see 'Boundaries'); look at the decoder's handling of the jet radius / thresholds")
        if memo.get(k, {}).get("flagged"):
            warnings_.append(f"{k}: generated events sit closer to the training sample than held-out events "
                             f"({memo[k]['close_generated']:.1%} vs {memo[k]['close_reference']:.1%} within the "
                             "reference's 1% nearest distance): the generator may copy its training sample")
    rows = [
        _summary_row(k, len(generated[k]), len(reference), cmp_samples[k], we.get(k), phys[k]["valid"])
        for k in generated
    ]
    rows.sort(key=_rank_key)
    summary = [SampleSummary(rank=i + 1, kind="reconstruction" if row["label"] in reconstruction else "generation",
                             **row) for i, row in enumerate(rows)]
    metrics: dict[str, Any] = {
        "fastmc_version": __version__,
        "seed": seed,
        "channel": channel,
        "repeats": cfg.repeats,
        "config": dataclasses.asdict(cfg),
        "floor_source": "reference half vs half" if reference2 is None else "reference vs reference2",
        "reference": {"label": reference_label, "n_events": len(reference), "physicality": ref_phys},
        "reference2": None if reference2 is None else {"n_events": len(reference2)},
        "warnings": warnings_,
        "summary": [s.as_dict() for s in summary],
        "whole_event": None if not classifier else {
            "feature_config": dataclasses.asdict(fcfg),
            "classifier_config": dataclasses.asdict(ccfg),
            "features": [{"name": nm, "unit": u} for nm, u in zip(ref_f.names, ref_f.units, strict=True)],
            "floor_source": "reference vs reference2" if reference2 is not None
            else "reference split in two disjoint parts",
            "samples": we,
        },
        "observables": [{"name": s.name, "unit": s.unit, "label": s.label} for s in OBSERVABLES],
        "samples": {
            k: {
                "n_events": len(generated[k]),
                "n_compared": sizes[k],
                "kind": "reconstruction" if k in reconstruction else "generation",
                "shared_with_reference": shared_events(reference, generated[k]),
                "physicality": phys[k],
                "boundary": bounds[k],
                "memorisation": memo.get(k),
                "generation": generation_record(generated[k].meta),
                "metrics": {m: st.as_dict() for m, st in cmp_samples[k].items()},
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
            we_metrics = (metrics["whole_event"] or {}).get("samples", {})
            plot_paths = make_plots(out / "plots", ref_s, gen_s, reference_label, progress,
                                    _jsonable(we_metrics), we_results)
        metrics["plots"] = [str(p.relative_to(out)) for p in plot_paths]
    metrics = _jsonable(metrics)
    report = Report(summary=summary, metrics=metrics, out_dir=out, plots=plot_paths, whole_event=we_results)
    if out is not None:
        with atomic_path(out / "metrics.json") as tmp:
            tmp.write_text(report.to_json())
        with atomic_path(out / "index.html") as tmp:
            tmp.write_text(render_html(report.metrics, report.plots), encoding="utf-8")
    return report
