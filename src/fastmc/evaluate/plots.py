"""Plots of reference vs generated events (hist + mplhep, matplotlib Agg, ATLAS style).

Every function writes one PNG (150 dpi) **and** a PDF beside it (atomically) and returns the
PNG's path.  matplotlib, mplhep and hist are imported lazily (``fastmc[plot]``); figures are
bare ``matplotlib.figure.Figure`` objects drawn by Agg, so no display is needed and pyplot's
state and backend are left alone.

Conventions: histograms are ``hist.Hist`` objects with Weight storage (kept available through
:func:`observable_histograms`), **normalised to unit area** (each bin shows the fraction of
the events where the observable exists); values outside the bin range are counted in the
first or last bin.  The reference is a filled histogram with its statistical band (sqrt of
the sum of squared weights), each generator a line on top, in a colour-blind-safe palette
(Okabe-Ito, then Paul Tol's muted; never repeated within a figure; after 16 samples the line
style changes too).  Legends sit outside the axes, so they never cover data.  The ratio panel
shows generated / reference with both statistical errors, from 0.5 to 1.5; a point outside is
drawn as a triangle at the panel's edge.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.errors import require
from fastmc.evaluate.observables import Observables, ObservableSpec
from fastmc.events import TYPE_NAMES
from fastmc.io.atomic import atomic_path

__all__ = [
    "PALETTE",
    "color_of",
    "observable_histograms",
    "plot_auc_per_multiplicity",
    "plot_eta_pt",
    "plot_multiplicities",
    "plot_observable",
    "plot_phi_holes",
    "plot_weights",
]

#: Okabe-Ito (without black, which is the reference) then Paul Tol's muted scheme.
PALETTE = ("#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#F0E442",
           "#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499")
_STYLES = ("-", "--", ":", "-.")
REFERENCE_COLOR = "#444444"
DPI = 150
RATIO_RANGE = (0.5, 1.5)
#: Physics names of the object types on multiplicity axes.
TYPE_LABELS = {"j": "light jets", "b": "b-tagged jets", "e-": "electrons $e^-$", "e+": "positrons $e^+$",
               "m-": "muons $\\mu^-$", "m+": "antimuons $\\mu^+$", "g": "photons"}


def color_of(i: int) -> tuple[str, str]:
    """(colour, line style) of the i-th generated sample: no two samples of a figure share both."""
    return PALETTE[i % len(PALETTE)], _STYLES[(i // len(PALETTE)) % len(_STYLES)]


class _Figures:
    """``subplots``/``close`` like pyplot, but on bare :class:`matplotlib.figure.Figure`
    objects: no pyplot state and no change of the user's backend (PNG is drawn by Agg)."""

    def subplots(self, *args: Any, figsize: tuple[float, float], **kwargs: Any) -> tuple[Any, Any]:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots(*args, **kwargs)

    def close(self, fig: Any) -> None:
        fig.clear()


@contextlib.contextmanager
def _pyplot() -> Iterator[_Figures]:
    mpl = require("matplotlib", "plot")
    hep = require("mplhep", "plot")
    with warnings.catch_warnings(), mpl.style.context(hep.style.ATLAS):
        # fonts of the ATLAS style may be absent: matplotlib then falls back silently
        warnings.filterwarnings("ignore", message=".*[Ff]ont.*")
        warnings.filterwarnings("ignore", message=".*[Gg]lyph.*")
        yield _Figures()


def _save(fig: Any, plt: _Figures, path: Path) -> Path:
    path = Path(path)
    for ax in fig.axes:
        ax.minorticks_off()  # the style's minor ticks cost ~40% of the drawing time
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")
    with atomic_path(path.with_suffix(".pdf")) as tmp:
        fig.savefig(tmp, format="pdf")
    plt.close(fig)
    return path


