"""Tests of the study runner (fastmc study / fastmc demo orchestration)."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.workflows.demo import demo_config
from fastmc.workflows.study import StudyConfig, expand_runs, load_study_config, summary_markdown

TINY_VAE = {"latent_dim": 4, "branch_widths": [16], "trunk_widths": [16], "decoder_widths": [16],
            "head_width": 16}


def test_grid_expansion_labels_and_configs():
    cfg = StudyConfig(
        processes=({"name": "p", "files": ["x.csv"]},),
        models=(
            {"model": "beta-vae", "grid": {"beta": [0, 0.01]}, "config": {"latent_dim": 8}},
            {"model": "alpha-vae", "grid": {"alpha": [0.2]}},
            {"model": "flow", "label": "flow-coupling", "config": {"mode": "coupling"},
             "train": {"lr_schedule": "cosine"}},
        ),
    )
    runs = expand_runs(cfg)
    assert [r.label for r in runs] == [
        "beta-vae_beta=0", "beta-vae_beta=0.01", "alpha-vae_alpha=0.2", "flow-coupling"]
    assert runs[1].config == {"latent_dim": 8, "beta": 0.01}
    assert runs[3].config == {"mode": "coupling"}
    assert runs[3].train == {"lr_schedule": "cosine"} and runs[0].train == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"processes": ()}, "at least one entry under 'processes'"),
        ({"processes": ({"name": "a"},)}, "exactly one of 'simulate' or 'files'"),
        ({"models": ({"grid": {}},)}, "needs 'model'"),
        ({"train": {"epochs": 0}}, "epochs must be a positive integer"),
        ({"models": ({"model": "flow", "train": {"lr_schedule": "step"}},)}, "lr_schedule"),
        ({"models": ({"model": "flow", "train": [1]},)}, "'train' must be a mapping"),
    ],
)
def test_config_validation(kwargs, message):
    base = {"processes": ({"name": "a", "files": ["x"]},), "models": ({"model": "beta-vae"},)}
    with pytest.raises(ValueError, match=message):
        StudyConfig(**{**base, **kwargs})


def test_shipped_configs_load_and_reproduce_the_theses_grid():
    from importlib.resources import files

    theses = load_study_config(files("fastmc") / "configs" / "theses_study.yaml")
    betas = next(m for m in theses.models if m["model"] == "beta-vae")["grid"]["beta"]
    alphas = next(m for m in theses.models if m["model"] == "alpha-vae")["grid"]["alpha"]
    comps = next(p for p in theses.priors if p["kind"] == "gmm")["components"]
    assert betas == [0, 0.001, 0.01, 0.1, 0.2, 0.5, 0.7, 1]
    assert alphas == [0.1, 0.2, 0.3] and comps == [10, 20, 50, 100]
    assert {p["name"] for p in theses.processes} == {"ttbar", "stop_02"}
    assert theses.processes[0]["simulate"]["events"] >= 100_000
    assert len(expand_runs(load_study_config(files("fastmc") / "configs" / "reduced_study.yaml"))) == 8


def test_demo_config_is_valid():
    cfg = demo_config(events=5000, jobs=1)
    runs = expand_runs(cfg)
    assert [r.label for r in runs] == ["beta-vae_beta=0.001", "alpha-vae_alpha=0.2", "flow-coupling"]
    assert runs[2].train == {"lr_schedule": "cosine", "epochs": 15} and runs[0].train == {}
    with pytest.raises(ValueError, match="at least 1000"):
        demo_config(events=10)


def test_unknown_yaml_key_is_reported(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("processes: []\nmodelz: []\n")
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 1
    assert "unknown keys ['modelz']" in " ".join(result.output.split())


def test_tiny_study_end_to_end(tmp_path, data_dir):
    """A whole study on a real file: prepare, train, fit a prior, generate, evaluate, rank."""
    cfg = {
        "name": "tiny",
        "output": str(tmp_path / "out"),
        "processes": [{"name": "sqsq", "files": [str(data_dir / "sqsq1_sq1400_neut800_chan1.csv")]}],
        "split": {"val": 0.2, "test": 0.3, "seed": 0},
        "train": {"epochs": 1, "batch_size": 128, "batches_per_epoch": 3, "val_events": 500,
                  "device": "cpu"},
        "models": [{"model": "beta-vae", "config": TINY_VAE}],
        "priors": [{"kind": "normal"}, {"kind": "gmm", "components": [2]}],
        "generate": {"events": 600, "batch_size": 300},
        "evaluate": {"plots": False, "repeats": 3},
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg))
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    study = json.loads((out / "study.json").read_text())
    labels = {r["label"] for r in study["rows"]}
    assert labels == {"beta-vae / normal", "beta-vae / gmm2", "MC (val split)"}
    assert (out / "report" / "index.html").exists()
    rows = {r["label"]: r for r in study["rows"]}
    # an untrained tiny VAE is easy to tell apart; an independent MC sample is not
    assert rows["beta-vae / normal"]["auc"] > rows["MC (val split)"]["auc"]
    assert rows["MC (val split)"]["auc"] < 0.6
    assert "| sqsq |" in (out / "summary.md").read_text()
    # a second run reuses every stage (no retraining: the model files stay untouched)
    weights = out / "models" / "sqsq" / "beta-vae" / "weights.safetensors"
    mtime = weights.stat().st_mtime_ns
    result = CliRunner().invoke(app, ["study", str(path)])
    assert result.exit_code == 0, result.output
    assert weights.stat().st_mtime_ns == mtime


def test_summary_markdown_handles_missing_numbers():
    row = {"process": "p", "rank": 1, "label": "x", "auc": float("nan"), "auc_err": None,
           "auc_floor": 0.5, "w1_ratio_median": 1.0, "w1_ratio_max": 2.0, "w1_worst": "met",
           "fpd": 0.1, "fpd_floor": 0.01, "physicality": 1.0, "events_per_s": None}
    md = summary_markdown([row])
    assert "| p | 1 | x | - ± - (0.500) | 1.00 | 2.00 (met) |" in md
