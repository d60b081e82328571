"""``fastmc bench``: generation throughput of a trained model next to the simulation's.

One run measures, on every requested device (CPU, and the GPU when one is present):

- the bare network (:meth:`GenerativeModel.core_runner`, for a VAE the decoder alone on
  pre-drawn latent codes): the arithmetic bound;
- generation to memory (prior sampling, decoding through the encoding inverse, conversion to
  :class:`~fastmc.events.Events`) at batch sizes 1, 100 and 10 000;
- generation to Parquet and to Dark Machines CSV at the same batch sizes (atomic files in a
  temporary folder, deleted afterwards);

and, when the simulation module is installed and the process is in its catalogue, the events
per second of :func:`fastmc.simulate.simulate` (Pythia 8 + FastJet + detector) for the same
process, run with as many worker processes as generation has torch threads (so both use the
same number of cores; the result says so), with the ratio of generation (to memory, batch
10 000, CPU) to simulation.
Timings are wall-clock on whatever else the machine is doing (the load average is recorded).
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fastmc import __version__
from fastmc.models.base import Condition, GenerativeModel
from fastmc.models.modeldir import load_model
from fastmc.workflows.generate import check_prior

__all__ = ["BATCH_SIZES", "format_markdown", "run_bench", "time_simulation"]

BATCH_SIZES = (1, 100, 10_000)
#: Events timed per batch size at scale 1.
_EVENTS = {1: 300, 100: 10_000, 10_000: 100_000}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], int], events: int, device: torch.device) -> dict[str, float]:
    """Call ``fn`` (returns events done) until ``events`` are done; one warm-up call first."""
    fn()
    _sync(device)
    done = 0
    t0 = time.perf_counter()
    while done < events:
        done += fn()
    _sync(device)
    dt = time.perf_counter() - t0
    return {"events": done, "seconds": dt, "events_per_s": done / dt if dt > 0 else float("inf")}


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fastmc": __version__,
    }
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every OS
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def time_simulation(process: str, n_events: int, *, seed: int = 0, jobs: int = 1) -> dict[str, Any]:
    """Events/s of :func:`fastmc.simulate.simulate` with ``jobs`` worker processes.

    Returns ``{"process", "jobs", "events", "seconds", "events_per_s"}`` or ``{"process",
    "not_measured": reason}`` when the simulation extra or the process is not available.
    """
    try:
        from fastmc.simulate import CATALOGUE, simulate
    except ImportError as exc:
        return {"process": process, "not_measured": f"simulation module not available ({exc})"}
    if process not in CATALOGUE:
        return {
            "process": process,
            "not_measured": f"process {process!r} is not in the simulation catalogue; pass "
            f"--sim-process with one of {', '.join(CATALOGUE)}",
        }
    try:
        t0 = time.perf_counter()
        n = sum(len(ev) for ev in simulate(process, n_events, seed=seed, jobs=jobs))
        dt = time.perf_counter() - t0
    except ImportError as exc:
        return {"process": process, "not_measured": f"simulation extra not installed ({exc})"}
    return {"process": process, "jobs": jobs, "events": n, "seconds": dt, "events_per_s": n / dt}


def _bench_model(
    m: GenerativeModel,
    dev_name: str,
    pname: str,
    *,
    prior: str,
    scale: float,
    batch_sizes: tuple[int, ...],
    targets: tuple[str, ...],
    seed: int,
    not_measured: list[str],
    tick: Callable[[], None],
) -> list[dict[str, Any]]:
    """The timing rows of one loaded model on one device (bare network, memory, files)."""
    from fastmc.workflows.generate import generate, sample_batch

    dev = torch.device(dev_name)
    rows: list[dict[str, Any]] = []
    runner = m.core_runner(10_000, device=dev)
    if runner is not None:
        n = max(1, int(_EVENTS[10_000] * scale))
        rows.append({"device": dev_name, "target": "bare network", "batch_size": 10_000, **_time(runner, n, dev)})
    else:
        not_measured.append(f"bare network: model {m.name!r} provides no core_runner")
    tick()
    condition = Condition(process=pname)
    for b in batch_sizes:
        n = max(b, int(_EVENTS.get(b, 10 * b) * scale))
        if "memory" in targets:
            gen = torch.Generator(device=dev).manual_seed(seed)

            def once(b: int = b, gen: torch.Generator = gen) -> int:
                raw = sample_batch(m, b, prior, condition, gen)
                return len(raw.to_events(process_names=m.processes))

            rows.append({"device": dev_name, "target": "memory", "batch_size": b, **_time(once, n, dev)})
        tick()
        for fmt, ext in (("parquet", ".parquet"), ("csv", ".csv")):
            if fmt not in targets:
                tick()
                continue
            with tempfile.TemporaryDirectory(prefix="fastmc-bench-") as tmp:
                path = Path(tmp) / f"bench{ext}"
                generate(m, path, min(b, n), prior=prior, process=pname, batch_size=b, seed=seed, device=dev_name)  # warm-up
                rep = generate(m, path, n, prior=prior, process=pname, batch_size=b, seed=seed, device=dev_name)
                size = path.stat().st_size
            rows.append({"device": dev_name, "target": fmt, "batch_size": b, "events": rep.n,
                         "seconds": rep.seconds, "events_per_s": rep.events_per_s,
                         "bytes_per_event": size / max(rep.n, 1)})
            tick()
    return rows


def _bench_refined(model_dir: str, prior: str, process: str, *, device: str, scale: float,
                   batch_size: int, seed: int) -> list[dict[str, Any]]:
    """A row per refine mode for ``fastmc generate`` with the model directory's refiner
    (:mod:`fastmc.workflows.refine`), to memory: whole events kept or dropped, and every event
    kept with the refiner's factor in its weight (``--refine-mode weights``, capped, and
    ``weights-uncapped``), and partial unweighting (``reject-uncapped``); the model on
    ``device``, the
    refiner's features on the CPU (torch's number of threads), its trees on ``device`` when
    that is a CUDA GPU, else on the CPU too; none without a refiner."""
    from fastmc.workflows.generate import REFINE_MODES, generate_events, refinement_metadata
    from fastmc.workflows.refine import load_refiner

    refiner = load_refiner(model_dir, prior=prior)
    if refiner is None:
        return []
    m = load_model(model_dir, device=device)
    rows = []
    for mode in REFINE_MODES:
        n = max(int((20_000 if mode.startswith("reject") else 60_000) * scale), batch_size)
        for k in (batch_size, n):  # a warm-up batch (a compiled sampler compiles here), then n
            stats: dict[str, Any] = {}
            t0 = time.perf_counter()
            for _ in generate_events(m, k, prior=prior, process=process, batch_size=batch_size,
                                     seed=seed, refiner=refiner, stats=stats, refine_mode=mode):
                pass
            dt = time.perf_counter() - t0
        meta = refinement_metadata(refiner, stats, mode) or {}
        target = (f"memory, refined ({100 * (meta['acceptance'] or 0):.0f}% of drawn kept"
                  f"{', above the cap weighted' if mode == 'reject-uncapped' else ''})"
                  if mode.startswith("reject") else
                  f"memory, refined as {'uncapped ' if mode == 'weights-uncapped' else ''}weights "
                  f"(effective share {meta['effective_share'] or 0:.2f})")
        rows.append({"device": device, "target": target, "batch_size": batch_size, "events": n,
                     "seconds": dt, "events_per_s": n / dt if dt > 0 else float("inf")})
    return rows


def run_bench(
    model: GenerativeModel | str | os.PathLike[str],
    *,
    prior: str = "normal",
    process: str | None = None,
    scale: float = 1.0,
    batch_sizes: tuple[int, ...] = BATCH_SIZES,
    targets: tuple[str, ...] = ("memory", "parquet", "csv"),
    device: str = "auto",
    simulate: bool = True,
    sim_process: str | None = None,
    sim_events: int = 200,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Measure generation (and simulation) events/s; returns a JSON-serialisable dict.

    ``device="auto"`` measures the CPU and, when present, the GPU; ``"cpu"``/``"cuda"`` one
    of them.  ``scale`` multiplies the events timed (300, 1e4 and 1e5 at batch sizes 1, 100
    and 1e4).  A model directory with a refiner (``fastmc refine``) gets two more rows per
    device: refined generation to memory (what ``fastmc generate`` does with it, rejecting
    and as weights; the refiner's features run on the CPU, its trees on the GPU row's GPU).  ``progress(1)``
    after each measurement.  Keys: ``machine``, ``model``,
    ``rows`` (device, target, batch_size, events, seconds, events_per_s), ``not_measured``
    (what could not be measured and why), ``simulation``, ``ratio``.
    """
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if device == "auto" else [device]
    not_measured: list[str] = []
    if "cuda" not in devices and not torch.cuda.is_available():
        not_measured.append("GPU: no CUDA device on this machine")
    model_dir = None if isinstance(model, GenerativeModel) else str(model)

    def tick() -> None:
        if progress is not None:
            progress(1)

    rows: list[dict[str, Any]] = []
    for dev_name in devices:
        m = load_model(model_dir, device=dev_name) if model_dir is not None else model.to(dev_name).eval()
        check_prior(m, prior)
        pname = m.processes[m.process_index(process)]
        rows += _bench_model(m, dev_name, pname, prior=prior, scale=scale, batch_sizes=batch_sizes,
                             targets=targets, seed=seed, not_measured=not_measured, tick=tick)
    for dev_name in devices if model_dir is not None else ():
        rows += _bench_refined(model_dir, prior, pname, device=dev_name, scale=scale,
                               batch_size=max(batch_sizes), seed=seed)
        tick()
    sim: dict[str, Any] | None = None
    ratio = None
    if simulate:
        # as many simulation processes as generation has threads: the same number of cores
        sim = time_simulation(sim_process or pname, sim_events, seed=seed, jobs=torch.get_num_threads())
        if "events_per_s" in sim:
            ref = [r for r in rows if r["device"] == "cpu" and r["target"] == "memory" and r["batch_size"] == max(batch_sizes)]
            if ref:
                ratio = ref[0]["events_per_s"] / sim["events_per_s"]
        else:
            not_measured.append(f"simulation: {sim['not_measured']}")
    else:
        not_measured.append("simulation: skipped (--no-simulate)")
    tick()
    return {
        "machine": _machine(),
        "model": {"dir": model_dir, "name": m.name, "prior": prior, "process": pname},
        "rows": rows,
        "simulation": sim,
        "ratio_generation_to_simulation": ratio,
        "not_measured": not_measured,
    }


