"""Learning-rate schedule and weight averaging: known answers, and in training (resume exact)."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fastmc.errors import ConfigError
from fastmc.workflows.resume import resume_settings, schedule_note
from fastmc.workflows.schedule import WeightAverage, learning_rate
from fastmc.workflows.train_config import TrainConfig
from fastmc.workflows.train_store import train_from_store
from modelhelpers import TINY

FAST = {"epochs": 3, "batch_size": 64, "batches_per_epoch": 3, "device": "cpu",
        "val_events": 60, "patience": 0}


def lr_at(epoch: int, step: int, **kw) -> float:
    args = {"lr": 1e-3, "schedule": "cosine", "epochs": 4, "batches_per_epoch": 10, **kw}
    return learning_rate(epoch=epoch, step=step, **args)


def test_cosine_known_answers() -> None:
    assert lr_at(1, 1) == pytest.approx(1e-3)                    # first batch: lr
    assert lr_at(3, 1) == pytest.approx(0.5e-3)                  # half way: the mean
    assert lr_at(2, 1) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi / 4)))
    assert lr_at(4, 10) == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 39 / 40)))
    assert lr_at(4, 99) == lr_at(4, 11)                          # extra batches hold the rate
    assert lr_at(9, 1) == pytest.approx(0.0)                     # past the horizon: lr_min
    assert lr_at(9, 1, lr_min=1e-5) == pytest.approx(1e-5)
    rates = [lr_at(e, s) for e in range(1, 5) for s in range(1, 11)]
    assert all(a > b for a, b in itertools.pairwise(rates))
    assert learning_rate(lr=2e-3, schedule="constant", epoch=7, step=3, epochs=4,
                         batches_per_epoch=10) == 2e-3
    with pytest.raises(ConfigError, match="schedule"):
        lr_at(1, 1, schedule="linear")
    with pytest.raises(ValueError, match="lr_min"):
        TrainConfig(lr_schedule="cosine", lr=1e-3, lr_min=1e-3)
    with pytest.raises(ValueError, match="ema"):
        TrainConfig(ema=1.0)


def test_weight_average_known_answer_and_swap() -> None:
    lin = torch.nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.fill_(0.0)
        lin.bias.fill_(0.0)
    avg = WeightAverage(lin, decay=0.5)
    with torch.no_grad():
        lin.weight.fill_(4.0)
    avg.update(lin)  # d = min(0.5, 2/11): 0 + (1 - 2/11) * 4
    assert avg.average_["weight"][0, 0].item() == pytest.approx(4 * 9 / 11)
    for _ in range(20):
        avg.update(lin)
    assert avg.average_["weight"][0, 0].item() == pytest.approx(4.0, rel=1e-5)
    with torch.no_grad():
        lin.weight.fill_(-1.0)
    with avg.applied(lin):
        assert torch.all(lin.weight == avg.average_["weight"])
    assert torch.all(lin.weight == -1.0)  # the model's own weights are back
    other = WeightAverage(lin, decay=0.5)
    other.load_state_tensors(avg.state_tensors())
    assert other.updates_ == 21 and torch.equal(other.average_["weight"], avg.average_["weight"])
    with pytest.raises(ConfigError, match="does not fit"):
        other.load_state_tensors({"updates": torch.tensor(1)})
    with pytest.raises(ConfigError, match="decay"):
        WeightAverage(lin, decay=1.0)


def run(store: Path, out: Path, *, resume: bool = False, **kw) -> object:
    cfg = TrainConfig(**{**FAST, **kw})
    return train_from_store(store, out, model_name="beta-vae", model_config=TINY, config=cfg,
                            resume=resume)


def test_cosine_and_average_in_training_resume_exactly(tiny_store: Path, tmp_path: Path) -> None:
    kw = {"lr_schedule": "cosine", "ema": 0.9, "lr": 3e-3, "weight_decay": 0.01}
    full = run(tiny_store, tmp_path / "full", **kw)
    # the last batch of epoch e has done 3e - 1 of the 9 batches
    assert [h["lr"] for h in full.history] == pytest.approx(
        [1.5e-3 * (1 + math.cos(math.pi * (3 * e - 1) / 9)) for e in (1, 2, 3)])
    # stopped by the clock after epoch 1 (same horizon), then resumed: ends where full did
    part = run(tiny_store, tmp_path / "part", max_minutes=1e-9, **kw)
    assert part.stopped == "time" and len(part.history) == 1
    resumed = train_from_store(tiny_store, tmp_path / "part", config={"max_minutes": None},
                               resume=True)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    a = load_file(tmp_path / "full" / "checkpoint.safetensors")
    b = load_file(tmp_path / "part" / "checkpoint.safetensors")
    assert any(k.startswith("average.") for k in a)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_average_is_what_is_kept(tiny_store: Path, tmp_path: Path) -> None:
    run(tiny_store, tmp_path / "m", ema=0.9, epochs=1)  # the first epoch is always the best
    best = load_file(tmp_path / "m" / "weights.safetensors")
    ckpt = load_file(tmp_path / "m" / "checkpoint.safetensors")
    names = [k[len("average.param."):] for k in ckpt if k.startswith("average.param.")]
    assert names and all(torch.equal(best[n], ckpt[f"average.param.{n}"]) for n in names)
    assert not all(torch.equal(best[n], ckpt[f"model.{n}"]) for n in names)
    run(tiny_store, tmp_path / "plain", epochs=1)
    with pytest.raises(ConfigError, match="ema"):  # a run stored without it resumes without it
        train_from_store(tiny_store, tmp_path / "plain", config={"epochs": 2, "ema": 0.9},
                         resume=True)


def test_raising_the_epochs_of_a_cosine_run_is_a_warm_restart(tiny_store: Path,
                                                               tmp_path: Path) -> None:
    out = tmp_path / "m"
    run(tiny_store, out, lr_schedule="cosine", lr=2e-3, epochs=2)  # ends at rate 2e-3 (1 + cos 5pi/6) / 2
    _, _, same = resume_settings(out, config={"epochs": 2})
    assert schedule_note(out, same) is None
    _, _, tc = resume_settings(out, config={"epochs": 4})
    note = schedule_note(out, tc)
    assert note is not None and "over 4 epochs instead of 2" in note and "warm restart" in note
    assert "epoch 3 starts at 0.001 " in note  # half way along the 4-epoch cosine: lr / 2
    res = train_from_store(tiny_store, out, config={"epochs": 4}, resume=True)
    # the last batch of epoch 3 has done 8 of the 12 batches of the new schedule
    assert res.history[2]["lr"] == pytest.approx(1e-3 * (1 + math.cos(math.pi * 8 / 12)))
    run(tiny_store, tmp_path / "c", epochs=1)  # a constant rate has nothing to restart
    _, _, const = resume_settings(tmp_path / "c", config={"epochs": 3})
    assert schedule_note(tmp_path / "c", const) is None


def test_weight_decay_shrinks_the_weights(tiny_store: Path, tmp_path: Path) -> None:
    """AdamW's decoupled decay: at lr 0.05 and decay 0.9 each of the 6 steps multiplies every
    weight by 0.955 before Adam's step (0.76 in all), so the weights end clearly smaller than
    the same run's without decay (Adam)."""
    def norm(out: Path) -> float:
        w = load_file(out / "weights.safetensors")
        return sum(float(v.double().square().sum()) for k, v in w.items()
                   if v.is_floating_point() and "weight" in k) ** 0.5

    run(tiny_store, tmp_path / "adam", lr=0.05, epochs=2)
    run(tiny_store, tmp_path / "adamw", lr=0.05, epochs=2, weight_decay=0.9)
    assert norm(tmp_path / "adamw") < 0.9 * norm(tmp_path / "adam")
    with pytest.raises(ConfigError, match="weight_decay"):
        TrainConfig(weight_decay=-1.0)
