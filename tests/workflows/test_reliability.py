"""Training and generation under failure (issue 15): resume that means resume, a conflicting
flag refused, interrupts at random points resume bit-identically, broken models stop with an
error, and every command-line failure is one line, exit 1, nothing written."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from clihelpers import run_bad, snapshot
from fastmc.cli import app
from fastmc.errors import ModelOutputError
from fastmc.models import register_model
from fastmc.models.modeldir import ModelDirError
from fastmc.models.vae import BetaVAE, BetaVAEConfig
from fastmc.workflows.resume import ResumeConflictError
from fastmc.workflows.train_config import TrainConfig
from fastmc.workflows.train_store import train_from_store
from modelhelpers import TINY

FAST = {"epochs": 3, "batch_size": 64, "batches_per_epoch": 3, "device": "cpu", "val_events": 60,
        "patience": 0}
TINY_FLAGS = ["--latent-dim", "4", "--batch-size", "64", "--batches-per-epoch", "3",
              "--device", "cpu", "--patience", "0"]


class Interrupt(Exception):
    pass


def train(store: Path, out: Path, *, resume: bool = False, stop_after: int | None = None,
          **kw):
    """Train (or resume); ``stop_after`` interrupts after that many training batches."""
    seen = [0]

    def progress(_: int) -> None:
        seen[0] += 1
        if stop_after is not None and seen[0] >= stop_after:
            raise Interrupt

    cfg = kw if resume else {**FAST, **kw}
    return train_from_store(store, out, model_config=None if resume else TINY, config=cfg,
                            resume=resume, progress=progress)


def checkpoint(d: Path) -> dict[str, torch.Tensor]:
    return load_file(d / "checkpoint.safetensors")


def test_interrupts_at_random_points_resume_bit_identical(tiny_store: Path, tmp_path: Path) -> None:
    """Interrupt training at random batches (seeded), resume each time: the final weights and
    Adam state equal those of an uninterrupted run, bit for bit."""
    train(tiny_store, tmp_path / "full")
    rng = np.random.default_rng(15)
    out = tmp_path / "cut"
    stops = sorted(rng.choice(np.arange(1, 3 * 3), size=3, replace=False).tolist())
    done = 0
    resume = False
    for stop in stops:
        with pytest.raises(Interrupt):
            train(tiny_store, out, resume=resume, stop_after=stop - done)
        resume = (out / "checkpoint.safetensors").exists()
        done = 3 * json.loads((out / "checkpoint.json").read_text())["epoch"] if resume else 0
    res = train(tiny_store, out, resume=resume) if resume else train(tiny_store, out)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    a, b = checkpoint(tmp_path / "full"), checkpoint(out)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_keeps_the_stored_epoch_limit(tiny_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "m"
    with pytest.raises(Interrupt):
        train(tiny_store, out, epochs=3, stop_after=4)  # killed in epoch 2
    res = train(tiny_store, out, resume=True)  # no --epochs: the stored 3, not the default 50
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    desc = json.loads((out / "config.json").read_text())
    assert desc["train_config"]["epochs"] == 3
    res = train(tiny_store, out, resume=True, epochs=4)  # an explicit raise is allowed
    assert [h["epoch"] for h in res.history] == [1, 2, 3, 4]
    assert json.loads((out / "config.json").read_text())["train_config"]["epochs"] == 4
    with pytest.raises(ResumeConflictError, match="below the 4 epochs already run"):
        train(tiny_store, out, resume=True, epochs=2)


@pytest.mark.parametrize(
    ("flag", "value", "stored"),
    [("--lr", "0.01", "lr = 0.001"), ("--seed", "5", "seed = 0"), ("--beta", "0.5", "beta = 0.001"),
     ("--latent-dim", "8", "latent_dim = 4"), ("--model", "alpha-vae", "model = beta-vae")],
)
def test_conflicting_flag_on_resume_refused(tiny_store: Path, tmp_path: Path, flag: str,
                                            value: str, stored: str) -> None:
    out = tmp_path / "m"
    with pytest.raises(Interrupt):
        train(tiny_store, out, stop_after=4)
    before = {k: v for k, v in snapshot(out).items()}
    line = run_bad(["train", tiny_store, "-o", out, "--resume", flag, value], tmp_path)
    assert f"{flag} {value} conflicts with the stored run ({stored})" in line
    assert snapshot(out) == before
    # the same value as stored is no conflict; the run continues to its stored limit
    res = CliRunner().invoke(app, ["train", str(tiny_store), "-o", str(out), "--resume",
                                   "--seed", "0"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "checkpoint.json").read_text())["epoch"] == 3


def test_resume_without_checkpoint(tiny_store: Path, tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    run_bad(["train", tiny_store, "-o", tmp_path / "m", "--resume"], tmp_path, contains="missing")


def test_beta_nan_refused(tiny_store: Path, tmp_path: Path) -> None:
    run_bad(["train", tiny_store, "-o", tmp_path / "m", "--beta", "nan", *TINY_FLAGS], tmp_path,
            contains="beta must be")


class _NaNFirst(BetaVAE):
    """A beta-VAE whose training loss is NaN from the first batch."""

    name = "nan-first-test"

    def training_loss(self, raw, *, generator=None):
        loss, parts = super().training_loss(raw, generator=generator)
        return loss * float("nan"), parts


def test_failed_train_leaves_no_config(tiny_store: Path, tmp_path: Path) -> None:
    register_model("nan-first-test", BetaVAEConfig, _NaNFirst)
    line = run_bad(["train", tiny_store, "-o", tmp_path / "m", "--model", "nan-first-test",
                    *TINY_FLAGS], tmp_path, contains="training loss became nan at epoch 1")
    assert "no checkpoint was written" in line
    assert not (tmp_path / "m").exists()


def test_model_dir_output_is_a_file(tiny_store: Path, tmp_path: Path) -> None:
    (tmp_path / "m").write_text("x")
    run_bad(["train", tiny_store, "-o", tmp_path / "m", *TINY_FLAGS], tmp_path, contains="is a file")


# ---------------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def model_dir(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rel_model") / "m"
    train_from_store(tiny_store, out, model_config=TINY, config={**FAST, "epochs": 1})
    return out


@pytest.fixture
def broken(model_dir: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_model_files_follow_umask(tiny_store: Path, tmp_path: Path, mask: int) -> None:
    import os
    import stat

    old = os.umask(mask)
    try:
        train_from_store(tiny_store, tmp_path / "m", model_config=TINY,
                         config={**FAST, "epochs": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m").stat().st_mode) == 0o777 & ~mask
    for f in (tmp_path / "m").iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f.name


def test_generate_nan_weights(broken: Path, tmp_path: Path) -> None:
    tensors = load_file(broken / "weights.safetensors")
    key = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[key] = tensors[key].clone().fill_(float("nan"))
    save_file(tensors, broken / "weights.safetensors")
    line = run_bad(["generate", broken, "-n", "50", "-o", tmp_path / "g.parquet", "--device",
                    "cpu"], tmp_path, contains="non-finite")
    assert "weights.safetensors" in line


def test_generate_non_finite_output(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model whose decoder yields NaN (finite weights): generation stops, says so."""
    from fastmc.models import load_model
    from fastmc.workflows.generate import generate_events

    model = load_model(model_dir)
    real = type(model).sample

    def sample(self, *a, **kw):
        raw = real(self, *a, **kw)
        raw.met = raw.met * float("nan")
        return raw

    monkeypatch.setattr(type(model), "sample", sample)
    with pytest.raises(ModelOutputError, match="invalid values in 50 of 50 events"):
        list(generate_events(model, 50, batch_size=50))


