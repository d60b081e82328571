"""Generation: sample a trained model in batches and stream the events to a file.

:func:`generate` draws ``n`` events from a model directory (or a loaded model) batch by batch,
decodes them through the model's encoding inverse (GeV, Dark Machines order) and writes each
batch to :func:`fastmc.io.open_writer` at once, so memory stays flat whatever ``n`` is
(10^9 events is a matter of disk and time).  The output is atomic (a temporary file renamed
at the end).

Randomness: the run is cut into shards of ``shard_size`` events (attempted events, counting
those a channel selection rejects); shard ``k`` draws from its own torch generator seeded
with :func:`shard_seed` ``(seed, k)``.  The same seed, batch size and shard size give the
same events; the output's metadata records the seed rule and the seeds of the shards.

Parts for batch farms: ``part=(k, m)`` (``fastmc generate --shard K/M``) generates only the
seed shards ``floor(k*S/m) .. floor((k+1)*S/m) - 1`` of the ``S = ceil(n / shard_size)``
shards of the whole run, with their global event ids.  Each seed shard is drawn exactly as in
the unsharded run (same seed, same batches), so the ``m`` parts concatenated in order are the
events of the unsharded run, byte for byte (``fastmc convert`` merges them).  A part may be
empty when ``m`` exceeds ``S``.  Parts need every event to be kept: not with ``channel``
(the accepted count of a seed shard is random) nor with the truth prior (its input stream).

Weights: a model trained by :func:`fastmc.workflows.train_store.train_from_store` knows each process's
``cross_section_weight`` (sigma x 10/fb, the sum of the source file's weights); every
generated event gets ``cross_section_weight / n``, so the generated sample represents the same
cross section x luminosity as the training sample.  Without that information the weight is 1.

Selection: ``channel="chan1"`` (etc., :func:`fastmc.selection.passes_channel`) keeps only
events passing the reference sample's selection, and ``where="met > 500"`` only events in a
kinematic region (:mod:`fastmc.region`), generating until ``n`` are accepted; the efficiency is
reported and recorded in the metadata.  What is drawn (one process, the training mixture, a
cross-section cocktail, a parameter point) and the selection are
:mod:`fastmc.workflows.conditioning`'s (docs/conditioning.md).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fastmc import __version__
from fastmc.config import derive_seed
from fastmc.data.batch import RawBatch
from fastmc.devices import resolve_device
from fastmc.errors import ConfigError
from fastmc.events import Events
from fastmc.models.base import Condition, GenerativeModel, is_latent
from fastmc.models.modeldir import load_model
from fastmc.region import Region
from fastmc.workflows.conditioning import (
    ProcessPlan,
    Selection,
    cocktail_events,
    draw_batch,
    lead_range,
    process_plan,
    with_lead_range,
)

if TYPE_CHECKING:
    from fastmc.workflows.refine import Refiner

__all__ = [
    "REFINE_MODES",
    "WEIGHTING_MODES",
    "GenerateReport",
    "check_prior",
    "check_refine_mode",
    "event_weight",
    "generate",
    "generate_events",
    "parse_part",
    "part_range",
    "refinement_metadata",
    "sample_batch",
    "shard_seed",
]

#: How a refiner applies (:func:`generate_events`): whole events kept or dropped, or every
#: event kept with the refiner's factor in its weight: min(w, cap) (the cap of the fit, as
#: rejection applies it) or w itself ("weights-uncapped": no clipping bias, a lower effective
#: share; docs/results.md session 14).  "reject-uncapped" is partial unweighting: rejection,
#: and the events above the cap (about 1%) kept with weight w / cap instead of 1, so that the
#: cap clips nothing.
REFINE_MODES = ("reject", "reject-uncapped", "weights", "weights-uncapped")
#: The refine modes that weight events instead of dropping them.
WEIGHTING_MODES = ("weights", "weights-uncapped")

SEED_RULE = "numpy.random.SeedSequence(seed, spawn_key=(shard,)).generate_state(1, uint64)[0] >> 1"


def shard_seed(seed: int, shard: int) -> int:
    """The torch seed of shard ``shard`` of a run seeded with ``seed`` (see module doc)."""
    return derive_seed(seed, shard)  # the rule SEED_RULE spells out


def parse_part(text: str) -> tuple[int, int]:
    """``"K/M"`` -> ``(K, M)`` with ``0 <= K < M``; ConfigError otherwise."""
    try:
        k, m = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard must be K/M (e.g. 0/100), got {text!r}") from None
    if m < 1 or not 0 <= k < m:
        raise ConfigError(f"--shard K/M needs 0 <= K < M, got {text!r}")
    return k, m


def part_range(n: int, shard_size: int, part: tuple[int, int] | None) -> tuple[int, int]:
    """Events ``[start, stop)`` of the whole run of ``n`` that ``part`` (k, m) generates.

    A part is a contiguous run of whole seed shards of ``shard_size`` events (module doc).
    """
    if part is None:
        return 0, n
    k, m = part
    if m < 1 or not 0 <= k < m:
        raise ConfigError(f"part must be (k, m) with 0 <= k < m, got {part}")
    shards = math.ceil(n / shard_size)
    return (min(n, k * shards // m * shard_size), min(n, (k + 1) * shards // m * shard_size))


@dataclasses.dataclass
class GenerateReport:
    """What :func:`generate` did."""

    path: str | None
    n: int
    attempted: int
    rejected_share: float
    seconds: float
    events_per_s: float
    prior: str
    process: str
    seed: int
    shards: int
    weight: float
    part: tuple[int, int] | None = None
    events: tuple[int, int] | None = None  # [start, stop) of the whole run in this part
    efficiency: float | None = None
    where: str | None = None
    process_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    region_path: str | None = None
    model_rejected_share: float = 0.0
    refinement: dict[str, Any] | None = None  # the output metadata "refinement" (None: none)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def event_weight(model: GenerativeModel, process: str, n: int) -> float:
    """Weight of each of ``n`` generated events of ``process`` (see module docstring)."""
    info = (model.info or {}).get("processes", {}).get(process)
    if not info or "cross_section_weight" not in info:
        return 1.0
    return float(info["cross_section_weight"]) / max(n, 1)


def _truth_stream(path: str | os.PathLike[str], batch: int, k: int) -> Iterator[Events]:
    """Events of ``path`` in chunks of ``batch``, cycling from the start when exhausted."""
    from fastmc.io import iter_events

    while True:
        got = False
        for chunk in iter_events(path, chunk_size=batch, max_objects=k, truncate=True):
            if len(chunk):
                got = True
                yield chunk
        if not got:
            raise ValueError(f"{path}: no events to use for the truth prior")


def check_prior(model: GenerativeModel, prior: str) -> None:
    """ConfigError unless ``model`` can sample from latent ``prior`` ("normal" always works)."""
    kinds = model.prior_kinds if is_latent(model) else ("normal",)
    if prior not in kinds:
        if not is_latent(model):
            raise ConfigError(
                f"model {model.name!r} samples from its standard-normal base only (it has no "
                f"latent prior); got prior={prior!r}, use 'normal'"
            )
        raise ConfigError(f"unknown prior {prior!r}; choose one of {', '.join(kinds)}")


def sample_batch(
    model: GenerativeModel,
    n: int,
    prior: str,
    condition: Condition,
    generator: torch.Generator,
    truth: RawBatch | None = None,
) -> RawBatch:
    """``model.sample`` with ``prior``/``truth`` passed on to latent-variable models only."""
    if is_latent(model):
        return model.sample(n, condition=condition, generator=generator, prior=prior, truth=truth)
    return model.sample(n, condition=condition, generator=generator)


def _check_arguments(
    model: GenerativeModel,
    n: int,
    prior: str,
    batch_size: int,
    shard_size: int,
    truth_events: str | os.PathLike[str] | None,
    part: tuple[int, int] | None = None,
    selecting: bool = False,
) -> None:
    """ConfigError for arguments of :func:`generate_events` that cannot work."""
    if part is not None and (selecting or prior == "truth"):
        raise ConfigError(
            "--shard needs every generated event kept in order: it does not combine with "
            "--channel, --where, --prior truth or a rejecting refiner (pass --no-refine or "
            "--refine-mode weights); select with "
            "`fastmc convert`/your analysis afterwards"
        )
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    if batch_size < 1 or shard_size < 1:
        raise ConfigError("batch_size and shard_size must be >= 1")
    check_prior(model, prior)
    if prior == "truth" and truth_events is None:
        raise ConfigError(
            "the truth prior encodes given events and adds noise: pass truth_events "
            "(--truth-events FILE)"
        )


class _TruthBatches:
    """Input events of the truth prior, ``take(b)`` at a time, cycling through the file."""

    def __init__(self, path: str | os.PathLike[str], batch: int, k: int) -> None:
        self._stream = _truth_stream(path, batch, k)
        self._buffer: Events | None = None

    def take(self, b: int, device: torch.device) -> RawBatch:
        while self._buffer is None or len(self._buffer) < b:
            nxt = next(self._stream)
            self._buffer = nxt if self._buffer is None else Events.concatenate([self._buffer, nxt])
        out = RawBatch.from_events(self._buffer[:b], device=device)
        self._buffer = self._buffer[b:]
        return out


def generate_events(
    model: GenerativeModel,
    n: int,
    *,
    prior: str = "normal",
    process: str | None = None,
    cocktail: bool = False,
    params: Mapping[str, float] | None = None,
    force: bool = False,
    batch_size: int = 10_000,
    seed: int = 0,
    shard_size: int = 1_000_000,
    channel: str | None = None,
    where: str | Region | None = None,
    truth_events: str | os.PathLike[str] | None = None,
    min_acceptance: float = 1e-3,
    pilot_events: int = 10_000,
    region_path: str = "auto",
    stats: dict[str, Any] | None = None,
    part: tuple[int, int] | None = None,
    refiner: Refiner | None = None,
    refine_mode: str = "reject",
) -> Iterator[Events]:
    """Yield batches of generated Events (GeV) until ``n`` are produced (see module doc).

    ``process`` / ``cocktail``: what to draw (:func:`fastmc.workflows.conditioning.process_plan`;
    neither: the training mixture; ``params``: a parameter point of the family ``process``,
    ``force``: also outside the trained range).  ``channel`` / ``where``: keep only events
    passing the channel and inside the region (rejection); after ``pilot_events`` generated
    events a selection keeping less than ``min_acceptance`` of them raises ConfigError with the
    expected cost.  ``region_path="auto"`` truncates the leading observable of a model that has
    one to the region's bounds first (:func:`fastmc.workflows.conditioning.lead_range`);
    ``"rejection"`` never does.  With ``part=(k, m)`` only the events :func:`part_range` of
    the run of ``n`` are yielded, with their event ids in the whole run.  ``stats`` (a dict
    the caller passes) receives ``attempted`` (events generated), ``passed`` (of those,
    passing the selection; the surplus of the last batch included), ``accepted`` (yielded),
    ``shards`` and ``region_path``.  ``refiner``: keep or drop each drawn event before the
    selection (:func:`_refine`; one numpy generator per seed shard, from the shard's seed), or
    with a weighting ``refine_mode`` keep it with the refiner's factor in its weight (:func:`_weigh`).
    """
    weighting = _weighting(refiner, refine_mode)
    selection = Selection.build(channel, where, min_acceptance, pilot_events)
    rejecting = selection.active or (refiner is not None and weighting not in WEIGHTING_MODES)
    _check_arguments(model, n, prior, batch_size, shard_size, truth_events, part, rejecting)
    first, stop = part_range(n, shard_size, part)
    plan, bounds = _plan(model, selection, region_path, process=process, cocktail=cocktail,
                         prior=prior, params=params, force=force)
    device = model.device
    k = getattr(model.config, "max_objects", None) or 19
    truth_batches = _TruthBatches(truth_events, batch_size, k) if prior == "truth" else None
    weights = np.array([plan.event_weight(name, n) for name in plan.names])
    stats = stats if stats is not None else {}
    stats["region_path"] = _region_path(model, bounds)
    accepted = attempted = first
    tally = _Tally()
    shard = -1
    gen: torch.Generator | None = None
    t0 = time.perf_counter()
    while accepted < stop:
        # a batch never crosses a shard boundary
        if attempted // shard_size != shard or gen is None:
            shard = attempted // shard_size
            gen, refine_rng = _shard_generators(device, seed, shard)
        left_in_shard = (shard + 1) * shard_size - attempted
        b = min(batch_size, left_in_shard, batch_size if rejecting else stop - accepted)
        truth = truth_batches.take(b, device) if truth_batches is not None else None
        raw = draw_batch(model, plan, b, prior, gen, truth)
        attempted += b
        events = raw.to_events(process_names=plan.names, event_id_start=accepted)
        _check_output_events(events)
        events = _keep(events, refiner, refine_rng, selection, tally, stats, n, t0, device, weighting)
        if rejecting:
            events = events[: stop - accepted]
            events.event_id[:] = np.arange(accepted, accepted + len(events))
        events.weight[:] = weights[events.process_code] * (events.weight if weighting else 1.0)
        accepted += len(events)
        stats.update(attempted=attempted - first, accepted=accepted - first, passed=tally.passed,
                     offered=tally.offered, shards=shard + 1 - first // shard_size)
        if len(events):
            yield events


def _shard_generators(device: torch.device, seed: int, shard: int
                      ) -> tuple[torch.Generator, np.random.Generator]:
    """The torch generator of seed shard ``shard`` (the model's draws) and the numpy one of its
    refinement (keep or drop), both from :func:`shard_seed`."""
    s = shard_seed(seed, shard)
    return (torch.Generator(device=device).manual_seed(s),
            np.random.default_rng(derive_seed(s, "refine")))


@dataclasses.dataclass
class _Tally:
    """Events offered to the selection (after the refinement), passing it, and whether the
    pilot check of the selection's efficiency was done."""

    offered: int = 0
    passed: int = 0
    checked: bool = False


def _keep(events: Events, refiner: Refiner | None, rng: np.random.Generator,
          selection: Selection, tally: _Tally, stats: dict[str, Any], n: int, t0: float,
          device: torch.device | None = None, weighting: str = "") -> Events:
    """The events of a batch that the refiner (if any; its trees on ``device``) and then the
    selection keep; with a ``weighting`` mode (:data:`WEIGHTING_MODES`) the refiner keeps all
    and puts its factor in the weight column (which the caller multiplies by the process
    weight after the selection); "reject-uncapped" rejects and puts the overweights there."""
    if refiner is not None and weighting in WEIGHTING_MODES:
        events.weight[:] = _weigh(events, refiner, stats, device, capped=weighting == "weights")
    elif refiner is not None:
        events = _refine(events, refiner, rng, stats, device, overweights=weighting == "reject-uncapped")
    tally.offered += len(events)
    if selection.active:
        events = events[selection.keep(events)]
        tally.passed += len(events)
        tally.checked = selection.check(tally.offered, tally.passed, n,
                                        time.perf_counter() - t0, tally.checked)
    else:
        tally.passed += len(events)
    return events


def _refine(events: Events, refiner: Refiner, rng: np.random.Generator,
            stats: dict[str, Any], device: torch.device | None = None, *,
            overweights: bool = False) -> Events:
    """The events of a batch the refiner keeps (its features on torch's number of threads, its
    trees on ``device`` when that is a CUDA GPU: the model's); with ``overweights`` (partial
    unweighting) each kept event's weight column holds max(w / cap, 1) over its mean over kept
    events at the fit (E[w] / (cap x acceptance)): the kept events weighted follow p_train
    without the cap's clipping, and the weights' sum is unchanged on average.  The counts
    ``refine_drawn``, ``refine_kept`` and ``refine_clipped`` (weights above the cap), and with
    ``overweights`` the sums ``refine_w``, ``refine_w2`` of the factors, of ``stats``
    (:func:`generate_events`) go up."""
    keep, w = refiner.accept(events, rng, threads=torch.get_num_threads(), device=device)
    stats["refine_tree_engine"] = refiner.walker(device)
    adds = [("refine_drawn", len(events)), ("refine_kept", int(keep.sum())),
            ("refine_clipped", int((w > refiner.cap).sum()))]
    if overweights:
        norm = refiner.mean_weight / (refiner.cap * refiner.expected_acceptance)
        factor = np.maximum(w[keep] / refiner.cap, 1.0) / norm
        events.weight[keep] = factor
        adds += [("refine_w", float(factor.sum())), ("refine_w2", float((factor ** 2).sum()))]
    for key, add in adds:
        stats[key] = stats.get(key, 0) + add
    return events[keep]


def check_refine_mode(refine_mode: str, option: str = "refine_mode") -> None:
    """ConfigError unless ``refine_mode`` is one of :data:`REFINE_MODES` (``option``: the name
    the message gives it)."""
    if refine_mode not in REFINE_MODES:
        raise ConfigError(f"{option} must be one of {', '.join(REFINE_MODES)}, not {refine_mode!r}")


def _weighting(refiner: Refiner | None, refine_mode: str) -> str:
    """The mode when a run puts ``refiner``'s factor in the event weights (a
    :data:`WEIGHTING_MODES` one, or "reject-uncapped"), else "" (false); ConfigError for an
    unknown mode."""
    check_refine_mode(refine_mode)
    return refine_mode if refiner is not None and refine_mode != "reject" else ""


def _weigh(events: Events, refiner: Refiner, stats: dict[str, Any],
           device: torch.device | None = None, *, capped: bool = True) -> np.ndarray:
    """The refiner's weight factor of each event of a batch, float64 [N]: ``min(w, cap)`` over
    its mean on generated events at the fit (``cap`` x the fit's acceptance), or without
    ``capped`` ``w`` over its mean there (``mean_weight_generated``), so that the weights' sum
    is unchanged on average; the counts ``refine_drawn``, ``refine_kept`` (all),
    ``refine_clipped`` (above the cap, clipped only when ``capped``) and the sums ``refine_w``,
    ``refine_w2`` of ``stats`` go up."""
    w = refiner.weights(events, threads=torch.get_num_threads(), device=device)
    stats["refine_tree_engine"] = refiner.walker(device)
    if capped:
        factor = np.minimum(w, refiner.cap) / (refiner.cap * refiner.expected_acceptance)
    else:
        factor = w / refiner.mean_weight
    for key, add in (("refine_drawn", len(events)), ("refine_kept", len(events)),
                     ("refine_clipped", int((w > refiner.cap).sum()) if capped else 0),
                     ("refine_w", float(factor.sum())), ("refine_w2", float((factor ** 2).sum()))):
        stats[key] = stats.get(key, 0) + add
    return factor


def _plan(model: GenerativeModel, selection: Selection, region_path: str, **what: Any
          ) -> tuple[ProcessPlan, tuple[float, float] | None]:
    """The run's :class:`ProcessPlan` (``what``: process_plan's keywords) and the bounds of the
    leading observable it is truncated to (None: rejection only)."""
    plan = process_plan(model, **what)
    bounds = lead_range(model, plan, selection, region_path)
    return (plan if bounds is None else with_lead_range(plan, bounds)), bounds


def _region_path(model: GenerativeModel, bounds: tuple[float, float] | None) -> str:
    if bounds is None:
        return "rejection"
    return f"truncated {model.lead_observable} in {list(bounds)} GeV, then rejection"


def _check_output_events(events: Events) -> None:
    """ModelOutputError if the model produced NaN/infinite values or unknown object types."""
    from fastmc.errors import ModelOutputError
    from fastmc.io.validate import find_bad_events

    bad, fields = find_bad_events(events)
    if bad.any():
        i = int(np.argmax(bad))
        raise ModelOutputError(
            f"the model produced invalid values in {int(bad.sum())} of {len(events)} events "
            f"(first: {fields[0]} of event {i}: not finite or an unknown type); the model is "
            "broken: retrain it (a lower --lr helps against divergence); nothing was written"
        )


def _seed_meta(n: int, seed: int, shard_size: int, part: tuple[int, int] | None) -> dict:
    """The output metadata that says which seed shards (and which part of the run) it holds."""
    first, stop = part_range(n, shard_size, part)
    shard_ids = range(first // shard_size, math.ceil(stop / shard_size))
    return {"shard_size": int(shard_size), "shard_seed_rule": SEED_RULE,
            "shard_seeds": [shard_seed(seed, s) for s in shard_ids[:10_000]],
            "first_shard": shard_ids.start, "part": None if part is None else list(part),
            "events": [first, stop]}


def _load(model: GenerativeModel | str | os.PathLike[str], device: str, refine: bool | None,
          prior: str) -> tuple[GenerativeModel, str | None, Refiner | None]:
    """(the model on ``device``, its directory or None, the refiner a run with ``prior`` uses)."""
    dev = resolve_device(device)
    refiner = _refiner(model, refine, prior)
    if not isinstance(model, GenerativeModel):
        return load_model(model, device=dev), str(Path(model).resolve()), refiner
    return model.to(dev).eval(), None, refiner


def _run_size(model: GenerativeModel, n: int | None, cocktail: bool, lumi: float | None) -> int:
    """``n``, or the events of a cocktail at ``lumi`` fb^-1; ConfigError if neither or both."""
    if lumi is not None:
        if not cocktail or n is not None:
            raise ConfigError("--lumi sets the number of events of a --cocktail: pass it instead of -n")
        return cocktail_events(model, lumi)
    if n is None:
        raise ConfigError("pass the number of events (-n), or --cocktail --lumi")
    return n


def _run_meta(stats: dict[str, Any], plan: ProcessPlan, counts: np.ndarray, channel: str | None,
              where: str | Region | None, min_efficiency: float, pilot_events: int
              ) -> dict[str, Any]:
    """What a run adds to the output's metadata at the end: the events of each process and,
    with a selection, its counts, efficiency and path."""
    out: dict[str, Any] = {"process_counts": {p: int(c) for p, c in
                                              zip(plan.names, counts, strict=True) if c}}
    if channel is not None or where is not None:
        offered, passed = int(stats.get("offered", 0)), int(stats.get("passed", 0))
        out.update(Selection.build(channel, where, min_efficiency, pilot_events)
                   .metadata(offered, passed), region_path=stats.get("region_path"))
    return out


def refinement_metadata(refiner: Refiner | None, stats: Mapping[str, Any], mode: str = "reject"
                        ) -> dict[str, Any] | None:
    """The output metadata ``refinement`` of a run: events drawn, kept and clipped (weight above
    the cap) by the refiner, and what its fit measured; with a weighting ``mode`` the effective
    share of the weights, (sum w)^2 / (N sum w^2), and their mean factor too; None without a
    refiner."""
    if refiner is None:
        return None
    drawn, kept = int(stats.get("refine_drawn", 0)), int(stats.get("refine_kept", 0))
    clipped = int(stats.get("refine_clipped", 0))
    fit = {k: refiner.info.get(k) for k in ("method", "acceptance", "clipped_share", "cap",
                                            "cap_quantile", "trees", "training_events",
                                            "generated_events", "validation_log_loss",
                                            "mean_weight_generated", "stages", "closure")}
    meta = {
        "mode": mode, "drawn": drawn, "kept": kept, "rejected": drawn - kept,
        "acceptance": kept / drawn if drawn else None,
        "clipped": clipped, "clipped_share": clipped / drawn if drawn else None,
        "reason": "classifier refinement: whole events kept with probability min(w / cap, 1), "
                  "none moved",
        "fit": fit, "tree_engine": stats.get("refine_tree_engine", refiner.tree_engine),
    }
    sw, sw2 = stats.get("refine_w", 0.0), stats.get("refine_w2", 0.0)
    if mode != "reject":  # the factors' share and mean over the kept (weights: = drawn) events
        meta.update(effective_share=sw * sw / (kept * sw2) if kept and sw2 else None,
                    mean_factor=sw / kept if kept else None)
    if mode == "reject-uncapped":
        meta["reason"] = ("classifier refinement with partial unweighting: whole events kept with "
                          "probability min(w / cap, 1), the kept ones above the cap with weight "
                          "w / cap instead of 1 (normalised to a mean of 1), none moved")
    elif mode in WEIGHTING_MODES:
        factor = ("min(w, cap) / (cap x the acceptance at the fit)" if mode == "weights" else
                  "w / (the mean of w over generated events at the fit), uncapped")
        meta["reason"] = (f"classifier refinement as event weights: every drawn event kept, its "
                          f"weight multiplied by {factor}; none moved or dropped")
    return meta


def _metadata(model: GenerativeModel, model_dir: str | None, plan: ProcessPlan, n: int, *,
              prior: str, lumi: float | None, force: bool, seed: int, batch_size: int,
              channel: str | None, where: str | Region | None) -> dict[str, Any]:
    """The output file's metadata of a :func:`generate` run (before the selection counts)."""
    return {
        "generator": "fastmc", "fastmc_version": __version__, "model": model.name,
        "model_dir": model_dir, "prior": prior, "process": plan.label, "mode": plan.mode,
        "process_fractions": plan.fractions, "lumi_fb": lumi, "params": plan.params,
        "forced": bool(force and plan.mode == "point"), "n": int(n), "seed": int(seed),
        "batch_size": int(batch_size), "channel": channel,
        "where": None if where is None else str(where),
        "weights": {p: plan.event_weight(p, n) for p in plan.fractions},
        "weight": plan.event_weight(plan.label, n) if len(plan.fractions) == 1 else None,
    }


def generate(
    model: GenerativeModel | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    n: int | None,
    *,
    prior: str = "normal",
    process: str | None = None,
    cocktail: bool = False,
    lumi: float | None = None,
    params: Mapping[str, float] | None = None,
    force: bool = False,
    batch_size: int = 10_000,
    seed: int = 0,
    device: str = "auto",
    shard_size: int = 1_000_000,
    channel: str | None = None,
    where: str | Region | None = None,
    min_efficiency: float = 1e-3,
    pilot_events: int = 10_000,
    region_path: str = "auto",
    truth_events: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    part: tuple[int, int] | None = None,
    refine: bool | None = None,
    refine_mode: str = "reject",
) -> GenerateReport:
    """Generate ``n`` events into ``out_path`` (.csv, .csv.gz, .parquet or .root), atomically.

    ``model`` is a model directory or a loaded model.  ``process`` / ``cocktail`` / ``where`` /
    ``channel`` / ``params`` / ``force`` / ``region_path``: see :func:`generate_events`
    (``min_efficiency`` is its ``min_acceptance``).  ``lumi`` (fb^-1, cocktails only) sets
    ``n`` = sigma_total x lumi (``n`` must be None).  ``progress(k)`` is called with the
    number of events written after each batch.  ``part=(k, m)`` writes only part ``k`` of
    ``m`` of the run of ``n`` events (module doc).  The output's metadata records the plan,
    the seeds, the part, the selection's efficiency and the refinement's counts.  ``refine``:
    use the model directory's refiner (:mod:`fastmc.workflows.refine`): None = when it has a
    valid one, True = it must, False = never; ``refine_mode``: "reject" (keep or drop whole
    events), "reject-uncapped" (the same events, those above the cap weighted w / cap),
    "weights" (keep every event, the refiner's factor min(w, cap) in its weight) or
    "weights-uncapped" (the factor w itself; see :data:`REFINE_MODES`).  Returns a
    :class:`GenerateReport`.
    """
    from fastmc.io import open_writer

    model, model_dir, refiner = _load(model, device, refine, prior)
    if refiner is None and refine_mode in WEIGHTING_MODES and refine is not False:
        warnings.warn(f"refine_mode={refine_mode!r} but {model_dir or 'the model'} has no refiner that "
                      "applies: generating without refinement (fit one with `fastmc refine`)",
                      UserWarning, stacklevel=2)
    plan = process_plan(model, process=process, cocktail=cocktail, prior=prior, params=params,
                        force=force)
    n = _run_size(model, n, cocktail, lumi)
    first, stop = part_range(n, shard_size, part)
    meta = {**_metadata(model, model_dir, plan, n, prior=prior, lumi=lumi, force=force, seed=seed,
                        batch_size=batch_size, channel=channel, where=where),
            **_seed_meta(n, seed, shard_size, part)}
    stats: dict[str, Any] = {}
    counts = np.zeros(len(plan.names), np.int64)
    t0 = time.perf_counter()
    before = model.generation_stats()
    with open_writer(out_path, meta=meta) as writer:
        for events in generate_events(
            model, n, prior=prior, process=process, cocktail=cocktail, params=params, force=force,
            batch_size=batch_size, seed=seed, shard_size=shard_size, channel=channel, where=where,
            truth_events=truth_events, min_acceptance=min_efficiency, pilot_events=pilot_events,
            region_path=region_path, stats=stats, part=part, refiner=refiner, refine_mode=refine_mode,
        ):
            writer.write(events)
            counts += np.bincount(events.process_code, minlength=len(plan.names))
            if progress is not None:
                progress(len(events))
        writer.meta.update(_run_meta(stats, plan, counts, channel, where, min_efficiency, pilot_events),
                           refinement=refinement_metadata(refiner, stats, refine_mode))
        rejection = _model_rejection(before, model.generation_stats())
        writer.meta["model_rejection"] = rejection
    return _report(out_path, writer.meta, meta, stats, plan.label, prior, seed, part, (first, stop),
                   rejection, time.perf_counter() - t0)


def _report(out_path: str | os.PathLike[str], written: Mapping[str, Any], meta: Mapping[str, Any],
            stats: Mapping[str, Any], process: str, prior: str, seed: int,
            part: tuple[int, int] | None, span: tuple[int, int], rejection: Mapping[str, Any],
            seconds: float) -> GenerateReport:
    """The :class:`GenerateReport` of a :func:`generate` run (``written``: the output's final
    metadata, ``meta``: the run's, ``span``: [first, stop) of the whole run)."""
    first, stop = span
    attempted, passed, offered = (int(stats.get(k, 0)) for k in ("attempted", "passed", "offered"))
    return GenerateReport(
        path=str(out_path), n=stop - first, attempted=attempted,
        rejected_share=1.0 - passed / attempted if attempted else 0.0, seconds=seconds,
        events_per_s=(stop - first) / seconds if seconds > 0 else math.inf, prior=prior,
        process=process, seed=int(seed), shards=int(stats.get("shards", 0)),
        weight=meta["weight"] if meta["weight"] is not None else float("nan"), part=part,
        events=(first, stop), efficiency=passed / offered if offered else None,
        where=meta["where"], process_counts=written["process_counts"],
        region_path=written.get("region_path"), model_rejected_share=rejection["rejected_share"],
        refinement=written["refinement"],
    )


def _refiner(model: GenerativeModel | str | os.PathLike[str], refine: bool | None,
             prior: str = "normal") -> Refiner | None:
    """The refiner a run uses (see :func:`generate`'s ``refine``)."""
    if refine is False:
        return None
    if isinstance(model, GenerativeModel):
        if refine:
            raise ConfigError("refine=True needs a model directory (its refiner.safetensors), "
                              "not a loaded model")
        return None
    from fastmc.workflows.refine import load_refiner

    return load_refiner(model, required=bool(refine), prior=prior)


def _model_rejection(before: dict[str, int], after: dict[str, int]) -> dict[str, Any]:
    """Events the model drew and rejected inside ``sample`` during a run (see
    :meth:`GenerativeModel.generation_stats`); ``rejected_share`` = rejected / drawn, 0 for a
    model that never rejects."""
    drawn = int(after.get("drawn", 0)) - int(before.get("drawn", 0))
    rejected = int(after.get("rejected", 0)) - int(before.get("rejected", 0))
    return {
        "drawn": drawn,
        "rejected": rejected,
        "rejected_share": rejected / drawn if drawn else 0.0,
        "reason": "jets closer than the jet radius (whole events rejected, none moved)"
        if drawn
        else None,
    }
