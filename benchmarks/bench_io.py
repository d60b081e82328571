"""I/O throughput of fastmc: read and write events/s for Dark Machines CSV, Parquet and ROOT.

Builds a CSV of at least ``--events`` events by concatenating the real Dark Machines files
(``../shared/data/darkmachines``, real_small.csv excluded), then times, in this one process
(single thread):

- CSV read   : ``fastmc.io.darkmachines.iter_read`` into Events (chunk_size 100k)
- CSV write  : ``fastmc.io.darkmachines.Writer`` (checks the output is byte-identical)
- the same for .csv.gz, Parquet and ROOT

Each figure is the best of ``--repeat`` runs, as wall-clock and as CPU-time rate (the CPU
rate is the fairer per-core figure on a shared machine).  Prints a markdown table.

    .venv/bin/python benchmarks/bench_io.py --events 250000 --repeat 3
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "darkmachines"


def build_csv(path: Path, n_min: int) -> int:
    files = sorted(p for p in DATA.glob("*.csv") if p.name != "real_small.csv")
    data = b"".join(p.read_bytes() for p in files)
    lines = data.count(b"\n")
    reps = -(-n_min // lines)
    path.write_bytes(data * reps)
    return lines * reps


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """Best wall time and best CPU time of ``repeat`` calls (seconds)."""
    walls, cpus = [], []
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus)


_RSS_SCRIPT = """
import sys
from fastmc.io import darkmachines
def hwm():  # peak RSS of this process in kB (VmHWM starts afresh at exec, ru_maxrss does not)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = hwm()
n = sum(len(c) for c in darkmachines.iter_read(sys.argv[1], chunk_size=int(sys.argv[2])))
print(n, base, hwm())
"""


def peak_rss_mb(path: Path, chunk_size: int) -> float:
    """Growth of the peak RSS (MB) of a fresh process streaming ``path`` in chunks."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path), str(chunk_size)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return (int(out[2]) - int(out[1])) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=250_000, help="at least this many events")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure (best kept)")
    parser.add_argument("--formats", default="csv,csv.gz,parquet,root")
    args = parser.parse_args()

    from fastmc.events import Events
    from fastmc.io import darkmachines, open_writer
    from fastmc.io import parquet as pq_io
    from fastmc.io import root as root_io

    readers = {"csv": darkmachines, "csv.gz": darkmachines, "parquet": pq_io, "root": root_io}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.csv"
        n = build_csv(src, args.events)
        size_mb = src.stat().st_size / 1e6
        events = Events.concatenate(list(darkmachines.iter_read(src, chunk_size=100_000)))
        for fmt in args.formats.split(","):
            out = Path(tmp) / f"out.{fmt}"

            def write(out: Path = out) -> None:
                with open_writer(out) as writer:
                    for start in range(0, len(events), 100_000):
                        writer.write(events[start : start + 100_000])

            def read(out: Path = out, fmt: str = fmt) -> None:
                count = sum(len(c) for c in readers[fmt].iter_read(out, chunk_size=100_000))
                assert count == n

            w_wall, w_cpu = timed(write, args.repeat)
            if fmt == "csv":
                assert out.read_bytes() == src.read_bytes(), "CSV output is not byte-identical"
            r_wall, r_cpu = timed(read, args.repeat)
            mb = out.stat().st_size / 1e6
            rows.append((fmt, n / r_wall, n / r_cpu, n / w_wall, n / w_cpu, mb))
        rss = {c: peak_rss_mb(src, c) for c in (10_000, 100_000)}
    print(f"events: {n:,} ({size_mb:.1f} MB of CSV); machine: {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print()
    print("| format | read ev/s (wall) | read ev/s (CPU) | write ev/s (wall) | write ev/s (CPU) | file MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for fmt, rw, rc, ww, wc, mb in rows:
        print(f"| {fmt} | {rw:,.0f} | {rc:,.0f} | {ww:,.0f} | {wc:,.0f} | {mb:.1f} |")
    print()
    for chunk, mb in rss.items():
        print(f"streaming the {size_mb:.0f} MB CSV with chunk_size={chunk:,}: "
              f"peak RSS grows by {mb:.0f} MB")


if __name__ == "__main__":
    main()
