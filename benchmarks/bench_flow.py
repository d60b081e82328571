"""Generation speed of trained structure-first flows vs batch size (issue 8).

Usage::

    .venv/bin/python benchmarks/bench_flow.py MODEL_DIR [MODEL_DIR ...] \
        [--batch-sizes 1,10,100,1000,10000] [--threads 1] [--min-seconds 2] \
        [--precision float32|bfloat16] [--compile] [--repeat 1]

For each model directory and batch size, it times ``model.sample(batch)`` (pattern sampling,
flow inverse, decoding to GeV four-vectors, rejection and redraw of events with jets closer
than the jet radius; to memory) repeatedly for at least
``--min-seconds`` and prints events/s (wall clock) and events per CPU-second of this process
(``time.process_time``, all its threads) with the 1-minute load average, as a markdown table,
plus the split of the time at the largest batch (flow inverse, decoding).  ``--compile`` sets
``sample_compile`` (torch.compile of the spline inverse; its compilation is timed separately
and not counted in the rates).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time

import torch

from fastmc.models.flow.inverse import single_threaded
from fastmc.models.modeldir import load_model


def _time(fn, min_seconds: float) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, calls) of at least ``min_seconds`` of calls after a warm-up."""
    fn()  # warm-up
    calls, start, cpu = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed, time.process_time() - cpu, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch-sizes", default="1,10,100,1000,10000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--precision", choices=("float32", "bfloat16"), default=None,
                    help="override the model's sample_precision")
    ap.add_argument("--compile", action="store_true", help="sample_compile: torch.compile the spline inverse")
    ap.add_argument("--repeat", type=int, default=1, help="time every batch size this many times")
    ap.add_argument("--ode-steps", type=int, default=None,
                    help="override the model's ode_steps (mode: matching)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    print(f"torch threads: {args.threads}, cores: {os.cpu_count()}\n")
    print("| model | mode | precision | compile | batch | events/s | events per CPU-s | load 1 min | rejected share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in args.models:
        model = load_model(path)
        changes = {"sample_compile": True} if args.compile else {}
        if args.precision:
            changes["sample_precision"] = args.precision
        if args.ode_steps:
            changes["ode_steps"] = args.ode_steps
        model.config = dataclasses.replace(model.config, **changes)
        mode, dim, prec = model.config.mode, model.layout.dim, model.config.sample_precision
        if mode == "matching":
            mode = f"matching ({model.config.ode_steps} {model.config.ode_solver} steps)"
        compiled = model.config.sample_compile
        gen = torch.Generator().manual_seed(0)
        if compiled:
            t0, c0 = time.perf_counter(), time.process_time()
            model.sample(model.config.sample_chunk, generator=gen)
            print(f"(compilation and first chunk: {time.perf_counter() - t0:.1f} s wall, "
                  f"{time.process_time() - c0:.1f} s CPU)\n")
        for b in sizes:
            for _ in range(args.repeat):
                before = model.generation_stats()
                elapsed, cpu, calls = _time(
                    lambda m=model, b=b, g=gen: m.sample(b, generator=g), args.min_seconds
                )
                after = model.generation_stats()
                share = (after["rejected"] - before["rejected"]) / max(after["drawn"] - before["drawn"], 1)
                print(f"| {path} | {mode} | {prec} | {compiled} | {b} | {calls * b / elapsed:,.0f} | "
                      f"{calls * b / cpu:,.0f} | {os.getloadavg()[0]:.1f} | {share:.3f} |", flush=True)
        # split of the time at the largest batch: flow inverse vs the rest
        b = sizes[-1]
        with torch.no_grad():
            idx = model.patterns.sample(b, generator=gen)
            st = model._slot_types(idx)
            ctx = model.context(st, idx)
            z = torch.randn(b, dim, generator=gen)
            t0 = time.perf_counter()
            x = model._kinematics(ctx, z, st) * model.x_std + model.x_mean
            t1 = time.perf_counter()
            phi = math.pi - 2 * math.pi * torch.rand(b, generator=gen, dtype=torch.float64)
            sign = None
            if model.config.canonical_eta_sign:  # the orientation, drawn as in sample
                sign = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0).double()
            with single_threaded():  # as in sample (there: piece by piece on the worker threads)
                model.parameterisation.decode(x, st, phi, max_objects=model.config.max_objects, eta_sign=sign)
            t2 = time.perf_counter()
        print(f"|   split at batch {b}: flow inverse (matching: ODE) {t1 - t0:.3f} s, decode "
              f"{t2 - t1:.3f} s | | | | | | |")


if __name__ == "__main__":
    main()
