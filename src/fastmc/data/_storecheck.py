"""Checks of an event store on open: the structure of ``meta.json`` and every shard's size,
``.npy`` header and CRC-32 (see :mod:`fastmc.data.store`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from fastmc.data._layout import SPLITS, _array_specs, crc32_file, read_npy_header, shard_names
from fastmc.errors import CorruptStoreError

__all__ = ["check_meta", "check_shards"]

_FIX = "re-run `fastmc prepare` on the original files to rebuild the store"


def _fail(where: Path, field: str, expected: str, got: Any) -> CorruptStoreError:
    shown = repr(got)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return CorruptStoreError(f"{where}: field {field}: expected {expected}, got {shown}; {_FIX}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: Any) -> bool:
    return (_is_int(x) or isinstance(x, float)) and math.isfinite(x)


def check_meta(meta: Any, where: Path) -> None:
    """CorruptStoreError naming the first field of ``meta.json`` that is missing or wrong."""
    if not isinstance(meta, dict):
        raise _fail(where, "(top level)", "a JSON object", type(meta).__name__)

    def get(key: str) -> Any:
        if key not in meta:
            raise _fail(where, key, "present", "missing")
        return meta[key]

    if get("format") != "fastmc-event-store":
        raise _fail(where, "format", "'fastmc-event-store'", meta["format"])
    k = get("max_objects")
    if not _is_int(k) or k < 1:
        raise _fail(where, "max_objects", "a positive integer", k)
    procs = get("processes")
    if (
        not isinstance(procs, list)
        or not all(isinstance(p, str) and p for p in procs)
        or len(set(procs)) != len(procs)
    ):
        raise _fail(where, "processes", "a list of distinct process names", procs)
    if not _is_int(get("seed")):
        raise _fail(where, "seed", "an integer", meta["seed"])
    fr = get("fractions")
    if not isinstance(fr, dict) or not all(_is_num(fr.get(s)) for s in ("val", "test")):
        raise _fail(where, "fractions", "{'val': number, 'test': number}", fr)
    sources = get("sources")
    if not isinstance(sources, list) or not all(
        isinstance(s, dict)
        and isinstance(s.get("path"), str)
        and isinstance(s.get("name"), str)
        and _is_int(s.get("size"))
        and _is_int(s.get("mtime_ns"))
        and isinstance(s.get("sha256"), str)
        for s in sources
    ):
        raise _fail(where, "sources", "a list of {name, path, size, mtime_ns, sha256}", sources)
    want = set(procs)
    for key, ok, what in (
        ("counts", lambda v: _is_int(v) and v >= 0, "event counts >= 0"),
        ("weight_sum", _is_num, "finite numbers"),
    ):
        table = get(key)
        if not isinstance(table, dict) or set(table) != set(SPLITS):
            raise _fail(where, key, f"one entry per split {SPLITS}", table)
        for split in SPLITS:
            row = table[split]
            if not isinstance(row, dict) or set(row) != want:
                raise _fail(where, f"{key}.{split}", f"one entry per process {procs}", row)
            for proc, value in row.items():
                if not ok(value):
                    raise _fail(where, f"{key}.{split}.{proc}", what, value)
    xs = get("cross_section_weight")
    if not isinstance(xs, dict) or set(xs) != want or not all(_is_num(v) for v in xs.values()):
        raise _fail(where, "cross_section_weight", f"a number per process {procs}", xs)
    specs = {
        n: {"dtype": dt.str, "event_shape": list(shape)} for n, (dt, shape) in _array_specs(k).items()
    }
    if get("arrays") != specs:
        raise _fail(where, "arrays", f"the layout of K = {k}", meta["arrays"])
    files = get("files")
    names = shard_names(meta)
    if not isinstance(files, dict) or set(files) != set(names):
        raise _fail(where, "files", f"one entry per shard ({len(names)})", files)
    for name in names:
        rec = files[name]
        if not (
            isinstance(rec, dict) and _is_int(rec.get("size")) and isinstance(rec.get("crc32"), str)
        ):
            raise _fail(where, f"files.{name}", "{size, crc32}", rec)
    for key in ("skipped", "truncated"):
        if not _is_int(get(key)) or meta[key] < 0:
            raise _fail(where, key, "an integer >= 0", meta[key])


def check_shards(root: Path, meta: dict[str, Any], *, checksums: bool) -> None:
    """CorruptStoreError unless every shard exists with the recorded size, an ``.npy`` header
    of the right dtype and shape, and (``checksums=True``) the recorded CRC-32."""
    specs = _array_specs(int(meta["max_objects"]))
    for split in SPLITS:
        for idx, proc in enumerate(meta["processes"]):
            n = int(meta["counts"][split][proc])
            for name, (dtype, shape) in specs.items():
                rel = f"{split}/p{idx:03d}/{name}.npy"
                path = root / rel
                rec = meta["files"][rel]
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    raise CorruptStoreError(
                        f"{path}: shard missing from the event store; {_FIX}"
                    ) from None
                if size != rec["size"]:
                    raise CorruptStoreError(
                        f"{path}: {size} bytes, meta.json records {rec['size']}; the shard is "
                        f"truncated or was replaced: {_FIX}"
                    )
                _check_header(path, dtype, (n, *shape))
                if checksums and crc32_file(path) != rec["crc32"]:
                    raise CorruptStoreError(
                        f"{path}: CRC-32 {crc32_file(path)} differs from {rec['crc32']} in "
                        f"meta.json; the shard is damaged: {_FIX}"
                    )


def _check_header(path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
    try:
        got_shape, fortran, got_dtype, offset = read_npy_header(path)
    except (ValueError, OSError, SyntaxError) as exc:
        raise CorruptStoreError(f"{path}: not a readable .npy array ({exc}); {_FIX}") from None
    if fortran or got_dtype != dtype or tuple(got_shape) != shape:
        raise CorruptStoreError(
            f"{path}: holds {got_dtype} {tuple(got_shape)}, meta.json describes {dtype} {shape}; "
            f"{_FIX}"
        )
    expected = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.stat().st_size != expected:
        raise CorruptStoreError(
            f"{path}: {path.stat().st_size} bytes, a {dtype} {shape} array needs {expected}; {_FIX}"
        )
