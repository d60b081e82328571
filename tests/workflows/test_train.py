"""Training: determinism, checkpoints and resume, NaN handling, YAML configs; generation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fastmc.data.batch import RawBatch
from fastmc.io import read_events, write_events
from fastmc.models import GenerativeModel, load_model, register_model
from fastmc.models.vae import BetaVAE, BetaVAEConfig
from fastmc.workflows.generate import generate, generate_events
from fastmc.workflows.train_config import TrainConfig, TrainingDivergedError, load_yaml_config
from fastmc.workflows.train_store import train_from_store
from modelhelpers import TINY, make_events

FAST = {"epochs": 2, "batch_size": 64, "batches_per_epoch": 3, "device": "cpu", "val_events": 60}


def run(store: Path, out: Path, name: str = "beta-vae", **kw) -> object:
    cfg = TrainConfig(**{**FAST, **kw})
    return train_from_store(store, out, model_name=name, model_config=TINY, config=cfg)


def weights(d: Path) -> dict[str, torch.Tensor]:
    return load_file(d / "weights.safetensors")


def test_same_seed_same_weights(tiny_store: Path, tmp_path: Path) -> None:
    a = run(tiny_store, tmp_path / "a", seed=3)
    run(tiny_store, tmp_path / "b", seed=3)
    run(tiny_store, tmp_path / "c", seed=4)
    wa, wb, wc = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    assert len(a.history) == 2 and a.best_epoch in (1, 2)
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(np.isfinite(h["val_loss"]) for h in hist)
    desc = json.loads((tmp_path / "a" / "config.json").read_text())
    assert desc["model"] == "beta-vae" and desc["train_config"]["seed"] == 3
    assert desc["data"]["sources"][0]["sha256"]
    assert desc["info"]["processes"]["ttbar"]["cross_section_weight"] == pytest.approx(6.0)


def test_resume_continues_exactly(tiny_store: Path, tmp_path: Path) -> None:
    run(tiny_store, tmp_path / "full", epochs=3, patience=0)
    run(tiny_store, tmp_path / "part", epochs=2, patience=0)
    cfg = TrainConfig(**{**FAST, "epochs": 3, "patience": 0})
    res = train_from_store(tiny_store, tmp_path / "part", config=cfg, resume=True)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]
    full = json.loads((tmp_path / "full" / "checkpoint.json").read_text())
    part = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    assert full["history"][-1]["val_loss"] == part["history"][-1]["val_loss"]
    a = load_file(tmp_path / "full" / "checkpoint.safetensors")
    b = load_file(tmp_path / "part" / "checkpoint.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


class _NaNAfter(BetaVAE):
    """A beta-VAE whose loss turns NaN on the 5th training batch (2nd epoch)."""

    name = "nan-vae-test"
    calls = 0

    def training_loss(self, raw, *, generator=None):
        loss, parts = super().training_loss(raw, generator=generator)
        if self.training:
            type(self).calls += 1
            if type(self).calls >= 5:
                loss = loss * float("nan")
        return loss, parts


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny_store: Path, tmp_path: Path) -> None:
    register_model("nan-vae-test", BetaVAEConfig, _NaNAfter)
    _NaNAfter.calls = 0
    with pytest.raises(TrainingDivergedError, match=r"nan at epoch 2, batch 2.*epoch 1"):
        run(tiny_store, tmp_path / "m", name="nan-vae-test", epochs=4)
    status = json.loads((tmp_path / "m" / "checkpoint.json").read_text())
    assert status["epoch"] == 1
    good = weights(tmp_path / "m")
    assert all(torch.isfinite(v).all() for v in good.values())


def test_early_stopping(tiny_store: Path, tmp_path: Path) -> None:
    res = run(tiny_store, tmp_path / "m", epochs=30, patience=1, lr=0.2)
    assert res.stopped == "early_stopping" and len(res.history) < 30


def test_train_config_validation_and_yaml(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="device"):
        TrainConfig(device="tpu")
    good = tmp_path / "c.yaml"
    good.write_text("model: alpha-vae\nmodel_config: {alpha: 0.3}\ntrain: {epochs: 2}\n")
    assert load_yaml_config(good)["model_config"] == {"alpha": 0.3}
    bad = tmp_path / "b.yaml"
    bad.write_text("modle: alpha-vae\n")
    with pytest.raises(ValueError, match="unknown key"):
        load_yaml_config(bad)


@pytest.fixture(scope="module")
def trained(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "model"
    torch.set_num_threads(1)
    run(tiny_store, out, epochs=1)
    return out


def test_generate_streams_deterministic_weighted(trained: Path, tmp_path: Path) -> None:
    model = load_model(trained)
    sizes = [len(b) for b in generate_events(model, 250, batch_size=100, seed=1)]
    assert sizes == [100, 100, 50]
    rep = generate(trained, tmp_path / "a.parquet", 250, batch_size=100, seed=1, device="cpu")
    generate(trained, tmp_path / "b.parquet", 250, batch_size=100, seed=1, device="cpu")
    generate(trained, tmp_path / "c.parquet", 250, batch_size=100, seed=2, device="cpu")
    a, b, c = (read_events(tmp_path / f"{x}.parquet") for x in "abc")
    assert len(a) == 250 and a.equals(b) and not a.equals(c)
    assert list(a.event_id) == list(range(250))
    np.testing.assert_allclose(a.weight, 6.0 / 250)  # sums to the training sample's sigma x L
    assert rep.weight == pytest.approx(6.0 / 250) and set(a.process) == {"ttbar"}
    # shards: a new generator every shard_size events, still deterministic
    s1 = [b.met for b in generate_events(model, 30, batch_size=8, seed=1, shard_size=10)]
    s2 = [b.met for b in generate_events(model, 30, batch_size=8, seed=1, shard_size=10)]
    assert [len(x) for x in s1] == [8, 2, 8, 2, 8, 2] and all(
        np.array_equal(x, y) for x, y in zip(s1, s2, strict=True)
    )


@dataclasses.dataclass(frozen=True, kw_only=True)
class _PoolConfig:
    size: int = 400


class _PoolModel(GenerativeModel):
    """Draws events from a fixed pool of synthetic events: exercises the generation loop."""

    name = "pool-test"

    def __init__(self, config, *, processes=("ttbar",)):
        super().__init__(config, processes=processes)
        self.pool = RawBatch.from_events(make_events(config.size, seed=11, process="ttbar"))

    def sample(self, n, *, condition=None, generator=None):
        idx = torch.randint(self.config.size, (n,), generator=generator)
        return RawBatch(**{f.name: getattr(self.pool, f.name)[idx] for f in dataclasses.fields(RawBatch)})


def test_generate_enforces_channel() -> None:
    from fastmc.events import Events
    from fastmc.selection import passes_channel

    register_model("pool-test", _PoolConfig, _PoolModel)
    model = _PoolModel(_PoolConfig())
    pool_share = passes_channel(model.pool.to_events(), "chan3").mean()
    assert 0.05 < pool_share < 0.95
    stats: dict = {}
    out = Events.concatenate(
        list(generate_events(model, 300, batch_size=100, seed=0, channel="chan3", stats=stats))
    )
    assert len(out) == 300 and passes_channel(out, "chan3").all()
    assert list(out.event_id) == list(range(300))
    rejected = 1 - stats["passed"] / stats["attempted"]
    assert rejected == pytest.approx(1 - pool_share, abs=0.1)
    assert stats["passed"] >= 300
    with pytest.raises(ValueError, match="pass chan2a"):
        list(generate_events(model, 10, batch_size=50, seed=0, channel="chan2a"))


def test_generate_truth_prior_and_errors(trained: Path, tmp_path: Path) -> None:
    truth = tmp_path / "truth.csv"
    write_events(truth, make_events(30, seed=9, process="ttbar"))
    rep = generate(trained, tmp_path / "t.csv", 70, prior="truth", truth_events=truth,
                   batch_size=20, device="cpu")
    assert rep.n == 70 and len(read_events(tmp_path / "t.csv")) == 70
    with pytest.raises(ValueError, match="truth"):
        generate(trained, tmp_path / "x.csv", 5, prior="truth", device="cpu")
    with pytest.raises(ValueError, match="unknown channel"):
        generate(trained, tmp_path / "x.csv", 5, channel="chan9", device="cpu")
    assert not (tmp_path / "x.csv").exists()