@pytest.mark.parametrize("damage", ["file", "config-list", "config-missing-key", "weights-bytes"])
def test_generate_damaged_model_dir(broken: Path, tmp_path: Path, damage: str) -> None:
    import shutil

    if damage == "file":
        shutil.rmtree(broken)
        broken.write_text("not a model")
    elif damage == "config-list":
        (broken / "config.json").write_text("[]")
    elif damage == "config-missing-key":
        desc = json.loads((broken / "config.json").read_text())
        del desc["processes"]
        (broken / "config.json").write_text(json.dumps(desc))
    else:
        data = bytearray((broken / "weights.safetensors").read_bytes())
        (broken / "weights.safetensors").write_bytes(bytes(data[:20]) + b"\xff" * 30)
    run_bad(["generate", broken, "-n", "10", "-o", tmp_path / "g.csv", "--device", "cpu"],
            tmp_path, contains=str(broken))
    with pytest.raises(ModelDirError):
        from fastmc.models import load_model

        load_model(broken)


def test_generate_existing_output_needs_overwrite(model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.csv"
    out.write_text("precious")
    run_bad(["generate", model_dir, "-n", "10", "-o", out, "--device", "cpu"], tmp_path,
            contains="pass --overwrite")
    res = CliRunner().invoke(app, ["generate", str(model_dir), "-n", "10", "-o", str(out),
                                   "--device", "cpu", "--overwrite"])
    assert res.exit_code == 0 and out.read_text() != "precious"


def test_train_config_rejects_nan() -> None:
    for bad in ({"lr": float("nan")}, {"min_delta": float("nan")}):
        with pytest.raises(ValueError):
            TrainConfig(**bad)


@pytest.mark.slow
def test_sigkill_at_random_points_resume_bit_identical(tiny_store: Path, tmp_path: Path) -> None:
    """``fastmc train`` killed with SIGKILL at random moments (seeded delays after a
    checkpoint appears), resumed each time: the final checkpoint equals an uninterrupted
    run's, bit for bit."""
    import os
    import signal
    import subprocess
    import time

    flags = ["--latent-dim", "4", "--batch-size", "64", "--batches-per-epoch", "20",
             "--device", "cpu", "--patience", "0", "--epochs", "8", "--threads", "1"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def cmd(out: Path, *extra: str) -> list[str]:
        return [sys.executable, "-c", "from fastmc.cli import main; main()", "train",
                str(tiny_store), "-o", str(out), *flags, *extra]

    subprocess.run(cmd(tmp_path / "full"), check=True, env=env, capture_output=True)
    rng = np.random.default_rng(42)
    out = tmp_path / "killed"
    kills = 0
    for _attempt in range(12):
        resume = ["--resume"] if (out / "checkpoint.safetensors").exists() else []
        proc = subprocess.Popen(cmd(out, *resume), env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        if kills < 3:
            start = (out / "checkpoint.json").stat().st_mtime if (out / "checkpoint.json").exists() else 0
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                ck = out / "checkpoint.json"
                if ck.exists() and ck.stat().st_mtime > start:
                    break
                time.sleep(0.02)
            time.sleep(float(rng.uniform(0.0, 0.4)))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=300)
        if proc.returncode == 0:
            break
    assert kills >= 1
    status = json.loads((out / "checkpoint.json").read_text())
    assert status["epoch"] == 8 and [h["epoch"] for h in status["history"]] == list(range(1, 9))
    a, b = checkpoint(tmp_path / "full"), checkpoint(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
