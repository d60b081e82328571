"""Benchmark of ``fastmc evaluate`` on 100k reference vs 100k generated events.

No 100k-event sample exists in the repository, so both samples are *resampled* real events:
events of a Dark Machines file drawn with replacement, each object's E and pT (and MET)
multiplied by one factor 1 + 0.02 N(0, 1) per event (so E >= pT cosh(eta) still holds), and
written to Parquet.  The reference and the "generated" sample use different seeds.  The
command then times the full CLI (reading, floors, classifier, plots, HTML).

    .venv/bin/python benchmarks/bench_evaluate.py [--events 100000] [--file PATH] [--no-plots]

With ``--reference REF --generated GEN`` the two given files are timed instead (e.g. a
100k-event ``fastmc simulate ttbar`` sample against a copy with a planted defect).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILE = ROOT.parent / "shared" / "data" / "darkmachines" / "glgl1400_neutralino1100_chan1.csv"


def resampled(events, n: int, seed: int):
    rng = np.random.default_rng(seed)
    ev = events[rng.integers(0, len(events), n)]
    f = (1 + 0.02 * rng.standard_normal(n)).astype(np.float32)
    p4 = ev.p4.copy()
    p4[..., 0] *= f[:, None]
    p4[..., 1] *= f[:, None]
    return dataclasses.replace(ev, p4=p4, met=ev.met * f, event_id=np.arange(n))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--file", type=Path, default=DEFAULT_FILE)
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--reference", type=Path, help="time these files instead of resampled events")
    ap.add_argument("--generated", type=Path)
    args = ap.parse_args()
    from fastmc.io import read_events, write_events

    base = read_events(args.file) if not args.reference else None
    with tempfile.TemporaryDirectory() as tmp:
        ref, gen = Path(tmp) / "ref.parquet", Path(tmp) / "gen.parquet"
        if args.reference and args.generated:
            ref, gen = args.reference, args.generated
        else:
            write_events(ref, resampled(base, args.events, 1))
            write_events(gen, resampled(base, args.events, 2))
        cmd = [str(Path(sys.executable).parent / "fastmc"), "evaluate", "-r", str(ref), "-g", str(gen),
               "-l", "resampled", "-o", str(Path(tmp) / "report")]
        if args.no_plots:
            cmd.append("--no-plots")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - t0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = ru.ru_utime + ru.ru_stime
        peak_mib = ru.ru_maxrss / 1024
        size = (Path(tmp) / "report" / "index.html").stat().st_size
    what = f"{args.reference.name} vs {args.generated.name}" if args.reference else f"resampled {args.file.name}"
    sizes = "" if args.reference else f"{args.events} vs {args.events} events "
    print(f"fastmc evaluate, {sizes}({what}): "
          f"{wall:.1f} s wall, {cpu:.1f} s CPU, peak RSS {peak_mib:.0f} MiB; index.html {size / 1e6:.1f} MB; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
