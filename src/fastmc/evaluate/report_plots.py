"""The report's plot set: the overview of all samples and one folder per sample."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastmc.evaluate.floors import Sample
from fastmc.evaluate.observables import OBSERVABLES
from fastmc.evaluate.wholeevent import WholeEventResult

__all__ = ["OVERVIEW", "make_plots", "plot_count", "safe_name"]


def plot_count(n_generated: int, *, classifier: bool = True) -> int:
    """How many plots :func:`make_plots` writes (and ``progress(1)`` calls it makes)."""
    return len(OVERVIEW) + 3 + (2 if classifier else 0) + n_generated * len(OBSERVABLES)


#: Observables overlaid for all samples on the overview page.
OVERVIEW = ("met", "n_jets", "jet1_pt", "ht", "m_jj", "dr_jj")


def safe_name(label: str) -> str:
    """A folder name for a sample label (letters, digits, - _ . kept; the rest becomes _)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in label) or "sample"


def make_plots(folder: Path, ref: Sample, gens: Mapping[str, Sample], ref_label: str,
               progress: Callable[[int], None] | None, whole_event: Mapping[str, Any],
               results: Mapping[str, WholeEventResult]) -> list[Path]:
    """The overview (all samples: key observables, multiplicities, 2-D maps, AUC per jet
    multiplicity, classifier weights) in ``folder/overview``, then one folder per sample with
    every observable against the reference alone."""
    from fastmc.evaluate import plots as P

    paths = []

    def done(p: Path) -> None:
        paths.append(p)
        if progress:
            progress(1)

    over = folder / "overview"
    over.mkdir(parents=True, exist_ok=True)
    gen_obs = {k: g.obs for k, g in gens.items()}
    specs = {s.name: s for s in OBSERVABLES}
    if whole_event:
        done(P.plot_auc_per_multiplicity(whole_event, over / "auc_per_n_jets.png"))
        done(P.plot_weights(results, over / "classifier_weights.png"))
    for name in OVERVIEW:
        done(P.plot_observable(specs[name], ref.obs, gen_obs, over / f"{name}.png", reference_label=ref_label))
    done(P.plot_multiplicities(ref.mult, {k: g.mult for k, g in gens.items()}, over / "multiplicities.png",
                               reference_weight=ref.obs.weight,
                               generated_weight={k: g.obs.weight for k, g in gens.items()}))
    both = {ref_label: ref.obs, **gen_obs}
    done(P.plot_phi_holes(both, over / "phi_jet1_vs_jet2.png"))
    done(P.plot_eta_pt(both, over / "eta_vs_pt_jet1.png"))
    for label, obs in gen_obs.items():
        sub = folder / safe_name(label)
        sub.mkdir(parents=True, exist_ok=True)
        for spec in OBSERVABLES:
            done(P.plot_observable(spec, ref.obs, {label: obs}, sub / f"{spec.name}.png", reference_label=ref_label))
    return paths
