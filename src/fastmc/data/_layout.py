"""On-disk layout of an event store, shared by :mod:`fastmc.data.prepare` and
:mod:`fastmc.data.store` (see the latter for the description)."""

from __future__ import annotations

import hashlib
import os

import numpy as np

#: Bumped whenever the on-disk layout changes; stores of another version must be re-prepared.
SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}


def _array_specs(k: int) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
    """name -> (dtype, per-event shape) of the arrays stored per process and split."""
    return {
        "types": (np.dtype(np.int8), (k,)),
        "p4": (np.dtype(np.float32), (k, 4)),
        "met": (np.dtype(np.float32), ()),
        "met_phi": (np.dtype(np.float32), ()),
        "event_id": (np.dtype(np.int64), ()),
        "weight": (np.dtype(np.float64), ()),
    }


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in ``block``-byte pieces (memory bounded)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while data := f.read(block):
            h.update(data)
    return h.hexdigest()


def _process_seed(seed: int, process: str) -> list[int]:
    digest = hashlib.sha256(process.encode()).digest()
    return [int(seed), int.from_bytes(digest[:8], "little")]
