"""``simulate``: the full chain Pythia 8 -> detector response -> stored Events, in J processes.

Reproducibility.  The seed S is split with ``numpy.random.SeedSequence(S).spawn(J)``; worker w
gets Pythia's ``Random:seed`` (1..900000000) and the detector's numpy generator from child w.
Worker w makes a fixed quota of stored events (N // J, plus one for the first N % J workers) in
batches and saves them to a private temporary folder; the output is worker 0's events, then
worker 1's, and so on.  So the same S and J give byte-identical output whatever the scheduling,
and memory stays flat in N (one batch per worker in memory; the events wait on disk).

Event IDs: ``w * 10**12 + i`` with i the index of the generated event in worker w (0-based,
counting the events that did not pass the storage requirement), unique across workers.

Weight: sigma_stored x 10 fb^-1 / N where sigma_stored = sigma_gen x N / n_generated is the
cross section of the stored events; sigma_gen is Pythia's estimate (``sigmaGen``, mb -> fb),
combined over workers weighted by their generated events.  So the weights of a file sum to the
expected number of such events in 10 fb^-1, as in the Dark Machines files.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.errors import FastMCError
from fastmc.events import DEFAULT_MAX_OBJECTS, Events
from fastmc.selection import CHANNELS, passes_channel, passes_storage
from fastmc.simulate.card import DetectorCard
from fastmc.simulate.processes import get_process

__all__ = ["LUMINOSITY_FB", "simulate", "simulate_to_file"]

#: Integrated luminosity the weights refer to, fb^-1 (Dark Machines convention).
LUMINOSITY_FB = 10.0
ID_STRIDE = 10**12
DEFAULT_BATCH = 200
#: Give up when this many events were generated per worker and none was stored.
GIVE_UP_AFTER = 50_000


@dataclasses.dataclass(frozen=True)
class _Job:
    process: str
    params: dict[str, float]
    channel: str | None
    card: DetectorCard
    quota: int
    worker: int
    seed_seq: np.random.SeedSequence
    batch_size: int
    folder: str
    max_objects: int
    extra_settings: tuple[str, ...]


def _seeds(seed_seq: np.random.SeedSequence) -> tuple[int, np.random.Generator]:
    from fastmc.simulate.pythia import MAX_PYTHIA_SEED

    pythia_seed = int(seed_seq.generate_state(1, np.uint64)[0] % MAX_PYTHIA_SEED) + 1
    return pythia_seed, np.random.default_rng(seed_seq.spawn(1)[0])


def _hard_filter(batch: Any, hard_id: int) -> np.ndarray:
    """Events whose hard process (|status| 21-29) contains PDG ``hard_id``, bool [n]."""
    import awkward as ak

    prt = batch["prt"]
    hard = (abs(prt["status"]) >= 21) & (abs(prt["status"]) <= 29) & (prt["id"] == hard_id)
    return np.asarray(ak.any(hard, axis=1), dtype=bool)


def _run_worker(job: _Job, report: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Generate ``job.quota`` stored events into ``job.folder``; return a summary dict."""
    from fastmc.simulate.detector import detector_response
    from fastmc.simulate.pythia import PythiaGenerator

    process = get_process(job.process)
    pythia_seed, rng = _seeds(job.seed_seq)
    gen = PythiaGenerator(
        process, job.params, seed=pythia_seed, extra_settings=job.extra_settings
    )
    stored = n_generated = n_truncated = block = 0
    while stored < job.quota:
        batch = gen.next_batch(job.batch_size)
        size = len(batch)
        ids = job.worker * ID_STRIDE + n_generated + np.arange(size, dtype=np.int64)
        if process.hard_id is not None:
            sel = _hard_filter(batch, process.hard_id)
            batch, ids = batch[sel], ids[sel]
        events = detector_response(
            batch, rng, job.card, event_id=ids, process=process.name
        ).events
        keep = passes_storage(events)
        if job.channel is not None:
            keep &= passes_channel(events, job.channel)
        events = events[keep]
        need = job.quota - stored
        if len(events) >= need:
            events = events[:need]
            # count generated events up to the last one kept
            n_generated += int(events.event_id[-1] - job.worker * ID_STRIDE) + 1 - n_generated
        else:
            n_generated += size
        over = events.n_objects > job.max_objects
        n_truncated += int(over.sum())
        events = events.with_max_objects(job.max_objects, truncate=True)
        if len(events):
            np.savez(
                Path(job.folder) / f"w{job.worker:04d}_b{block:07d}.npz",
                types=events.types,
                p4=events.p4,
                met=events.met,
                met_phi=events.met_phi,
                event_id=events.event_id,
            )
            block += 1
            stored += len(events)
            if report is not None:
                report(len(events))
        if stored == 0 and n_generated >= GIVE_UP_AFTER:
            sel = f" and channel {job.channel}" if job.channel else ""
            raise FastMCError(
                f"{process.name}: none of {n_generated} generated events passed the storage "
                f"requirement{sel}; loosen the selection or raise the generator cuts "
                f"(--param pthat_min=...)"
            )
    return {
        "worker": job.worker,
        "pythia_seed": pythia_seed,
        "sigma_fb": gen.sigma_fb,
        "sigma_err_fb": gen.sigma_err_fb,
        "n_generated": n_generated,
        "n_stored": stored,
        "n_truncated": n_truncated,
    }


