"""The contract of every registered model: shapes, gradients, save/load, determinism.

Parametrised over :func:`fastmc.models.available_models`, so a new model family is covered
as soon as it registers (give it tiny settings in ``modelhelpers.TINY_CONFIGS``), and over two
process sets: two plain processes, and a plain process with two parameter points of a family
(``proc@m=1000``, ``proc@m=1800``), sampled at a point between them (``m=1700``, issue 14).
``modelhelpers.MODEL_VARIANTS`` adds modes of a family with another network (the flow's
``mode: matching``, issue 13) as cases of their own.
Latent-variable models have their own contract in tests/models/vae/test_vae_latent.py.
"""

from __future__ import annotations

import math

import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.models import Condition, ModelDir, available_models, build_model
from modelhelpers import MODEL_VARIANTS, TINY_CONFIGS

MODELS = available_models()
#: case name -> (registry name, tiny settings): every registered model, and the variants
SPECS = {**{n: (n, TINY_CONFIGS.get(n, {})) for n in MODELS}, **MODEL_VARIANTS}
FIELDS = ("types", "p4", "met", "met_phi", "weight", "process")
#: processes, the condition sampled and the process code it gives (the nearest trained point)
KINDS = {
    "plain": (("other", "proc"), Condition(process="proc"), 1),
    "points": (("other", "proc@m=1000", "proc@m=1800"),
               Condition(process="proc", params={"m": 1700.0}), 2),
}
CASES = [pytest.param(name, kind, id=f"{name}-{kind}") for name in SPECS for kind in KINDS]


def test_every_builtin_family_is_registered() -> None:
    assert {"beta-vae", "alpha-vae", "flow"} <= set(MODELS)


def fitted(name: str, raw: RawBatch, seed: int = 0, kind: str = "plain"):
    torch.manual_seed(seed)
    processes = KINDS[kind][0]
    registered, settings = SPECS[name]
    model = build_model(registered, settings, processes=processes)
    raw.process = torch.arange(len(raw)) % len(processes)  # training events of every process
    model.fit_data(raw)
    return model


def draw(model, n: int, seed: int) -> RawBatch:
    gen = torch.Generator().manual_seed(seed)
    kind = "points" if len(model.processes) == 3 else "plain"
    return model.sample(n, condition=KINDS[kind][1], generator=gen)


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_sample_shapes(name: str, kind: str, raw: RawBatch) -> None:
    model = fitted(name, raw, kind=kind)
    if kind == "points":
        assert model.param_conditional
    out = draw(model, 10, seed=1)
    k = model.config.max_objects
    assert out.types.shape == (10, k) and out.types.dtype == torch.int64
    assert out.p4.shape == (10, k, 4) and out.p4.dtype == torch.float32
    assert out.met.shape == out.met_phi.shape == out.weight.shape == out.process.shape == (10,)
    assert int(out.types.min()) >= 0 and int(out.types.max()) <= 7
    assert bool(torch.isfinite(out.p4).all()) and bool(torch.isfinite(out.met).all())
    assert bool((out.met_phi.abs() <= math.pi + 1e-5).all())
    # the condition's process (a point: the nearest trained one), as the model's index
    assert out.process.tolist() == [KINDS[kind][2]] * 10
    assert len(draw(model, 0, seed=1)) == 0


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_gradients_reach_every_parameter(name: str, kind: str, raw: RawBatch) -> None:
    """Every parameter is in the loss's graph (a gradient tensor: what DDP needs) and, after
    one optimiser step (a zero-initialised output layer passes no gradient at the start, as
    in the flow's matching mode), receives a non-zero gradient."""
    model = fitted(name, raw, kind=kind)
    model.train()
    loss, parts = model.training_loss(raw, generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and math.isfinite(float(loss.detach()))
    assert parts and all(math.isfinite(v) for v in parts.values())
    loss.backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    torch.optim.SGD(model.parameters(), lr=0.01).step()
    model.zero_grad(set_to_none=True)
    loss, _ = model.training_loss(raw, generator=torch.Generator().manual_seed(1))
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize(("name", "kind"), CASES)
def test_save_load_round_trip(name: str, kind: str, raw: RawBatch, tmp_path) -> None:
    model = fitted(name, raw, kind=kind).eval()
    model.info = {"processes": {"proc": {"cross_section_weight": 2.5}}}
    mdir = ModelDir(tmp_path / "m")
    mdir.save(model)
    assert mdir.read_config()["model"] == SPECS[name][0]
    loaded = mdir.load()
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.processes == model.processes and loaded.info == model.info
    assert loaded.param_conditional == model.param_conditional == (kind == "points")
    a, b = draw(model, 16, seed=5), draw(loaded, 16, seed=5)
    for field in FIELDS:
        assert torch.equal(getattr(a, field), getattr(b, field)), field


@pytest.mark.parametrize("name", SPECS)
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
