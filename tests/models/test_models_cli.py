"""``fastmc train``, ``fit-prior``, ``generate`` and ``bench`` end to end on a tiny store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.io import read_events
from modelhelpers import TINY

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cli_model(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("cli")
    cfg = root / "tiny.yaml"
    cfg.write_text(
        "model_config:\n"
        + "".join(f"  {k}: {list(v) if isinstance(v, tuple) else v}\n" for k, v in TINY.items())
        + "train: {batch_size: 64, val_events: 60}\n"
    )
    out = root / "alpha"
    res = invoke("train", tiny_store, "-o", out, "--model", "alpha-vae", "--alpha", "0.3",
                 "--epochs", "2", "--batches-per-epoch", "2", "--device", "cpu", "--config", cfg)
    assert res.exit_code == 0, res.output
    return out


def test_train_writes_model_dir(cli_model: Path) -> None:
    desc = json.loads((cli_model / "config.json").read_text())
    assert desc["model"] == "alpha-vae" and desc["model_config"]["alpha"] == 0.3
    assert desc["model_config"]["latent_dim"] == TINY["latent_dim"]
    assert desc["train_config"]["epochs"] == 2 and desc["train_config"]["batch_size"] == 64
    for name in ("weights.safetensors", "history.json", "checkpoint.json"):
        assert (cli_model / name).exists()


def test_train_errors(tiny_store: Path, cli_model: Path, tmp_path: Path) -> None:
    res = invoke("train", tiny_store, "-o", tmp_path / "m", "--model", "alpha-vae", "--beta", "0.1")
    assert res.exit_code == 1 and "--beta does not apply" in res.output
    res = invoke("train", tiny_store, "-o", cli_model, "--model", "alpha-vae")
    assert res.exit_code == 1 and "--resume" in res.output
    res = invoke("train", tmp_path / "nostore", "-o", tmp_path / "m")
    assert res.exit_code == 1 and "fastmc prepare" in res.output


def test_fit_prior_generate_and_read_back(cli_model: Path, tmp_path: Path) -> None:
    res = invoke("fit-prior", cli_model, "--prior", "gmm", "--components", "3", "--max-iter", "1")
    assert res.exit_code == 0 and "did not converge" in res.output, res.output
    res = invoke("fit-prior", cli_model, "--prior", "gmm", "--components", "3")
    assert res.exit_code == 0 and "did not converge" not in res.output, res.output
    assert (cli_model / "prior.safetensors").exists()
    for prior, ext in (("gmm", "parquet"), ("normal", "csv")):
        out = tmp_path / f"gen_{prior}.{ext}"
        res = invoke("generate", cli_model, "-n", "120", "-o", out, "--prior", prior,
                     "--batch-size", "50", "--seed", "4", "--device", "cpu")
        assert res.exit_code == 0, res.output
        ev = read_events(out)
        assert len(ev) == 120 and set(ev.process) == {"ttbar"}
    res = invoke("generate", cli_model, "-n", "5", "-o", tmp_path / "x.csv", "--prior", "truth")
    assert res.exit_code == 1 and "--truth-events" in res.output
    res = invoke("generate", cli_model, "-n", "5", "-o", tmp_path / "x.csv", "--prior", "bgmm")
    assert res.exit_code == 1 and "fit-prior" in res.output


def test_bench_runs(cli_model: Path, tmp_path: Path) -> None:
    res = invoke("bench", cli_model, "--scale", "0.001", "--no-simulate", "--device", "cpu",
                 "--json")
    assert res.exit_code == 0, res.output
    result = json.loads(res.stdout)  # stdout holds exactly the JSON; diagnostics on stderr
    targets = {(r["target"], r["batch_size"]) for r in result["rows"]}
    assert {("memory", 1), ("parquet", 100), ("csv", 10_000), ("bare network", 10_000)} <= targets
    assert all(r["events_per_s"] > 0 for r in result["rows"])
    assert any("simulation" in s for s in result["not_measured"])


def test_real_file_train_generate_read_back(data_dir: Path, tmp_path: Path) -> None:
    """The real sqsq1 file: prepare, train a tiny VAE, generate to CSV (MeV), read back."""
    from fastmc.data.store import prepare
    from fastmc.evaluate.metrics import physicality

    store = tmp_path / "store"
    prepare(data_dir / "sqsq1_sq1400_neut800_chan1.csv", store, val=0.1, test=0.1, seed=0)
    model = tmp_path / "beta"
    res = invoke("train", store, "-o", model, "--model", "beta-vae", "--epochs", "1",
                 "--batch-size", "256", "--batches-per-epoch", "3", "--latent-dim", "8",
                 "--device", "cpu", "--threads", "1")
    assert res.exit_code == 0, res.output
    out = tmp_path / "gen.csv"
    res = invoke("generate", model, "-n", "500", "-o", out, "--device", "cpu", "--threads", "1")
    assert res.exit_code == 0, res.output
    ev = read_events(out)
    assert len(ev) == 500 and set(ev.process) == {"sqsq1_sq1400_neut800"}
    # the total weight equals the source file's (sigma x 10/fb), up to CSV rounding
    assert ev.weight.sum() == pytest.approx(0.0011333, rel=1e-3)
    phys = physicality(ev)
    assert phys["known_types"] == phys["phi"] == phys["order"] == 1.0


def test_train_set_is_typed_by_the_model_config(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "beta"
    sets = [f"--set={k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
            for k, v in TINY.items() if k != "latent_dim"]
    res = invoke("train", tiny_store, "-o", out, "--model", "beta-vae", *sets, "--set",
                 "latent_dim=3", "--set", "beta=0.5", "--set", "train.min_delta=0.25",
                 "--set", "train.val_events=60", "--epochs", "1", "--batches-per-epoch", "1",
                 "--batch-size", "64", "--device", "cpu")
    assert res.exit_code == 0, res.output
    desc = json.loads((out / "config.json").read_text())
    assert desc["model_config"]["latent_dim"] == 3 and desc["model_config"]["beta"] == 0.5
    assert desc["model_config"]["decoder_widths"] == list(TINY["decoder_widths"])
    assert desc["train_config"]["min_delta"] == 0.25
    res = invoke("train", tiny_store, "-o", tmp_path / "x", "--set", "nope=1")
    assert res.exit_code == 1 and "unknown BetaVAEConfig setting 'nope'" in res.output
    res = invoke("train", tiny_store, "-o", tmp_path / "x", "--set", "latent_dim=many")
    assert res.exit_code == 1 and "latent_dim must be an integer" in res.output
    res = invoke("train", tiny_store, "-o", tmp_path / "x", "--set", "latent_dim")
    assert res.exit_code == 1 and "key=value" in res.output
    assert not (tmp_path / "x").exists()
