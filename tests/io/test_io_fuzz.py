"""Fuzz: mutated real lines are either read or rejected with EventFormatError, never anything
else, and the vectorised fast path never accepts what the exact slow path rejects; damaged
Parquet and ROOT files are either read exactly or rejected with EventFormatError."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fastmc.errors import EventFormatError
from fastmc.io import read_events
from fastmc.io._dmparse import parse_fast, parse_slow

ALPHABET = [*b"0123456789.,;-+eEjbgmx \t\r", 0x00, 0x7F, 0xFF, 0xC3, ord("\n")]
PARSED_FIELDS = ("event_id", "proc_code", "proc_names", "header", "nobj", "obj_type", "obj_val")


def mutate(line: bytes, rng: np.random.Generator) -> bytes:
    b = bytearray(line)
    for _ in range(int(rng.integers(1, 4))):
        if not b:
            break
        i = int(rng.integers(len(b)))
        op = int(rng.integers(3))
        if op == 0:
            del b[i]
        elif op == 1:
            b.insert(i, b[i])
        else:
            b[i] = int(rng.choice(ALPHABET))
    return bytes(b)


def check_block(block: bytes) -> bool:
    """Parse with both paths; True if the slow path accepted the block."""
    try:
        slow = parse_slow(block, path="fuzz.csv")
    except EventFormatError as exc:
        assert exc.line is not None and exc.field
        assert parse_fast(block) is None, block
        return False
    fast = parse_fast(block)
    if fast is not None:
        for name in PARSED_FIELDS:
            a, b = getattr(fast, name), getattr(slow, name)
            assert (a == b) if isinstance(a, list) else np.array_equal(a, b), (name, block)
    return True


def test_fuzz_mutated_lines(real_files: list[Path], tmp_path: Path) -> None:
    """Differential: the fast and exact parsers agree on 20,000 mutated real lines (seeded)."""
    rng = np.random.default_rng(2024)
    lines = [ln for p in real_files for ln in p.read_bytes().splitlines()]
    picks = rng.choice(len(lines), size=20_000, replace=True)
    accepted = rejected = 0
    mutated_lines = []
    for i in picks:
        mutated = mutate(lines[i], rng)
        mutated_lines.append(mutated)
        if check_block(mutated + b"\n"):
            accepted += 1
        else:
            rejected += 1
    assert accepted > 1000 and rejected > 5000  # the fuzzer exercises both outcomes
    # a mutated line among good ones: the block is handled consistently too
    for k in range(0, 300):
        good = [lines[j] for j in rng.choice(len(lines), size=5)]
        good[2] = mutated_lines[k]
        check_block(b"\n".join(good) + b"\n")
    # the whole thing as one file, skipping: nothing but counting
    path = tmp_path / "fuzz.csv"
    path.write_bytes(b"\n".join(mutated_lines) + b"\n")
    report: dict = {}
    events = read_events(path, on_error="skip", report=report, chunk_size=500)
    n_lines = sum(1 for ln in b"\n".join(mutated_lines).split(b"\n") if ln.rstrip(b"\r"))
    assert len(events) + report["skipped"] == n_lines


def test_type_followed_by_nul() -> None:
    """Both parsers refuse ``j\\0`` as a type (the fast path once read it as a jet)."""
    line = b"1;ttbar;1;216178;1.5014;j\x00,1.2587e+06,274658,2.20315,-1.19237;\n"
    assert parse_fast(line) is None
    assert not check_block(line)


def _fuzz_binary(path: Path, events, rng: np.random.Generator, trials: int) -> dict[str, int]:
    from fastmc.io import write_events

    write_events(path, events)
    data = path.read_bytes()
    outcome = {"same": 0, "error": 0}
    for t in range(trials):
        b = bytearray(data)
        if t % 3 == 0:
            b = b[: int(rng.integers(len(b)))]
        else:
            for _ in range(int(rng.integers(1, 8))):
                b[int(rng.integers(len(b)))] = int(rng.integers(256))
        path.write_bytes(bytes(b))
        try:
            got = read_events(path)
        except EventFormatError as exc:
            assert exc.path == str(path)
            outcome["error"] += 1
        else:  # a byte that no reader looks at: the events must be exactly those written
            assert got.equals(events), t
            outcome["same"] += 1
    return outcome


def test_fuzz_parquet_reader(real_files: list[Path], tmp_path: Path) -> None:
    """Truncated or byte-flipped Parquet: EventFormatError or the exact events, never silently
    changed events (page checksums) and never another exception."""
    events = read_events(real_files[0])[:300]
    out = _fuzz_binary(tmp_path / "f.parquet", events, np.random.default_rng(7), 200)
    assert out["error"] > 150


def test_fuzz_root_reader(real_files: list[Path], tmp_path: Path) -> None:
    events = read_events(real_files[0])[:300]
    out = _fuzz_binary(tmp_path / "f.root", events, np.random.default_rng(8), 200)
    assert out["error"] > 100
