"""Argument checks shared by the format readers (CSV, Parquet, ROOT)."""

from __future__ import annotations

__all__ = ["check_read_args"]


def check_read_args(chunk_size: int, on_error: str, max_objects: int | None = None) -> None:
    """ValueError for a chunk size below 1 event, an unknown ``on_error`` or ``max_objects < 1``."""
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1 event, got {chunk_size}")
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if max_objects is not None and int(max_objects) < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