def _hist(values: np.ndarray, weight: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    h = _whist(values, weight, edges)
    v, var = h.values(), h.variances()
    total = v.sum()
    if total <= 0:
        return np.zeros_like(v), np.zeros_like(v), 0.0
    return v / total, np.sqrt(var) / total, float(np.isfinite(values).mean()) if len(values) else 0.0


def _whist(values: np.ndarray, weight: np.ndarray, edges: np.ndarray) -> Any:
    """A ``hist.Hist`` (Weight storage) of the finite ``values``, clipped into ``edges``."""
    hist = require("hist", "plot")
    ok = np.isfinite(values)
    inner = 0.5 * (edges[0] + edges[1]), 0.5 * (edges[-2] + edges[-1])
    h = hist.Hist(hist.axis.Variable(edges, underflow=False, overflow=False), storage=hist.storage.Weight())
    h.fill(np.clip(values[ok], *inner), weight=weight[ok])
    return h


def observable_histograms(spec: ObservableSpec, reference: Observables, generated: Mapping[str, Observables],
                          *, n_bins: int = 40) -> dict[str, Any]:
    """``{"reference": hist.Hist, label: hist.Hist, ...}`` of observable ``spec.name`` on the
    bins the plots use (fixed by the reference), Weight storage, **not** normalised; values
    outside the range are in the edge bins.  For the API user's own plots and fits."""
    edges = _plot_edges(reference[spec.name], spec, n_bins)
    out = {"reference": _whist(reference[spec.name], reference.weight, edges)}
    for label, obs in generated.items():
        out[label] = _whist(obs[spec.name], obs.weight, edges)
    return out


def _draw_pair(ax: Any, rax: Any, edges: np.ndarray, ref: tuple[np.ndarray, np.ndarray], ref_label: str,
               gens: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Reference filled with its band, generators on top, ratio panel with edge markers."""
    hep = require("mplhep", "plot")
    r, re_ = ref
    centers = 0.5 * (edges[1:] + edges[:-1])
    hep.histplot(r, edges, ax=ax, histtype="fill", color=REFERENCE_COLOR, alpha=0.35, label=ref_label, flow="none")
    ax.stairs(r + re_, edges, baseline=np.clip(r - re_, 0, None), fill=True, color=REFERENCE_COLOR, alpha=0.35,
              linewidth=0, label="reference stat. unc.")
    rax.axhline(1.0, color=REFERENCE_COLOR, linewidth=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        band = np.where(r > 0, re_ / r, np.nan)
    rax.stairs(1 + np.nan_to_num(band), edges, baseline=1 - np.nan_to_num(band), fill=True, color=REFERENCE_COLOR,
               alpha=0.25, linewidth=0)
    lo, hi = RATIO_RANGE
    for i, (label, g, ge) in enumerate(gens):
        c, ls = color_of(i)
        hep.histplot(g, edges, ax=ax, histtype="step", color=c, linestyle=ls, linewidth=1.6, label=label, flow="none")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where((r > 0) & (g > 0), g / r, np.nan)
            err = np.where(r > 0, ge / r, np.nan)
        inside = np.isfinite(ratio) & (ratio >= lo) & (ratio <= hi)
        rax.errorbar(centers[inside], ratio[inside], yerr=err[inside], fmt="o", ms=3, color=c, elinewidth=1)
        up, down = np.isfinite(ratio) & (ratio > hi), np.isfinite(ratio) & (ratio < lo)
        rax.plot(centers[up], np.full(up.sum(), hi - 0.03 * (hi - lo)), "^", color=c, ms=6)
        rax.plot(centers[down], np.full(down.sum(), lo + 0.03 * (hi - lo)), "v", color=c, ms=6)
    rax.set_ylim(lo, hi)
    rax.set_ylabel("gen / ref")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)


def plot_observable(
    spec: ObservableSpec,
    reference: Observables,
    generated: Mapping[str, Observables],
    path: str | Path,
    *,
    n_bins: int = 40,
    reference_label: str = "reference",
) -> Path:
    """Histogram of observable ``spec.name`` with a generated/reference ratio panel.

    ``reference`` and each of ``generated`` are :class:`Observables` ([N, D], GeV); bins span
    the reference's 0.1%-99.9% quantiles (integers for counts, [-pi, pi] for angles).  The
    legend gives n and the share of events where the observable exists.
    """
    ref_v = reference[spec.name]
    edges = _plot_edges(ref_v, spec, n_bins)
    with _pyplot() as plt:
        fig, (ax, rax) = plt.subplots(
            2, 1, figsize=(9.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
        )
        r, re_, rfrac = _hist(ref_v, reference.weight, edges)
        gens = []
        for label, obs in generated.items():
            g, ge, gfrac = _hist(obs[spec.name], obs.weight, edges)
            gens.append((f"{label} (n={len(obs)}, {gfrac:.0%})", g, ge))
        _draw_pair(ax, rax, edges, (r, re_), f"{reference_label} (n={len(reference)}, {rfrac:.0%})", gens)
        ax.set_ylabel("fraction / bin")
        if spec.log and r.max() > 0:
            ax.set_yscale("log")
            ax.set_ylim(r[r > 0].min() / 5, r.max() * 5)
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(f"{spec.name}: unit area; under/overflow in edge bins", fontsize=10)
        rax.set_xlabel(spec.label)
        if spec.kind == "count":
            rax.set_xticks(np.arange(edges[0] + 0.5, edges[-1], max(1, int(len(edges) / 10))))
        fig.subplots_adjust(right=0.68)
        return _save(fig, plt, Path(path))


def _plot_edges(values: np.ndarray, spec: ObservableSpec, n_bins: int) -> np.ndarray:
    v = values[np.isfinite(values)]
    if spec.kind == "count":
        top = int(v.max()) if len(v) else 1
        return np.arange(top + 2) - 0.5
    if spec.kind == "angle":
        return np.linspace(-np.pi, np.pi, n_bins + 1)
    if not len(v):
        return np.linspace(0, 1, n_bins + 1)
    lo, hi = np.quantile(v, [0.001, 0.999])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, n_bins + 1)


def plot_multiplicities(
    reference: np.ndarray,
    generated: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    reference_weight: np.ndarray | None = None,
    generated_weight: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Objects per event for each type (j, b, e-, e+, m-, m+, g): one panel per type.

    ``reference`` and ``generated[label]`` are counts float [N, 7] (see
    :func:`fastmc.evaluate.metrics.multiplicity_counts`); histograms normalised to unit area.
    """
    names = TYPE_NAMES[1:]
    rw = np.ones(len(reference)) if reference_weight is None else reference_weight
    with _pyplot() as plt:
        fig, axes = plt.subplots(2, 4, figsize=(14, 7))
        for j, ax in enumerate(axes.flat):
            if j >= len(names):
                ax.axis("off")
                continue
            top = int(max([reference[:, j].max(initial=0)] + [g[:, j].max(initial=0) for g in generated.values()]))
            edges = np.arange(top + 2) - 0.5
            r, _, _ = _hist(reference[:, j], rw, edges)
            ax.stairs(r, edges, color=REFERENCE_COLOR, fill=True, alpha=0.35, label="reference")
            for i, (label, g) in enumerate(generated.items()):
                gw = np.ones(len(g)) if not generated_weight else generated_weight[label]
                h, _, _ = _hist(g[:, j], gw, edges)
                c, ls = color_of(i)
                ax.stairs(h, edges, color=c, linestyle=ls, linewidth=1.4, label=label)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_xlabel(f"number of {TYPE_LABELS.get(names[j], names[j])}")
            ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel("fraction of events (unit area)")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        axes.flat[-1].legend(handles, labels, fontsize=9, loc="center", frameon=False)
        fig.tight_layout()
        return _save(fig, plt, Path(path))


def _panels_2d(
    plt: Any,
    samples: Mapping[str, Observables],
    xname: str,
    yname: str,
    xedges: np.ndarray,
    yedges: np.ndarray,
    xlabel: str,
    ylabel: str,
) -> Any:
    k = len(samples)
    fig, axes = plt.subplots(1, k, figsize=(6.2 * k, 4.8), squeeze=False)
    for ax, (label, obs) in zip(axes[0], samples.items(), strict=True):
        x, y = obs[xname], obs[yname]
        ok = np.isfinite(x) & np.isfinite(y)
        h, _, _ = np.histogram2d(
            np.clip(x[ok], xedges[0], xedges[-1]),
            np.clip(y[ok], yedges[0], yedges[-1]),
            bins=[xedges, yedges],
            weights=obs.weight[ok],
        )
        total = h.sum()
        h = h / total if total > 0 else h
        mesh = ax.pcolormesh(xedges, yedges, np.where(h > 0, h, np.nan).T, cmap="viridis", shading="flat")
        fig.colorbar(mesh, ax=ax, label="fraction of events / bin")
        ax.set_title(f"{label} (n={len(obs)})", fontsize=11)
        ax.set_xlim(xedges[0], xedges[-1])
        ax.set_ylim(yedges[0], yedges[-1])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.tight_layout()
    return fig


def _auto_bins(samples: Mapping[str, Observables], n_bins: int | None) -> int:
    """About 10 events per bin of the smallest sample, 10..60 bins per axis."""
    if n_bins is not None:
        return n_bins
    n = min(len(o) for o in samples.values())
    return int(np.clip(np.sqrt(n / 10), 10, 60))


def plot_phi_holes(samples: Mapping[str, Observables], path: str | Path, *, n_bins: int | None = None) -> Path:
    """phi of the leading vs second jet, one panel per sample (the "holes" test of Otten et
    al.: a generator that learnt phi badly leaves empty regions).  Unit-area normalised;
    empty bins blank.  ``n_bins`` per axis (default: ~10 events per bin, 10..60)."""
    edges = np.linspace(-np.pi, np.pi, _auto_bins(samples, n_bins) + 1)
    with _pyplot() as plt:
        fig = _panels_2d(plt, samples, "jet1_phi", "jet2_phi", edges, edges, "$\\phi$(jet 1) [rad]", "$\\phi$(jet 2) [rad]")
        return _save(fig, plt, Path(path))


def plot_eta_pt(samples: Mapping[str, Observables], path: str | Path, *, n_bins: int | None = None) -> Path:
    """eta vs pT (GeV) of the leading jet, one panel per sample; bins from the first sample
    (the reference): pT up to its 99.5% quantile, |eta| <= 5.  Unit-area normalised."""
    n_bins = _auto_bins(samples, n_bins)
    first = next(iter(samples.values()))["jet1_pt"]
    first = first[np.isfinite(first)]
    hi = float(np.quantile(first, 0.995)) if len(first) else 1000.0
    xedges = np.linspace(0, hi, n_bins + 1)
    yedges = np.linspace(-5, 5, n_bins + 1)
    with _pyplot() as plt:
        fig = _panels_2d(plt, samples, "jet1_pt", "jet1_eta", xedges, yedges, "$p_T$(jet 1) [GeV]", "$\\eta$(jet 1)")
        return _save(fig, plt, Path(path))


def plot_auc_per_multiplicity(whole_event: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """Whole-event AUC per jet multiplicity: one series per sample (``metrics.json
    ["whole_event"]["samples"]``), with errors; the floors as grey bars."""
    with _pyplot() as plt:
        fig, ax = plt.subplots(figsize=(9.5, 5))
        k = max(len(whole_event), 1)
        labels: list[str] = []
        for d in whole_event.values():
            labels += [b["n_jets"] for b in d["per_n_jets"] if b["n_jets"] not in labels]
        labels.sort(key=lambda s: (int(s.lstrip(">=")), s.startswith(">=")))
        x = {lab: i for i, lab in enumerate(labels)}
        for i, (label, d) in enumerate(whole_event.items()):
            c, _ = color_of(i)
            off = (i - (k - 1) / 2) * 0.6 / k
            bins = [b for b in d["per_n_jets"] if b["auc"] is not None]
            xs = np.array([x[b["n_jets"]] + off for b in bins])
            ax.errorbar(xs, [b["auc"] for b in bins], yerr=[b["auc_err"] or 0 for b in bins], fmt="o", color=c,
                        label=label, capsize=2)
            fl = [(xx, b["floor_auc"], b["floor_auc_err"] or 0) for xx, b in zip(xs, bins, strict=True)
                  if b["floor_auc"] is not None]
            for xx, f, fe in fl:
                ax.add_patch(_rect(xx - 0.25 / k, f - fe, 0.5 / k, 2 * fe))
        ax.axhline(0.5, color=REFERENCE_COLOR, linewidth=1, linestyle="--")
        ax.set_xticks(range(len(labels)), [lab.replace(">=", "\u2265") for lab in labels],
                      fontsize=11)
        ax.set_xlabel("number of jets (j + b)")
        ax.set_xlim(-0.6, max(len(labels) - 0.4, 0.6))
        ax.set_ylabel("whole-event classifier AUC")
        ax.set_title("AUC per jet multiplicity (grey: floor +- error; 0.5 = indistinguishable)", fontsize=10)
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.subplots_adjust(right=0.7)
        return _save(fig, plt, Path(path))


def _rect(x: float, y: float, w: float, h: float) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x, y), w, max(h, 1e-3), color="#bbbbbb", alpha=0.8, linewidth=0)


def plot_weights(results: Mapping[str, Any], path: str | Path, *, n_bins: int = 50) -> Path:
    """Distribution of the classifier weight w = p / (1 - p) (log10 axis), unit area: of the
    generated events of each sample (solid) and of the reference events in the same test
    (dashed).  ``results``: label -> :class:`~fastmc.evaluate.wholeevent.WholeEventResult`.
    A perfect generator puts both at w ~ 1; tails show where it fails."""
    edges = np.linspace(-3, 3, n_bins + 1)
    with _pyplot() as plt:
        fig, ax = plt.subplots(figsize=(9.5, 5))
        for i, (label, res) in enumerate(results.items()):
            c, _ = color_of(i)
            w0, w1 = res.ratio_weights()
            for w, ew, ls, what in ((w1, res.weight_other, "-", "generated"),
                                    (w0, res.weight_reference, "--", "reference")):
                h, _, _ = _hist(np.log10(w), ew, edges)
                ax.stairs(h, edges, color=c, linestyle=ls, linewidth=1.5, label=f"{label}: {what} events")
        ax.axvline(0, color=REFERENCE_COLOR, linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("$\\log_{10} w$, $w = p/(1-p)$ (clipped to [-3, 3])")
        ax.set_ylabel("fraction of events / bin")
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.subplots_adjust(right=0.62)
        return _save(fig, plt, Path(path))
