"""Thread limits for the evaluation's numerical kernels."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

__all__ = ["single_threaded"]


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """One BLAS/OpenMP thread: the matrices here are small, and on a shared CPU extra threads
    thrash (measured 4x slower for the classifier on 2 busy cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
        return
    with threadpool_limits(limits=1):
        yield