def format_markdown(result: dict[str, Any]) -> str:
    """The benchmark result as a Markdown table plus notes."""
    mach = result["machine"]
    lines = [
        f"model {result['model']['name']} ({result['model']['dir']}), prior {result['model']['prior']}, "
        f"process {result['model']['process']}",
        f"machine: {mach['processor']}, {mach['cpu_count']} CPUs, torch threads {mach['torch_threads']}, "
        f"load average {mach.get('load_average_1min', float('nan')):.1f}"
        + (f", GPU {mach['gpu']}" if "gpu" in mach else ", no GPU"),
        "",
        "| device | target | batch size | events | seconds | events/s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['device']} | {r['target']} | {r['batch_size']:,} | {r['events']:,} | "
            f"{r['seconds']:.2f} | {r['events_per_s']:,.0f} |"
        )
    sim = result.get("simulation")
    if sim and "events_per_s" in sim:
        lines.append(
            f"| cpu | fastmc simulate ({sim['process']}, {sim.get('jobs', 1)} processes) | - | {sim['events']:,} | "
            f"{sim['seconds']:.2f} | {sim['events_per_s']:,.1f} |"
        )
    if result.get("ratio_generation_to_simulation") is not None:
        jobs = (sim or {}).get("jobs", 1)
        lines += ["", f"generation (memory, largest batch, CPU, {mach['torch_threads']} torch threads) / "
                  f"simulation ({jobs} processes: the same number of cores) = "
                  f"{result['ratio_generation_to_simulation']:,.0f}x"]
    for note in result.get("not_measured", []):
        lines.append(f"not measured: {note}")
    return "\n".join(lines)