def _process_main(job: _Job, queue: Any) -> None:
    """Entry point of a worker process: report progress, then the summary or the error."""
    try:
        summary = _run_worker(job, lambda n: queue.put(("progress", job.worker, n)))
    except BaseException as exc:  # sent to the parent, which re-raises it
        try:
            queue.put(("error", job.worker, exc))
        except Exception:  # unpicklable exception
            queue.put(("error", job.worker, FastMCError(f"{type(exc).__name__}: {exc}")))
        return
    queue.put(("done", job.worker, summary))


def _run_parallel(
    jobs: list[_Job], progress: Callable[[int], None] | None
) -> list[dict[str, Any]]:
    """Run the jobs in spawned processes; the first failure stops them all and is raised."""
    import multiprocessing as mp
    import queue as queue_mod

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(job, q), daemon=True) for job in jobs]
    summaries: dict[int, dict[str, Any]] = {}
    try:
        for proc in procs:
            proc.start()
        while len(summaries) < len(jobs):
            try:
                kind, worker, payload = q.get(timeout=1.0)
            except queue_mod.Empty:
                for w, proc in enumerate(procs):
                    if w not in summaries and not proc.is_alive() and q.empty():
                        raise FastMCError(
                            f"simulation worker {w} died (exit code {proc.exitcode})"
                        ) from None
                continue
            if kind == "progress":
                if progress is not None:
                    progress(payload)
            elif kind == "error":
                raise payload
            else:
                summaries[worker] = payload
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        for proc in procs:
            proc.join(timeout=10)
        q.close()
    return [summaries[w] for w in range(len(jobs))]


def simulate(
    process: str,
    n_events: int,
    *,
    seed: int,
    jobs: int = 1,
    channel: str | None = None,
    params: Mapping[str, Any] | None = None,
    card: DetectorCard | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = DEFAULT_BATCH,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    tmp_dir: str | os.PathLike[str] | None = None,
    extra_settings: tuple[str, ...] = (),
) -> Iterator[Events]:
    """Simulate ``n_events`` stored events of a catalogued ``process`` (Pythia 8 + detector).

    Parameters
    ----------
    process : Dark Machines process ID of the catalogue (``fastmc simulate --list``).
    n_events : number of STORED events (after the storage requirement and ``channel``).
    seed : master seed S; ``jobs`` J worker processes get independent seeds from it.
    channel : optional Dark Machines channel (``chan1``, ``chan2a``, ``chan2b``, ``chan3``).
    params : process parameters (GeV), e.g. ``{"m_stop": 1000}``; see the catalogue.
    card : the detector response (:class:`DetectorCard`; default: Delphes ATLAS).
    progress : called with the number of new stored events as they come.
    batch_size : events per ``Pythia.nextBatch`` call.
    max_objects : K of the output; events with more objects are cut in Dark Machines order
        (jets kept first, photons dropped first) and counted in ``meta["n_truncated"]``.

    Yields
    ------
    Events batches (width ``max_objects``; p4 GeV) in a deterministic order, after the whole
    sample is generated.  Every batch carries the run's provenance in ``.meta`` (process,
    sigma_fb, seed, jobs, n_generated, pythia version, channel, ...).
    """
    if isinstance(n_events, bool) or not isinstance(n_events, int | np.integer) or n_events < 1:
        raise ValueError(f"n_events must be a positive integer, got {n_events!r}")
    if isinstance(jobs, bool) or not isinstance(jobs, int | np.integer) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if channel is not None and channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    entry = get_process(process)
    resolved = entry.resolve_params(params, channel)
    card = card or DetectorCard()
    jobs = int(min(jobs, n_events))
    return _generate(
        entry.name, int(n_events), int(seed), jobs, channel, resolved, card, progress,
        int(batch_size), int(max_objects), tmp_dir, tuple(extra_settings),
    )  # fmt: skip


