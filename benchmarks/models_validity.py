"""Issue 5 "done when": generate N events from every latent prior of trained VAEs, read them
back, and report the share of physically valid events (design.md section 4) per prior.

Usage (after `fastmc train` and `fastmc fit-prior ... --prior bgmm` / `--prior gmm`):

    .venv/bin/python benchmarks/models_validity.py STORE MODEL_DIR [MODEL_DIR ...] \
        [--n 100000] [--channel chan1] [--out-dir DIR] [--threads 1]

The truth prior encodes the store's held-out test events (cycled) and adds the model's noise.
Prints a Markdown table: model, prior, events read back, seconds, valid share and each check.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fastmc.data.store import open_store
from fastmc.evaluate.metrics import physicality
from fastmc.io import read_events, write_events
from fastmc.models import load_model
from fastmc.workflows.generate import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--channel", default="chan1")
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out_dir = Path(args.out_dir or tempfile.mkdtemp(prefix="fastmc-validity-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(args.store)
    truth = out_dir / "truth_test.parquet"
    test = store.events("test", 0)
    write_events(truth, test[: len(test)])
    ref = physicality(test, channel=args.channel)
    checks = ["known_types", "finite", "energy", "phi", "order", "selection"]
    print(f"reference (store test split, {len(test)} events): valid {ref['valid']:.4f}")
    print()
    print("| model | prior | events read back | gen. seconds | valid | " + " | ".join(checks) + " |")
    print("|---|---|---:|---:|---:|" + "---:|" * len(checks))
    for model_dir in args.models:
        model = load_model(model_dir)
        priors = ["normal"] + [k for k in ("bgmm", "gmm") if any(p[0] == k for p in model.priors)]
        priors.append("truth")
        for prior in priors:
            path = out_dir / f"{Path(model_dir).name}_{prior}.parquet"
            t0 = time.perf_counter()
            generate(model, path, args.n, prior=prior, seed=1, device="cpu",
                     truth_events=truth if prior == "truth" else None)
            dt = time.perf_counter() - t0
            ev = read_events(path)
            phys = physicality(ev, channel=args.channel)
            cells = " | ".join(f"{phys[c]:.4f}" for c in checks)
            print(f"| {model.name} | {prior} | {len(ev):,} | {dt:.1f} | {phys['valid']:.4f} | {cells} |",
                  flush=True)


if __name__ == "__main__":
    main()
