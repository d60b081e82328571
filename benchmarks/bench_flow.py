"""Generation speed of trained structure-first flows vs batch size (issue 8).

Usage::

    .venv/bin/python benchmarks/bench_flow.py MODEL_DIR [MODEL_DIR ...] \
        [--batch-sizes 1,10,100,1000,10000] [--threads 1] [--min-seconds 2]

For each model directory and batch size, it times ``model.sample(batch)`` (pattern sampling,
flow inverse, decoding to GeV four-vectors, rejection and redraw of events with jets closer
than the jet radius; to memory) repeatedly for at least
``--min-seconds`` and prints events/s as a markdown table, plus the share of time spent in
the flow inverse and in decoding at the largest batch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time

import torch

from fastmc.models.modeldir import load_model


def _time(fn, min_seconds: float) -> tuple[float, int]:
    fn()  # warm-up
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed, calls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--batch-sizes", default="1,10,100,1000,10000")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--min-seconds", type=float, default=2.0)
    ap.add_argument("--precision", choices=("float32", "bfloat16"), default=None,
                    help="override the model's sample_precision")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.batch_sizes.split(",")]
    print(f"torch threads: {args.threads}\n")
    print("| model | mode | precision | D | batch | events/s | rejected share |")
    print("|---|---|---|---|---|---|---|")
    for path in args.models:
        model = load_model(path)
        if args.precision:
            model.config = dataclasses.replace(model.config, sample_precision=args.precision)
        mode, dim, prec = model.config.mode, model.layout.dim, model.config.sample_precision
        gen = torch.Generator().manual_seed(0)
        for b in sizes:
            before = model.generation_stats()
            elapsed, calls = _time(
                lambda m=model, b=b, g=gen: m.sample(b, generator=g), args.min_seconds
            )
            after = model.generation_stats()
            share = (after["rejected"] - before["rejected"]) / max(after["drawn"] - before["drawn"], 1)
            print(f"| {path} | {mode} | {prec} | {dim} | {b} | {calls * b / elapsed:,.0f} | {share:.3f} |",
                  flush=True)
        # split of the time at the largest batch: flow inverse vs the rest
        b = sizes[-1]
        with torch.no_grad():
            idx = model.patterns.sample(b, generator=gen)
            st = model._slot_types(idx)
            ctx = model.context(st, idx)
            z = torch.randn(b, dim, generator=gen)
            t0 = time.perf_counter()
            x = model._inverse(ctx, z) * model.x_std + model.x_mean
            t1 = time.perf_counter()
            phi = math.pi - 2 * math.pi * torch.rand(b, generator=gen, dtype=torch.float64)
            model.parameterisation.decode(x, st, phi, max_objects=model.config.max_objects)
            t2 = time.perf_counter()
        print(f"|   split at batch {b}: flow inverse {t1 - t0:.3f} s, decode {t2 - t1:.3f} s | | | | | | |")


if __name__ == "__main__":
    main()
