"""On-disk layout of an event store (described in :mod:`fastmc.data.store`): constants shared
by :mod:`fastmc.data.prepare` and :mod:`fastmc.data.store`, and :class:`NpyReader`, the
row-range reader of ``.npy`` files that :mod:`fastmc.data.loader` streams from."""

from __future__ import annotations

import hashlib
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.config import derive_seed

#: Bumped whenever the on-disk layout changes; stores of another version must be re-prepared.
#: Version 2 added ``files`` (every shard's size and CRC-32) to ``meta.json``.
SCHEMA_VERSION = 2
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


def crc32_file(path: str | os.PathLike[str], block: int = 1 << 22) -> str:
    """CRC-32 of a file as 8 hex digits (zlib, ~2 GB/s: cheap enough to check on every open)."""
    crc = 0
    with open(path, "rb") as f:
        while data := f.read(block):
            crc = zlib.crc32(data, crc)
    return f"{crc:08x}"


def shard_names(meta: dict[str, Any]) -> list[str]:
    """Relative paths of every ``.npy`` shard a store with this metadata holds."""
    specs = _array_specs(int(meta["max_objects"]))
    return [
        f"{split}/p{idx:03d}/{name}.npy"
        for split in SPLITS
        for idx in range(len(meta["processes"]))
        for name in specs
    ]


def file_record(path: Path) -> dict[str, Any]:
    """What ``meta["files"]`` stores of one shard: size in bytes and CRC-32."""
    return {"size": path.stat().st_size, "crc32": crc32_file(path)}


def _process_seed(seed: int, process: str) -> int:
    """Seed of the train/val/test split of ``process`` (:func:`fastmc.config.derive_seed`)."""
    return derive_seed(seed, "split", process)


def read_npy_header(path: Path) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """The header of ``.npy`` file ``path``: (shape, fortran_order, dtype, data offset in bytes).

    Raises ValueError, OSError or SyntaxError (numpy's) on a file that is not a ``.npy`` array.
    """
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = read_header(f)
        return tuple(shape), bool(fortran), dtype, f.tell()


class NpyReader:
    """Reads contiguous row ranges of a ``.npy`` file into caller buffers with ``preadv``."""

    def __init__(self, path: Path) -> None:
        self.fd = -1
        shape, fortran, dtype, self.offset = read_npy_header(path)
        if fortran:
            raise ValueError(f"{path}: Fortran-ordered arrays are not supported")
        self.path, self.shape, self.dtype = path, shape, dtype
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        """Copy rows [start, stop) into ``out`` (a C-contiguous array of stop-start rows)."""
        nbytes = (stop - start) * self.row_bytes
        if nbytes == 0:
            return
        view = memoryview(out).cast("B")
        got = os.preadv(self.fd, [view], self.offset + start * self.row_bytes)
        while got < nbytes:  # short reads are allowed by POSIX
            more = os.preadv(self.fd, [view[got:]], self.offset + start * self.row_bytes + got)
            if more <= 0:
                raise OSError(f"{self.path}: unexpected end of file")
            got += more

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __del__(self) -> None:
        self.close()
