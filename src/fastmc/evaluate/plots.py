"""Thesis-style plots of reference vs generated events (matplotlib Agg, mplhep ATLAS style).

Every function writes one PNG (atomically) and returns its path.  matplotlib and mplhep are
imported lazily (``fastmc[plot]``); figures are bare ``matplotlib.figure.Figure`` objects drawn
by Agg, so no display is needed and pyplot's state and backend are left alone.

Conventions: histograms are **normalised to unit area** (each bin shows the fraction of the
events where the observable exists); values outside the bin range are counted in the first
or last bin; the ratio panel shows generated / reference per bin with the statistical error
of both samples (sqrt of the sum of squared weights) propagated, and is left blank where
either histogram is empty.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.errors import require
from fastmc.evaluate.observables import Observables, ObservableSpec
from fastmc.events import TYPE_NAMES
from fastmc.io.atomic import atomic_path

__all__ = ["plot_eta_pt", "plot_multiplicities", "plot_observable", "plot_phi_holes"]

_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2")


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
        fig.savefig(tmp, dpi=80, format="png")
    plt.close(fig)
    return path


def _hist(values: np.ndarray, weight: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, ...]:
    ok = np.isfinite(values)
    v, w = np.clip(values[ok], edges[0], edges[-1]), weight[ok]
    h, _ = np.histogram(v, bins=edges, weights=w)
    s2, _ = np.histogram(v, bins=edges, weights=w * w)
    total = h.sum()
    if total <= 0:
        return np.zeros_like(h), np.zeros_like(h), 0.0
    return h / total, np.sqrt(s2) / total, float(ok.mean())


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
    the reference's 0.1%-99.9% quantiles (integers for counts, [-pi, pi] for angles).
    """
    ref_v = reference[spec.name]
    edges = _plot_edges(ref_v, spec, n_bins)
    centers = 0.5 * (edges[1:] + edges[:-1])
    with _pyplot() as plt:
        fig, (ax, rax) = plt.subplots(
            2, 1, figsize=(7, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05}
        )
        r, re_, rfrac = _hist(ref_v, reference.weight, edges)
        ax.stairs(r, edges, color="black", linewidth=1.6, label=f"{reference_label} ({rfrac:.0%} of events)")
        ax.stairs(r + re_, edges, baseline=np.clip(r - re_, 0, None), fill=True, color="black", alpha=0.15,
                  linewidth=0)
        rax.axhline(1.0, color="black", linewidth=1)
        lo, hi = 0.5, 1.5
        for i, (label, obs) in enumerate(generated.items()):
            c = _COLORS[i % len(_COLORS)]
            g, ge, gfrac = _hist(obs[spec.name], obs.weight, edges)
            ax.stairs(g, edges, color=c, linewidth=1.4, label=f"{label} ({gfrac:.0%} of events)")
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where((r > 0) & (g > 0), g / r, np.nan)
                err = ratio * np.sqrt((ge / np.where(g > 0, g, 1)) ** 2 + (re_ / np.where(r > 0, r, 1)) ** 2)
            shown = np.isfinite(ratio)
            if shown.any():  # widen the ratio panel to the points (at most 0..3)
                lo, hi = min(lo, max(0.0, ratio[shown].min() - 0.1)), max(hi, min(3.0, ratio[shown].max() + 0.1))
            rax.errorbar(centers[shown], ratio[shown], yerr=err[shown], fmt="o", ms=3, color=c, elinewidth=1)
        ax.set_ylabel("fraction / bin")
        if spec.log and r.max() > 0:
            ax.set_yscale("log")
            ax.set_ylim(r[r > 0].min() / 5, r.max() * 5)
        else:
            ax.set_ylim(bottom=0)
        ax.legend(fontsize=10, loc="best")
        ax.set_title(f"{spec.name}: normalised to unit area; under/overflow in edge bins", fontsize=10)
        rax.set_ylim(lo, hi)
        rax.set_ylabel("gen / ref")
        rax.set_xlabel(spec.label)
        return _save(fig, plt, Path(path))


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
            ax.stairs(r, edges, color="black", linewidth=1.6, label="reference")
            for i, (label, g) in enumerate(generated.items()):
                gw = np.ones(len(g)) if not generated_weight else generated_weight[label]
                h, _, _ = _hist(g[:, j], gw, edges)
                ax.stairs(h, edges, color=_COLORS[i % len(_COLORS)], linewidth=1.3, label=label)
            ax.set_xlim(edges[0], edges[-1])
            ax.set_xlabel(f"number of {names[j]}")
            ax.set_yscale("log")
            if j == 0:
                ax.set_ylabel("fraction of events (unit area)")
                ax.legend(fontsize=9)
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
    fig, axes = plt.subplots(1, k, figsize=(5.2 * k, 4.8), squeeze=False)
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
        ax.pcolormesh(xedges, yedges, np.where(h > 0, h, np.nan).T, cmap="viridis", shading="flat")
        ax.set_title(label, fontsize=11)
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
