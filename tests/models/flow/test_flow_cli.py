"""`fastmc train --model flow` and `fastmc generate` end to end on a tiny store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fastmc.cli import app

pytest.importorskip("zuko")


@pytest.mark.parametrize("mode", ["autoregressive", "coupling"])
def test_train_and_generate_flow(tiny_store: Path, tmp_path: Path, mode: str) -> None:
    from fastmc.io import read_events

    cfg = tmp_path / "flow.yaml"
    cfg.write_text("model_config: {hidden: 16, transforms: 1, bins: 4, max_jets: 6}\n")
    model_dir = tmp_path / "model"
    runner = CliRunner()
    res = runner.invoke(
        app,
        ["train", str(tiny_store), "-o", str(model_dir), "--config", str(cfg), "--model", "flow",
         "--flow-mode", mode, "--epochs", "2",
         "--batch-size", "64", "--batches-per-epoch", "2", "--seed", "1"],
    )
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["train", str(tiny_store), "-o", str(model_dir), "--resume", "--epochs", "3"])
    assert res.exit_code == 0, res.output
    history = json.loads((model_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    desc = json.loads((model_dir / "config.json").read_text())
    assert desc["model"] == "flow" and desc["model_config"]["mode"] == mode
    out = tmp_path / "gen.parquet"
    res = runner.invoke(app, ["generate", str(model_dir), "-n", "120", "-o", str(out), "--seed", "2"])
    assert res.exit_code == 0, res.output
    ev = read_events(out)
    assert len(ev) == 120
    assert (ev.p4[..., 0] >= ev.p4[..., 1] * np.cosh(ev.p4[..., 2]))[ev.types > 0].all()
    if mode == "coupling":  # latent options are refused with one clear line
        res = runner.invoke(app, ["fit-prior", str(model_dir), "--prior", "gmm"])
        assert res.exit_code == 1 and "no latent prior to fit" in res.output
        res = runner.invoke(app, ["generate", str(model_dir), "-n", "5", "-o",
                                  str(tmp_path / "gmm.parquet"), "--prior", "gmm"])
        assert res.exit_code == 1 and "standard-normal base only" in res.output


def test_flow_mode_flag_is_for_flows_only(tiny_store: Path, tmp_path: Path) -> None:
    res = CliRunner().invoke(
        app, ["train", str(tiny_store), "-o", str(tmp_path / "m"), "--flow-mode", "coupling"]
    )
    assert res.exit_code == 1
    assert "--flow-mode does not apply" in res.output


def test_the_shipped_large_sample_config_trains(tiny_store: Path, tmp_path: Path) -> None:
    """src/fastmc/configs/flow_large.yaml (docs/results.md, session 8) is a valid training
    file: its model and train settings reach the model directory (epochs etc. overridden)."""
    from importlib.resources import files

    cfg = files("fastmc") / "configs" / "flow_large.yaml"
    model_dir = tmp_path / "model"
    res = CliRunner().invoke(
        app,
        ["train", str(tiny_store), "-o", str(model_dir), "--config", str(cfg), "--epochs", "1",
         "--batch-size", "64", "--batches-per-epoch", "1", "--set", "max_jets=6", "--seed", "1"],
    )
    assert res.exit_code == 0, res.output
    desc = json.loads((model_dir / "config.json").read_text())
    mc = desc["model_config"]
    assert desc["model"] == "flow" and mc["mode"] == "coupling"
    assert (mc["transforms"], mc["linear_mixing"], mc["muon_isolation_quantile"]) == (6, True, 0.01)
    assert (mc["sample_precision"], mc["sample_compile"]) == ("bfloat16", True)
    train = desc["train_config"]
    assert train["lr_schedule"] == "cosine" and train["epochs"] == 1 and train["patience"] == 0
