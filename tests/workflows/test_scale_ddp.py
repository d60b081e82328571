"""Distributed training (issue 16): 2 processes with gloo via `fastmc train --nproc 2`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from fastmc.errors import ConfigError
from fastmc.workflows.distributed import DistContext, launch_command, local_batch
from fastmc.workflows.train_config import TrainConfig
from fastmc.workflows.train_store import train_from_store
from modelhelpers import TINY


def test_two_gloo_processes_train_and_resume_on_one(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    sets = [a for k, v in TINY.items()
            for a in ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")]
    cmd = [sys.executable, "-m", "fastmc", "train", str(tiny_store), "-o", str(out),
           "--nproc", "2", "--epochs", "2", "--batch-size", "64", "--batches-per-epoch", "3",
           "--device", "cpu", "--patience", "0", "--set", "train.val_events=60", *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    hist = json.loads((out / "history.json").read_text())
    # 2 ranks x 32 events per step: 3 steps of 64 events per epoch, as one process would
    assert [(h["epoch"], h["ranks"], h["events"]) for h in hist] == [(1, 2, 192), (2, 2, 192)]
    assert all(h["train_loss"] == h["train_loss"] for h in hist)  # finite, not NaN
    assert (res.stdout + res.stderr).count("epoch   2 ") == 1  # rank 0 alone reports
    w2 = load_file(out / "weights.safetensors")
    # resume the 2-rank checkpoint in one process
    cfg = TrainConfig(epochs=3, batch_size=64, batches_per_epoch=3, device="cpu", patience=0,
                      val_events=60)
    result = train_from_store(tiny_store, out, config=cfg, resume=True)
    assert [(h["epoch"], h["ranks"]) for h in result.history] == [(1, 2), (2, 2), (3, 1)]
    w3 = load_file(out / "weights.safetensors")
    assert set(w2) == set(w3) and any(not w2[k].equal(w3[k]) for k in w2)


def test_batch_split_and_launch_command() -> None:
    sizes = [local_batch(10, DistContext(rank=r, world_size=3)) for r in range(3)]
    assert sizes == [3, 3, 4] and local_batch(7) == 7
    with pytest.raises(ConfigError, match="split over 4 ranks"):
        local_batch(3, DistContext(rank=0, world_size=4))
    cmd = launch_command(2, ["train", "s", "-o", "m"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                       "-m", "fastmc", "train", "s", "-o", "m"]
    with pytest.raises(ConfigError, match="nproc"):
        launch_command(0, [])