def _generate(
    process, n_events, seed, jobs, channel, params, card, progress, batch_size, max_objects,
    tmp_dir, extra_settings,
) -> Iterator[Events]:  # fmt: skip
    from fastmc import __version__
    from fastmc.simulate.pythia import pythia_version

    folder = tempfile.mkdtemp(prefix="fastmc-sim-", dir=tmp_dir)
    try:
        children = np.random.SeedSequence(seed).spawn(jobs)
        quotas = [n_events // jobs + (1 if w < n_events % jobs else 0) for w in range(jobs)]
        job_list = [
            _Job(process, params, channel, card, quotas[w], w, children[w], batch_size, folder,
                 max_objects, extra_settings)
            for w in range(jobs)
        ]  # fmt: skip
        if jobs == 1:
            summaries = [_run_worker(job_list[0], progress)]
        else:
            summaries = _run_parallel(job_list, progress)
        n_gen = sum(s["n_generated"] for s in summaries)
        sigma = sum(s["sigma_fb"] * s["n_generated"] for s in summaries) / n_gen
        sigma_err = np.sqrt(sum((s["sigma_err_fb"] * s["n_generated"]) ** 2 for s in summaries))
        sigma_err /= n_gen
        n_trunc = sum(s["n_truncated"] for s in summaries)
        weight = sigma * LUMINOSITY_FB / n_gen
        meta = {
            "generator": f"Pythia {pythia_version()} (pythia8mc) + fastmc detector",
            "pythia_version": pythia_version(),
            "fastmc_version": __version__,
            "process": process,
            "params": dict(params),
            "channel": channel,
            "seed": seed,
            "jobs": jobs,
            "worker_pythia_seeds": [s["pythia_seed"] for s in summaries],
            "n_events": n_events,
            "n_generated": n_gen,
            "sigma_fb": sigma,
            "sigma_err_fb": float(sigma_err),
            "sigma_stored_fb": sigma * n_events / n_gen,
            "luminosity_fb": LUMINOSITY_FB,
            "weight": weight,
            "n_truncated": n_trunc,
            "max_objects": max_objects,
            "detector_card": dataclasses.asdict(card),
        }
        for path in sorted(Path(folder).glob("w*_b*.npz")):
            with np.load(path) as z:
                arrays = {k: z[k] for k in z.files}
            yield Events.from_arrays(
                **arrays, process=process, weight=weight, meta=meta
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def simulate_to_file(
    path: str | os.PathLike[str],
    process: str,
    n_events: int,
    **kwargs: Any,
) -> dict[str, Any]:
    """Simulate (see :func:`simulate`, same keyword arguments) and write ``path`` atomically.

    The format follows the extension (.csv/.csv.gz Dark Machines in MeV, .parquet, .root);
    returns the run's metadata (also written into the file where the format keeps it).
    """
    from fastmc.io import open_writer

    batches = simulate(process, n_events, **kwargs)
    first = next(batches)
    with open_writer(path, meta=first.meta) as writer:
        writer.write(first)
        for batch in batches:
            writer.write(batch)
    return dict(first.meta)
