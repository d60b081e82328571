"""Parallel prepare (issue 16): a process pool over the files gives the same store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastmc.data.store import prepare
from fastmc.io import write_events
from modelhelpers import make_events


def test_two_workers_make_the_same_store_byte_for_byte(tmp_path: Path) -> None:
    files = []
    # two processes, one of them spread over two files, plus a malformed line skipped
    for i, (proc, n) in enumerate([("ttbar", 50), ("wjets", 40), ("ttbar", 30)]):
        files.append(tmp_path / f"in{i}.csv")
        write_events(files[-1], make_events(n, seed=i, process=proc))
    with open(files[1], "a") as f:
        f.write("1;wjets;1;2;0.1;j,1,2,3\n")  # a field short: skipped
    one = prepare(files, tmp_path / "one", seed=3, workers=1, chunk_size=16, on_error="skip")
    two = prepare(files, tmp_path / "two", seed=3, workers=2, chunk_size=16, on_error="skip")
    arrays = sorted(p.relative_to(one) for p in one.rglob("*.npy"))
    assert arrays and arrays == sorted(p.relative_to(two) for p in two.rglob("*.npy"))
    assert all((one / a).read_bytes() == (two / a).read_bytes() for a in arrays)
    m1, m2 = (json.loads((d / "meta.json").read_text()) for d in (one, two))
    m1.pop("created"), m2.pop("created")
    assert m1 == m2 and m1["skipped"] == 1 and m1["counts"]["train"]["ttbar"] == 64
    with pytest.raises(ValueError, match="workers"):
        prepare(files, tmp_path / "bad", workers=0)
