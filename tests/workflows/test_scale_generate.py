"""Sharded generation (issue 16): the parts of a run concatenated are the unsharded run."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.errors import ConfigError
from fastmc.io import read_events
from fastmc.workflows.generate import generate, parse_part, part_range
from fastmc.workflows.train_config import TrainConfig
from fastmc.workflows.train_store import train_from_store
from modelhelpers import TINY


@pytest.fixture(scope="module")
def model_dir(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale") / "model"
    cfg = TrainConfig(epochs=1, batch_size=64, batches_per_epoch=2, device="cpu", val_events=60)
    train_from_store(tiny_store, out, model_config=TINY, config=cfg)
    return out


def invoke(*args: str) -> str:
    res = CliRunner().invoke(app, list(args))
    assert res.exit_code == 0, res.output
    return res.output


def test_three_shards_are_the_unsharded_run_byte_for_byte(model_dir: Path, tmp_path: Path) -> None:
    common = ["-n", "50", "--block-size", "7", "--batch-size", "4", "--seed", "5", "--device", "cpu"]
    invoke("generate", str(model_dir), *common, "-o", str(tmp_path / "all.csv"))
    for k in range(3):
        invoke("generate", str(model_dir), *common, "--shard", f"{k}/3",
               "-o", str(tmp_path / f"part{k}.csv"))
    whole = (tmp_path / "all.csv").read_bytes()
    parts = [(tmp_path / f"part{k}.csv").read_bytes() for k in range(3)]
    assert all(parts) and b"".join(parts) == whole
    # 8 seed blocks of 7 events over 3 parts: blocks 0-1, 2-4, 5-7 -> 14, 21, 15 events
    assert [p.count(b"\n") for p in parts] == [14, 21, 15]
    # fastmc convert merges the parts (here into Parquet): the same events as one run
    invoke("convert", *(str(tmp_path / f"part{k}.csv") for k in range(3)),
           "-o", str(tmp_path / "merged.parquet"))
    merged, ref = read_events(tmp_path / "merged.parquet"), read_events(tmp_path / "all.csv")
    assert merged.equals(ref) and list(merged.event_id) == list(range(50))


def test_parquet_part_records_its_place(model_dir: Path, tmp_path: Path) -> None:
    rep = generate(model_dir, tmp_path / "p.parquet", 30, batch_size=8, seed=1, device="cpu",
                   shard_size=10, part=(1, 2))
    whole = generate(model_dir, tmp_path / "w.parquet", 30, batch_size=8, seed=1, device="cpu",
                     shard_size=10)
    assert rep.events == (10, 30) and rep.n == 20 and whole.n == 30
    part, ref = read_events(tmp_path / "p.parquet"), read_events(tmp_path / "w.parquet")
    assert part.equals(ref[10:])
    assert rep.weight == pytest.approx(whole.weight)  # the weight is that of the whole run


def test_part_arithmetic_and_errors(model_dir: Path, tmp_path: Path) -> None:
    assert parse_part("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="shard"):
            parse_part(bad)
    # every event in exactly one part, in order, whatever m (also m > blocks: empty parts)
    for n, size, m in [(50, 7, 3), (10, 10, 4), (1000, 64, 7), (0, 5, 2)]:
        ranges = [part_range(n, size, (k, m)) for k in range(m)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(start % size == 0 for start, _ in ranges)
    with pytest.raises(ConfigError, match="channel"):
        generate(model_dir, tmp_path / "x.csv", 10, device="cpu", channel="chan1", part=(0, 2))
