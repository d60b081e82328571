"""Events/s to memory of a refined model: the flow alone, refinement as event weights, and
rejection (``fastmc.workflows.generate.generate_events``, batch 10,000, after a warm-up batch).

    OMP_NUM_THREADS=2 python benchmarks/bench_refine_modes.py MODEL_DIR --threads 2 [--tree-engine numpy]

Prints one line per mode and round (rejection times a third of the events: about three are
drawn per kept one).  ``--tree-engine``: the refiner's tree walker (default auto: ONNX Runtime
where installed).  docs/benchmarks.md, "Refinement as event weights" and "The refiner's trees
in ONNX Runtime".
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from fastmc.evaluate.trees import ENGINES
from fastmc.workflows.api import load_model
from fastmc.workflows.generate import generate_events
from fastmc.workflows.refine import load_refiner


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="model directory with a refiner (fastmc refine)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--events", type=int, default=100_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tree-engine", default="auto", choices=ENGINES)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model = load_model(a.model)
    refiner = dataclasses.replace(load_refiner(a.model, required=True), engine=a.tree_engine)

    def run(k: int, mode: str | None) -> None:
        for _ in generate_events(model, k, batch_size=10_000, seed=3, refiner=refiner if mode else None,
                                 refine_mode=mode or "reject"):
            pass

    for _ in range(a.rounds):
        for name, mode, k in (("alone", None, a.events), ("weights", "weights", a.events),
                              ("reject", "reject", a.events // 3)):
            run(10_000, mode)  # warm-up (compiles the sampler the first time)
            t = time.perf_counter()
            run(k, mode)
            dt = time.perf_counter() - t
            print(f"{name}: {k / dt:,.0f} events/s ({k:,} events, {dt:.2f} s, {a.threads} threads, "
                  f"{refiner.trees.n_trees} trees walked by {refiner.tree_engine})", flush=True)


if __name__ == "__main__":
    main()
