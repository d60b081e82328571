"""Sampling speed of matching-mode flows (``mode: matching``) vs ODE steps and precision (issue 13).

Usage::

    .venv/bin/python benchmarks/bench_flow_matching.py MODEL_DIR [MODEL_DIR ...] \\
        [--batch 10000] [--threads 1] [--steps 8,16] [--core-only]

For each model directory, number of ODE steps and precision (float32, bfloat16), it times one
``model.sample(batch)`` (pattern sampling, ODE, decoding, rejection and redraw; to memory) with
the wall clock and ``time.process_time`` (per CPU-second: meaningful on a shared machine), then
the bare ODE (``model.core_runner(batch)``: pre-drawn patterns and noise, no decoding, no
rejection).  ``--core-only`` times the bare ODE alone (an untrained model directory will do:
the speed does not depend on the weights).  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from fastmc.models.modeldir import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", default="8,16")
    ap.add_argument("--core-only", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b = args.batch
    print(f"torch threads: {args.threads}, batch {b}\n")
    print("| model | size | ODE | precision | events/s | per CPU-second | bare ODE events/s "
          "| bare ODE per CPU-second | rejected share |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in args.models:
        model = load_model(path)
        base = model.config
        if base.mode != "matching":
            raise SystemExit(f"{path}: mode {base.mode!r}, not matching (use bench_flow.py)")
        for steps in (int(s) for s in args.steps.split(",")):
            for prec in ("float32", "bfloat16"):
                model.config = dataclasses.replace(base, ode_steps=steps, sample_precision=prec)
                rate = cpu_rate = share = float("nan")
                if not args.core_only:
                    before = model.generation_stats()
                    t0, c0 = time.perf_counter(), time.process_time()
                    model.sample(b, generator=torch.Generator().manual_seed(0))
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    after = model.generation_stats()
                    share = (after["rejected"] - before["rejected"]) / (after["drawn"] - before["drawn"])
                    rate, cpu_rate = b / wall, b / cpu
                run = model.core_runner(b)
                t0, c0 = time.perf_counter(), time.process_time()
                run()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                print(f"| {path} | {base.cfm_dim} x {base.cfm_layers} | {steps} {base.ode_solver} "
                      f"| {prec} | {rate:,.0f} | {cpu_rate:,.0f} | {b / wall:,.0f} | {b / cpu:,.0f} "
                      f"| {share:.3f} |", flush=True)


if __name__ == "__main__":
    main()
