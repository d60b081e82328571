"""What to generate: one process, the training mixture or a cross-section cocktail, and
which events to keep (a channel selection and/or a kinematic region).

Used by :mod:`fastmc.workflows.generate`.

Processes (:func:`process_plan`)
    ``process="ttbar"``
        events of that process alone; the model must be conditioned on the process
        (:attr:`~fastmc.models.base.GenerativeModel.process_conditional`, or a VAE sampled from
        a per-process fitted prior), otherwise a ConfigError says so instead of stamping the
        label on mixture events.
    no process
        the training mixture: each process in proportion to its number of training events
        (``model.info["processes"][p]["train_events"]``; equal shares if unknown).  A
        multi-process model that is not process-conditional draws its own unlabelled mixture,
        written under the process name ``mixture:p1+p2+...``.
    ``cocktail=True``
        each process in proportion to its cross section (``cross_section_weight``: sigma x
        10 fb^-1, from ``fastmc simulate``'s weights or the Dark Machines event weights, summed
        by ``fastmc prepare``); the events are unweighted, all of weight sigma_total x 10 fb^-1
        / n.

Within a batch of ``b`` events the number of each process is drawn from a multinomial
distribution with these fractions (torch generator of the shard), each process is sampled
with its own condition, and the batch is shuffled.

Selection (:class:`Selection`)
    a Dark Machines channel (:func:`fastmc.selection.passes_channel`) and/or a region
    (:func:`fastmc.region.parse_region`); generation by rejection: exact (the kept events are
    model events in the region), with the efficiency (kept / generated) in the report and the
    output metadata.  After a pilot of ``pilot_events`` generated events, a selection that keeps
    fewer than ``min_efficiency`` of them stops the run with a message giving the expected cost.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fastmc.data.batch import RawBatch, cat_batches
from fastmc.errors import ConfigError
from fastmc.events import Events
from fastmc.models.base import Condition, GenerativeModel, is_latent
from fastmc.points import ProcessSpace, format_value
from fastmc.region import Region, parse_region

__all__ = [
    "LUMINOSITY_FB",
    "ProcessPlan",
    "Selection",
    "cocktail_events",
    "draw_batch",
    "lead_range",
    "process_plan",
    "with_lead_range",
]

#: Integrated luminosity that ``cross_section_weight`` refers to (Dark Machines: 10 fb^-1).
LUMINOSITY_FB = 10.0


@dataclasses.dataclass(frozen=True)
class ProcessPlan:
    """Which processes a run draws, and how.

    Attributes
    ----------
    mode : str          "process" (one chosen), "mixture" (training fractions), "cocktail"
                        (cross-section fractions) or "unconditional" (the model's own mixture)
    fractions : dict    process name -> fraction (sums to 1); the processes drawn
    names : tuple       process names of the output's process codes
    label : str         what the metadata calls the process(es)
    weights : dict      process name -> weight of each generated event for ``n`` = 1
                        (divide by n): sigma x 10 fb^-1 per unit of expected count
    conditions : dict   process name -> the Condition it is sampled with (default:
                        ``Condition(process=name)``); a parameter point's names its family
    params : dict       the physical parameters of a "point" run (GeV; with the fixed ones
                        of the family's trained points); of a run of one trained process, the
                        simulation parameters its training events were made with (e.g.
                        ``{"pthat_min": 0.0}``), so that ``fastmc prepare`` files generated and
                        simulated events of that process under one name; else {}
    """

    mode: str
    fractions: dict[str, float]
    names: tuple[str, ...]
    label: str
    weights: dict[str, float]
    conditions: dict[str, Condition] = dataclasses.field(default_factory=dict)
    params: dict[str, float] = dataclasses.field(default_factory=dict)

    def event_weight(self, process: str, n: int) -> float:
        """Weight of each event of ``process`` in a run of ``n`` events."""
        return self.weights.get(process, 1.0) / max(n, 1)


def _info(model: GenerativeModel, key: str) -> dict[str, float] | None:
    """``{process: model.info["processes"][p][key]}``, or None if any process lacks it."""
    procs = (model.info or {}).get("processes", {})
    out = {}
    for p in model.processes:
        value = (procs.get(p) or {}).get(key)
        if value is None:
            return None
        out[p] = float(value)
    return out


def _normalise(values: Mapping[str, float], what: str) -> dict[str, float]:
    total = sum(values.values())
    if not total > 0 or any(v < 0 or not math.isfinite(v) for v in values.values()):
        raise ConfigError(f"cannot draw processes in proportion to {what}: {dict(values)}")
    return {p: v / total for p, v in values.items() if v > 0}


def _conditional(model: GenerativeModel, prior: str) -> bool:
    """Whether ``model`` generates one chosen process (label input or per-process prior)."""
    return model.process_conditional or (is_latent(model) and prior in ("bgmm", "gmm"))


def _point_plan(model: GenerativeModel, family: str, params: Mapping[str, float], force: bool,
                xsec: dict[str, float] | None) -> ProcessPlan:
    """The plan of a parameter point ``family`` at ``params`` (see :mod:`fastmc.points`)."""
    if not model.param_conditional:
        raise ConfigError(
            f"model {model.name!r} is not conditioned on physical parameters (it was not trained "
            "on several parameter points of a process with a label input); drop --param"
        )
    space = ProcessSpace.from_names(model.processes)
    fixed: dict[str, float] = {}
    for p, (f, _) in zip(model.processes, space.points, strict=True):
        if f == family:
            fixed.update(_trained_params(model, p))
    # a parameter held fixed in training may be given again at its value (e.g. m_neutralino=100)
    varied = space.trained(family) if family in space.families else {}
    given = dict(params)
    for key in [k for k in given if k not in varied and k in fixed]:
        if not math.isclose(float(given[key]), float(fixed[key]), rel_tol=1e-9, abs_tol=1e-9):
            raise ConfigError(
                f"{family} was trained with {key} fixed at {format_value(float(fixed[key]))} GeV; "
                f"it cannot generate {key}={format_value(float(given[key]))} (it varies only "
                f"{', '.join(varied) or 'no parameter'})"
            )
        del given[key]
    name, clean = space.resolve(family, given, force=force)
    full = {**fixed, **clean}
    names = model.processes if name in model.processes else (*model.processes, name)
    cond = Condition(process=family, params=clean)
    weight = _interpolated_weight(space, family, clean, xsec)
    return ProcessPlan("point", {name: 1.0}, names, name, {name: weight}, {name: cond}, full)


def _interpolated_weight(space: ProcessSpace, family: str, params: Mapping[str, float],
                         xsec: dict[str, float] | None) -> float:
    """sigma x 10 fb^-1 of a point: log-linear in its one parameter between the two nearest
    trained points (clamped outside them); 1 when not defined (no cross sections, or several
    parameters)."""
    if len(params) != 1 or not xsec:
        return 1.0
    ((key, x),) = params.items()
    pts = sorted((p[key], xsec[n]) for n, (f, p) in zip(space.names, space.points, strict=True)
                 if f == family and key in p and xsec.get(n, 0) > 0)
    if not pts:
        return 1.0
    xs, ys = zip(*pts, strict=True)
    return float(np.exp(np.interp(x, xs, np.log(ys))))


def process_plan(
    model: GenerativeModel, *, process: str | None = None, cocktail: bool = False,
    prior: str = "normal", params: Mapping[str, float] | None = None, force: bool = False,
) -> ProcessPlan:
    """The :class:`ProcessPlan` of a run (see the module docstring); ConfigError if impossible.

    ``params`` (GeV) asks for a parameter point of the family ``process`` (``force``: also
    outside the trained range).  Raises ConfigError for an unknown process (listing the known
    ones), for ``process`` with ``cocktail``, for a process or a cocktail of a model that is not
    process-conditional, and for parameters a model does not take or outside the trained range.
    """
    xsec = _info(model, "cross_section_weight")
    names = model.processes
    if process is not None and cocktail:
        raise ConfigError("--process and --cocktail exclude each other: a cocktail draws every process")
    if params:
        if process is None:
            raise ConfigError("--param sets the parameters of one process: pass --process FAMILY")
        return _point_plan(model, process, params, force, xsec)
    multi = len(names) > 1
    space = ProcessSpace.from_names(names)
    if process is not None and process not in names and process in space.families:
        return _point_plan(model, process, {}, force, xsec)  # says which --param to choose
    if process is not None:
        name = names[model.process_index(process)]
        if multi and not _conditional(model, prior):
            raise ConfigError(
                f"model {model.name!r} was trained on {', '.join(names)} but is not conditioned on "
                f"the process: it cannot generate {name!r} alone. Train one model per process "
                "(fastmc train --process), or a process-conditional model"
            )
        weights = {name: (xsec or {}).get(name, 1.0)}
        return ProcessPlan("process", {name: 1.0}, names, name, weights,
                           params=_trained_params(model, name))
    if cocktail:
        if xsec is None:
            raise ConfigError(
                "the model does not record its processes' cross sections (cross_section_weight); "
                "train it with `fastmc train STORE` on a store from `fastmc prepare`"
            )
        if multi and not _conditional(model, prior):
            raise ConfigError(f"model {model.name!r} is not conditioned on the process: no cocktail")
        total = sum(xsec.values())
        return ProcessPlan("cocktail", _normalise(xsec, "cross sections"), names, "cocktail",
                           {p: total for p in names})
    if multi and not _conditional(model, prior):
        label = "mixture:" + "+".join(names)
        total = sum((xsec or {}).values()) if xsec else 1.0
        return ProcessPlan("unconditional", {label: 1.0}, (*names, label), label, {label: total})
    counts = _info(model, "train_events") or {p: 1.0 for p in names}
    fractions = _normalise(counts, "training events") if multi else {names[0]: 1.0}
    weights = {p: (xsec or {}).get(p, 1.0) / fractions[p] for p in fractions}
    return ProcessPlan("mixture" if multi else "process", fractions, names,
                       "mixture" if multi else names[0], weights,
                       params={} if multi else _trained_params(model, names[0]))


def _trained_params(model: GenerativeModel, process: str) -> dict[str, float]:
    """The simulation parameters of ``process``'s training events (``fastmc simulate``'s,
    kept by ``fastmc prepare`` and ``fastmc train`` in the model's info), GeV; {} if none."""
    params = (((model.info or {}).get("processes") or {}).get(process) or {}).get("params") or {}
    return {str(k): float(v) for k, v in params.items()}


def cocktail_events(model: GenerativeModel, lumi_fb: float) -> int:
    """Number of events of a cocktail at integrated luminosity ``lumi_fb`` (fb^-1)."""
    if not lumi_fb > 0:
        raise ConfigError(f"--lumi must be > 0 fb^-1, got {lumi_fb}")
    xsec = _info(model, "cross_section_weight")
    if xsec is None:
        raise ConfigError("the model does not record its processes' cross sections: no --lumi")
    return round(sum(xsec.values()) / LUMINOSITY_FB * lumi_fb)


def _sample(model: GenerativeModel, n: int, prior: str, cond: Condition,
            generator: torch.Generator, truth: RawBatch | None) -> RawBatch:
    if is_latent(model):
        return model.sample(n, condition=cond, generator=generator, prior=prior, truth=truth)
    return model.sample(n, condition=cond, generator=generator)


def draw_batch(
    model: GenerativeModel, plan: ProcessPlan, b: int, prior: str, generator: torch.Generator,
    truth: RawBatch | None = None,
) -> RawBatch:
    """``b`` events following ``plan`` (RawBatch on the model's device, ``process`` indexes
    ``plan.names``, weight 1)."""
    procs = list(plan.fractions)
    if plan.mode == "unconditional":
        raw = _sample(model, b, prior, Condition(), generator, truth)
        raw.process = torch.full_like(raw.process, len(plan.names) - 1)
        return raw
    conds = [plan.conditions.get(p, Condition(process=p)) for p in procs]
    if len(procs) == 1:
        raw = _sample(model, b, prior, conds[0], generator, truth)
        raw.process = torch.full_like(raw.process, plan.names.index(procs[0]))
        return raw
    if truth is not None:
        raise ConfigError("the truth prior needs one process: pass --process")
    probs = torch.tensor([plan.fractions[p] for p in procs], dtype=torch.float64,
                         device=generator.device)
    draws = torch.multinomial(probs, b, replacement=True, generator=generator)
    counts = torch.bincount(draws, minlength=len(procs)).tolist()
    parts = [_sample(model, c, prior, cond, generator, None)
             for cond, c in zip(conds, counts, strict=True) if c]
    raw = cat_batches(parts)
    order = torch.randperm(b, generator=generator, device=generator.device).to(raw.process.device)
    return RawBatch(**{f.name: getattr(raw, f.name)[order] for f in dataclasses.fields(raw)})


def lead_range(model: GenerativeModel, plan: ProcessPlan, selection: Selection,
               region_path: str) -> tuple[float, float] | None:
    """The bounds (GeV) to truncate the model's leading observable to, or None (rejection).

    The faster region path (``region_path="auto"``) applies to a model with a
    :attr:`~fastmc.models.base.GenerativeModel.lead_observable`, a region that bounds it, and
    one process (a mixture's in-region process fractions would change with the truncation);
    ``"rejection"`` always generates the bulk and cuts.
    """
    if region_path not in ("auto", "rejection"):
        raise ConfigError(f"region_path must be 'auto' or 'rejection', got {region_path!r}")
    lead = model.lead_observable
    if region_path == "rejection" or lead is None or selection.region is None:
        return None
    if len(plan.fractions) != 1 or plan.mode == "unconditional":
        return None
    lo, hi = selection.region.bounds(lead)
    return None if (lo, hi) == (-math.inf, math.inf) else (lo, hi)


def with_lead_range(plan: ProcessPlan, bounds: tuple[float, float]) -> ProcessPlan:
    """``plan`` whose conditions truncate the leading observable to ``bounds`` (GeV)."""
    conds = {p: dataclasses.replace(plan.conditions.get(p, Condition(process=p)), lead_range=bounds)
             for p in plan.fractions}
    return dataclasses.replace(plan, conditions=conds)


@dataclasses.dataclass
class Selection:
    """A channel and/or a region; :meth:`keep` masks events, :meth:`check` guards the cost.

    ``min_efficiency`` in (0, 1]: after ``pilot_events`` generated events, a selection keeping
    a smaller share stops the run (ConfigError with the expected cost).
    """

    channel: str | None = None
    region: Region | None = None
    min_efficiency: float = 1e-3
    pilot_events: int = 10_000

    @classmethod
    def build(cls, channel: str | None, where: str | Region | None, min_efficiency: float,
              pilot_events: int) -> Selection:
        if not 0 < min_efficiency <= 1:
            raise ConfigError(f"min_efficiency must be in (0, 1], got {min_efficiency}")
        if pilot_events < 1:
            raise ConfigError(f"pilot_events must be >= 1, got {pilot_events}")
        if channel is not None:
            from fastmc.selection import CHANNELS

            if channel not in CHANNELS:
                raise ConfigError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
        region = parse_region(where) if isinstance(where, str) else where
        return cls(channel, region, min_efficiency, pilot_events)

    @property
    def active(self) -> bool:
        return self.channel is not None or self.region is not None

    def describe(self) -> str:
        parts = ([self.channel] if self.channel else []) + ([repr(str(self.region))] if self.region else [])
        return " and ".join(parts)

    def keep(self, events: Events) -> np.ndarray:
        """Boolean [N]: events passing the channel and inside the region."""
        mask = np.ones(len(events), bool)
        if self.channel is not None:
            from fastmc.selection import passes_channel

            mask &= passes_channel(events, self.channel)
        if self.region is not None:
            mask &= self.region.mask(events)
        return mask

    def check(self, attempted: int, passed: int, n: int, seconds: float, checked: bool) -> bool:
        """After the pilot (once; returns True when done): ConfigError if too few pass.

        The message gives the measured efficiency and the expected number of events and time
        to generate ``n`` accepted ones.
        """
        if checked or attempted < self.pilot_events:
            return checked
        eff = passed / attempted
        if eff < self.min_efficiency:
            need = f"{n / eff:,.3g}" if passed else "infinitely many"
            hours = f" (~{seconds / attempted * n / eff / 3600:,.3g} h at this rate)" if passed else ""
            raise ConfigError(
                f"only {passed} of {attempted:,} generated events pass {self.describe()} "
                f"(efficiency {eff:.2g} < min_efficiency {self.min_efficiency:g}): "
                f"{n:,} events would need {need} generated events{hours}. Widen the region, "
                "train a model on events of this region, or lower --min-efficiency to go on"
            )
        return True

    def metadata(self, attempted: int, passed: int) -> dict[str, Any]:
        """What the output's metadata records about the selection."""
        return {
            "channel": self.channel,
            "where": None if self.region is None else str(self.region),
            "selection_attempted": int(attempted),
            "selection_passed": int(passed),
            "selection_efficiency": passed / attempted if attempted else None,
        }
