"""The contract of every registered model: shapes, gradients, save/load, determinism.

Parametrised over :func:`fastmc.models.available_models`, so a new model family is covered
as soon as it registers (give it tiny settings in ``modelhelpers.TINY_CONFIGS``).
Latent-variable models have their own contract in tests/models/vae/test_vae_latent.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.models import Condition, ModelDir, available_models, build_model
from modelhelpers import TINY_CONFIGS

MODELS = available_models()
FIELDS = ("types", "p4", "met", "met_phi", "weight", "process")


def test_every_builtin_family_is_registered() -> None:
    assert {"beta-vae", "alpha-vae", "flow"} <= set(MODELS)


def fitted(name: str, raw: RawBatch, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(name, TINY_CONFIGS.get(name, {}), processes=["other", "proc"])
    raw.process = torch.arange(len(raw)) % 2  # training events of both processes
    model.fit_data(raw)
    return model


def draw(model, n: int, seed: int) -> RawBatch:
    gen = torch.Generator().manual_seed(seed)
    return model.sample(n, condition=Condition(process="proc"), generator=gen)


@pytest.mark.parametrize("name", MODELS)
def test_sample_shapes(name: str, raw: RawBatch) -> None:
    model = fitted(name, raw)
    out = draw(model, 10, seed=1)
    k = model.config.max_objects
    assert out.types.shape == (10, k) and out.types.dtype == torch.int64
    assert out.p4.shape == (10, k, 4) and out.p4.dtype == torch.float32
    assert out.met.shape == out.met_phi.shape == out.weight.shape == out.process.shape == (10,)
    assert int(out.types.min()) >= 0 and int(out.types.max()) <= 7
    assert bool(torch.isfinite(out.p4).all()) and bool(torch.isfinite(out.met).all())
    assert bool((out.met_phi.abs() <= math.pi + 1e-5).all())
    assert out.process.tolist() == [1] * 10  # the condition's process, as the model's index
    assert len(draw(model, 0, seed=1)) == 0


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str, raw: RawBatch) -> None:
    model = fitted(name, raw)
    model.train()
    loss, parts = model.training_loss(raw, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert parts and all(math.isfinite(v) for v in parts.values())
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("name", MODELS)
def test_save_load_round_trip(name: str, raw: RawBatch, tmp_path) -> None:
    model = fitted(name, raw).eval()
    model.info = {"processes": {"proc": {"cross_section_weight": 2.5}}}
    mdir = ModelDir(tmp_path / "m")
    mdir.save(model)
    assert mdir.read_config()["model"] == name
    loaded = mdir.load()
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.processes == model.processes and loaded.info == model.info
    a, b = draw(model, 16, seed=5), draw(loaded, 16, seed=5)
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("name", MODELS)
def test_deterministic_under_a_seed(name: str, raw: RawBatch) -> None:
    one, two = fitted(name, raw, seed=3), fitted(name, raw, seed=3)
    for (k, p), q in zip(one.state_dict().items(), two.state_dict().values(), strict=True):
        assert torch.equal(p, q), k  # same torch seed, same initial weights
    a, b, c = draw(one, 32, seed=7), draw(two, 32, seed=7), draw(one, 32, seed=8)
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.p4, c.p4)  # another seed, other events
    one.train(), two.train()
    la, _ = one.training_loss(raw, generator=torch.Generator().manual_seed(0))
    lb, _ = two.training_loss(raw, generator=torch.Generator().manual_seed(0))
    assert float(la.detach()) == float(lb.detach())
