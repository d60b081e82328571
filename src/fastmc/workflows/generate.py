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
events passing the reference sample's selection, generating until ``n`` are accepted; the
rejected share is reported.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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

__all__ = [
    "GenerateReport",
    "check_prior",
    "event_weight",
    "generate",
    "generate_events",
    "parse_part",
    "part_range",
    "sample_batch",
    "shard_seed",
]

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
    model_rejected_share: float = 0.0

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
    channel: str | None,
    truth_events: str | os.PathLike[str] | None,
    min_acceptance: float,
    part: tuple[int, int] | None = None,
) -> None:
    """ConfigError for arguments of :func:`generate_events` that cannot work."""
    if part is not None and (channel is not None or prior == "truth"):
        raise ConfigError(
            "--shard needs every generated event kept in order: it does not combine with "
            "--channel or --prior truth; select with `fastmc convert`/your analysis afterwards"
        )
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    if batch_size < 1 or shard_size < 1:
        raise ConfigError("batch_size and shard_size must be >= 1")
    if not 0 < min_acceptance <= 1:
        raise ConfigError(f"min_acceptance must be in (0, 1], got {min_acceptance}")
    if channel is not None:
        from fastmc.selection import CHANNELS

        if channel not in CHANNELS:
            raise ConfigError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
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
    batch_size: int = 10_000,
    seed: int = 0,
    shard_size: int = 1_000_000,
    channel: str | None = None,
    truth_events: str | os.PathLike[str] | None = None,
    min_acceptance: float = 1e-3,
    stats: dict[str, Any] | None = None,
    part: tuple[int, int] | None = None,
) -> Iterator[Events]:
    """Yield batches of generated Events (GeV) until ``n`` are produced (see module doc).

    With ``part=(k, m)`` only the events :func:`part_range` of the run of ``n`` are yielded,
    with their event ids in the whole run.

    ``stats`` (a dict the caller passes) receives ``attempted`` (events generated),
    ``passed`` (of those, passing ``channel``; the surplus of the last batch included),
    ``accepted`` (yielded) and ``shards``.
    Raises ValueError if a channel keeps less than ``min_acceptance`` of the events after the
    first 10 batches.
    """
    _check_arguments(model, n, prior, batch_size, shard_size, channel, truth_events,
                     min_acceptance, part)
    first, stop = part_range(n, shard_size, part)
    pidx = model.process_index(process)
    pname = model.processes[pidx]
    weight = event_weight(model, pname, n)
    device = model.device
    k = getattr(model.config, "max_objects", None) or 19
    truth_batches = _TruthBatches(truth_events, batch_size, k) if prior == "truth" else None
    stats = stats if stats is not None else {}
    accepted = attempted = first
    passed = 0
    shard = -1
    gen: torch.Generator | None = None
    while accepted < stop:
        # a batch never crosses a shard boundary
        if attempted // shard_size != shard or gen is None:
            shard = attempted // shard_size
            gen = torch.Generator(device=device).manual_seed(shard_seed(seed, shard))
        left_in_shard = (shard + 1) * shard_size - attempted
        b = min(batch_size, left_in_shard, stop - accepted if channel is None else batch_size)
        truth = truth_batches.take(b, device) if truth_batches is not None else None
        raw = sample_batch(model, b, prior, Condition(process=pname), gen, truth)
        attempted += b
        events = raw.to_events(process_names=model.processes, event_id_start=accepted)
        _check_output_events(events)
        if channel is not None:
            from fastmc.selection import passes_channel

            keep = passes_channel(events, channel)
            passed += int(keep.sum())
            events = events[keep][: stop - accepted]
            if attempted >= 10 * batch_size and passed < min_acceptance * attempted:
                raise ConfigError(
                    f"only {passed} of {attempted} generated events pass "
                    f"{channel}; the model does not produce this selection. Train longer or "
                    "generate without --channel."
                )
            events.event_id[:] = np.arange(accepted, accepted + len(events))
        else:
            passed += len(events)
        events.weight[:] = weight
        accepted += len(events)
        stats.update(attempted=attempted - first, accepted=accepted - first, passed=passed,
                     shards=shard + 1 - first // shard_size)
        if len(events):
            yield events


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


def generate(
    model: GenerativeModel | str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    n: int,
    *,
    prior: str = "normal",
    process: str | None = None,
    batch_size: int = 10_000,
    seed: int = 0,
    device: str = "auto",
    shard_size: int = 1_000_000,
    channel: str | None = None,
    truth_events: str | os.PathLike[str] | None = None,
    progress: Callable[[int], None] | None = None,
    part: tuple[int, int] | None = None,
) -> GenerateReport:
    """Generate ``n`` events into ``out_path`` (.csv, .csv.gz, .parquet or .root), atomically.

    ``model`` is a model directory or a loaded model.  ``progress(k)`` is called with the
    number of events written after each batch.  ``part=(k, m)`` writes only part ``k`` of
    ``m`` of the run of ``n`` events (module doc; the metadata records it).  Returns a
    :class:`GenerateReport`.
    """
    from fastmc.io import open_writer

    dev = resolve_device(device)
    model_dir = None
    if not isinstance(model, GenerativeModel):
        model_dir = str(Path(model).resolve())
        model = load_model(model, device=dev)
    else:
        model = model.to(dev).eval()
    pname = model.processes[model.process_index(process)]
    first, stop = part_range(n, shard_size, part)
    meta = {"generator": "fastmc", "fastmc_version": __version__, "model": model.name,
            "model_dir": model_dir, "prior": prior, "process": pname, "n": int(n),
            "seed": int(seed), "batch_size": int(batch_size), "channel": channel,
            "weight": event_weight(model, pname, n),
            **_seed_meta(n, seed, shard_size, part)}
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    before = model.generation_stats()
    with open_writer(out_path, meta=meta) as writer:
        for events in generate_events(
            model,
            n,
            prior=prior,
            process=pname,
            batch_size=batch_size,
            seed=seed,
            shard_size=shard_size,
            channel=channel,
            truth_events=truth_events,
            stats=stats,
            part=part,
        ):
            writer.write(events)
            if progress is not None:
                progress(len(events))
        rejection = _model_rejection(before, model.generation_stats())
        writer.meta["model_rejection"] = rejection
    seconds = time.perf_counter() - t0
    attempted = int(stats.get("attempted", 0))
    return GenerateReport(
        path=str(out_path),
        n=stop - first,
        attempted=attempted,
        rejected_share=1.0 - stats.get("passed", 0) / attempted if attempted else 0.0,
        seconds=seconds,
        events_per_s=(stop - first) / seconds if seconds > 0 else math.inf,
        prior=prior,
        process=pname,
        seed=int(seed),
        shards=int(stats.get("shards", 0)),
        weight=meta["weight"],
        part=part,
        events=(first, stop),
        model_rejected_share=rejection["rejected_share"],
    )


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
