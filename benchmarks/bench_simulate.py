"""Benchmark of the simulation chain (issue 3): events/s per core, --jobs 2, detector vs generator.

Usage::

    .venv/bin/python benchmarks/bench_simulate.py [--events 1000] [--processes ttbar z_jets njets]

Prints a Markdown table.  Rates are given per wall-clock second and per CPU second (the CPU
time of this process and of its finished children), because the machine may be shared.
"""

from __future__ import annotations

import argparse
import platform
import resource
import time

import numpy as np


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def full_chain(process: str, n: int, jobs: int, seed: int = 1) -> dict[str, float]:
    """Time simulate() end to end (stored events, no file writing)."""
    from fastmc.simulate import simulate

    t0, c0 = time.perf_counter(), _cpu()
    stored = gen = 0
    for batch in simulate(process, n, seed=seed, jobs=jobs):
        stored += len(batch)
        gen = batch.meta["n_generated"]
    wall, cpu = time.perf_counter() - t0, _cpu() - c0
    return {"stored": stored, "generated": gen, "wall": wall, "cpu": cpu}


def split(process: str, n: int, batch: int = 200, seed: int = 1) -> dict[str, float]:
    """CPU time per generated event of Pythia (nextBatch) and of the detector response."""
    from fastmc.simulate.detector import detector_response
    from fastmc.simulate.processes import get_process
    from fastmc.simulate.pythia import PythiaGenerator

    proc = get_process(process)
    gen = PythiaGenerator(proc, proc.resolve_params(), seed=seed)
    rng = np.random.default_rng(seed)
    t_gen = t_det = 0.0
    done = 0
    while done < n:
        t = time.process_time()
        events = gen.next_batch(batch)
        t_gen += time.process_time() - t
        t = time.process_time()
        detector_response(events, rng)
        t_det += time.process_time() - t
        done += batch
    return {"gen_ms": 1e3 * t_gen / done, "det_ms": 1e3 * t_det / done, "n": done}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1000)
    ap.add_argument("--processes", nargs="+", default=["ttbar", "z_jets", "njets"])
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}")
    print()
    print("| process | jobs | stored | generated | wall s | CPU s | stored ev/s (wall) "
          "| generated ev/s per CPU s |")
    print("|---|---|---|---|---|---|---|---|")
    runs = [(p, 1) for p in args.processes] + [(args.processes[0], 2)]
    for process, jobs in runs:
        r = full_chain(process, args.events, jobs)
        print(
            f"| {process} | {jobs} | {r['stored']} | {r['generated']} | {r['wall']:.1f} | "
            f"{r['cpu']:.1f} | {r['stored'] / r['wall']:.1f} | {r['generated'] / r['cpu']:.1f} |",
            flush=True,
        )
    print()
    print("| process | Pythia ms/event (CPU) | detector ms/event (CPU) | detector / Pythia |")
    print("|---|---|---|---|")
    for process in args.processes:
        s = split(process, min(args.events, 1000))
        print(
            f"| {process} | {s['gen_ms']:.2f} | {s['det_ms']:.2f} | "
            f"{s['det_ms'] / s['gen_ms']:.1%} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
