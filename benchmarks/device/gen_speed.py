"""Generation events/s of one model directory, alone, refined by rejection and refined as
event weights (``refine_mode="weights"``), at several batch sizes and CPU thread counts
(issue 13): the model on ``--device``, the refiner's whole-event features on the CPU threads
and its trees on the model's device.  Prints a Markdown table and writes ``--json``.

    python benchmarks/device/gen_speed.py MODEL_DIR --device cuda --batch 10000,100000 \\
        --threads 2,16 --events 200000 --json speed.json

Each row: one warm-up call of one batch, then ``--events`` generated (kept, when refined)
events timed with ``perf_counter`` (CUDA synchronised by the batches' transfer to the CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

from fastmc.models.modeldir import load_model
from fastmc.workflows.generate import generate_events
from fastmc.workflows.refine import load_refiner


def _time(model, refiner, n: int, batch: int, mode: str) -> dict:
    stats: dict = {}
    for _ in generate_events(model, batch, batch_size=batch, seed=1, refiner=refiner, refine_mode=mode):
        pass  # warm-up (compiles a compiled sampler)
    t0 = time.perf_counter()
    got = 0
    for ev in generate_events(model, n, batch_size=batch, seed=0, refiner=refiner, refine_mode=mode,
                              stats=stats):
        got += len(ev)
    dt = time.perf_counter() - t0
    return {"events": got, "seconds": dt, "events_per_s": got / dt,
            "drawn": stats.get("attempted", got)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", default="10000,100000")
    ap.add_argument("--threads", default="2,16")
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    model = load_model(a.model_dir, device=a.device)
    refiner = load_refiner(a.model_dir)
    rows = []
    print("| device | refined | CPU threads | batch | events | drawn | seconds | events/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    modes = [("no", None, "reject")]
    if refiner is not None:
        modes += [("rejection", refiner, "reject"), ("weights", refiner, "weights")]
    for threads in map(int, a.threads.split(",")):
        torch.set_num_threads(threads)
        for batch in map(int, a.batch.split(",")):
            for label, ref, mode in modes:
                r = {"device": a.device, "refined": label, "threads": threads,
                     "batch": batch, **_time(model, ref, max(a.events, batch), batch, mode)}
                rows.append(r)
                print(f"| {a.device} | {label} | {threads} | {batch:,} | "
                      f"{r['events']:,} | {r['drawn']:,} | {r['seconds']:.2f} | "
                      f"{r['events_per_s']:,.0f} |", flush=True)
    machine = {"python": platform.python_version(), "torch": torch.__version__,
               "cpu_count": os.cpu_count(), "platform": platform.platform(),
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"machine": machine, "model": a.model_dir, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
