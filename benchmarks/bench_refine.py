"""Generation speed of a refined model (``fastmc refine``) and where its time goes.

Usage::

    .venv/bin/python benchmarks/bench_refine.py MODEL_DIR [--threads 1] [--events 60000]

Times, after a warm-up run (torch.compile of a fast-mode flow): drawing ``--events`` events
from the model without refinement (to memory), their whole-event features and the refiner's
trees on them (one thread each; the trees walked by numpy and, where installed, by ONNX
Runtime, the default), both together as generation runs them (split over
``--threads`` threads); the refined rate that the draw and that imply at the refiner's
expected kept share; and
``fastmc.workflows.generate.generate`` of 20,000 refined events to Parquet (end to end).
Prints events/s (wall clock) and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from fastmc.events import Events
from fastmc.models.modeldir import load_model
from fastmc.workflows.generate import generate, generate_events
from fastmc.workflows.refine import load_refiner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dir")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--events", type=int, default=60_000)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model_dir)
    refiner = load_refiner(args.model_dir, required=True)
    list(generate_events(model, 10_000, seed=5))  # warm-up
    n = args.events
    t0 = time.perf_counter()
    events = Events.concatenate(list(generate_events(model, n, seed=6)))
    t1 = time.perf_counter()
    x = refiner.features(events)
    t2 = time.perf_counter()
    refiner.trees.logit(x, engine="numpy")
    t3 = time.perf_counter()
    refiner.weights(events, threads=args.threads)  # what generation runs: both, on the threads
    t4 = time.perf_counter()
    walkers = {"numpy": t3 - t2}
    if refiner.tree_engine == "onnxruntime":
        refiner.trees.logit(x[:1000], engine="onnxruntime")  # the session is made once
        t = time.perf_counter()
        refiner.trees.logit(x, engine="onnxruntime")
        walkers["onnxruntime"] = time.perf_counter() - t
    kept = refiner.expected_acceptance
    print(f"model {args.model_dir}, {args.threads} torch thread(s), load {os.getloadavg()[0]:.2f}")
    print("| step | events/s |\n|---|---|")
    print(f"| draw (the model alone, to memory) | {n / (t1 - t0):,.0f} |")
    print(f"| whole-event features | {n / (t2 - t1):,.0f} |")
    for walker, dt in walkers.items():
        print(f"| refiner: {refiner.trees.n_trees} trees (depth {refiner.trees.depth}, mean "
              f"{refiner.trees.depths.mean():.1f}), {walker}, one thread | {n / dt:,.0f} |")
    print(f"| features + trees ({refiner.tree_engine}) on {args.threads} thread(s) | {n / (t4 - t3):,.0f} |")
    print(f"| refined, implied at {100 * kept:.1f}% kept | {kept * n / (t1 - t0 + t4 - t3):,.0f} |")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = generate(args.model_dir, Path(tmp) / "g.parquet", 20_000, seed=1)
        t1 = time.perf_counter()
    print(f"| `generate`, 20,000 refined events to Parquet ({100 * report.refinement['acceptance']:.1f}% "
          f"kept) | {20_000 / (t1 - t0):,.0f} |")


if __name__ == "__main__":
    main()
