"""How many CPU threads torch uses: one rule for the CLI and the Python API.

The rule (measured in ``docs/benchmarks.md``, section "Threads"): **one thread per process**
unless the user asks for more with ``--threads N`` / ``threads=N``, or has set
``OMP_NUM_THREADS``.  On the shared 2-core test machine a two-epoch training took 15-31 s with
one thread and 107 s with both cores (the other jobs' load makes OpenMP threads wait for each
other), and the small matrices of these models gain little from more threads even on a quiet
machine.  A fixed default also keeps seeded results the same on machines with different core
counts: torch's reductions add in an order that depends on the thread count, so the same
seed gives the same weights and events only at the same thread count (and the same torch
build and CPU family).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = ["DEFAULT_THREADS", "resolve_threads", "torch_threads"]

#: torch threads when neither ``--threads`` nor ``OMP_NUM_THREADS`` says otherwise.
DEFAULT_THREADS = 1


def resolve_threads(requested: int | None = None) -> tuple[int, str]:
    """(threads, where the number comes from) by the rule of the module docstring.

    ``requested`` (``--threads``) wins; then a positive integer ``OMP_NUM_THREADS``; else
    :data:`DEFAULT_THREADS`.  ValueError for ``requested < 1``.
    """
    if requested is not None:
        if isinstance(requested, bool) or int(requested) != requested or requested < 1:
            raise ValueError(f"threads must be an integer >= 1, got {requested!r}")
        return int(requested), "--threads"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) >= 1:
        return int(env), "OMP_NUM_THREADS"
    return DEFAULT_THREADS, "default: one per process; --threads N for more"


@contextlib.contextmanager
def torch_threads(requested: int | None = None) -> Iterator[int]:
    """Run the block with torch's intra-op threads set by :func:`resolve_threads`, then
    restore the previous number.  Yields the number used."""
    import torch

    n, _ = resolve_threads(requested)
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield n
    finally:
        torch.set_num_threads(before)
