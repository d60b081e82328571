"""The latent-variable contract, parametrised over every VAE variant and every latent prior.

The contract of every model (any family) is tests/models/test_models_contract.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch
from fastmc.models import Condition, build_model, get_model, load_model, save_model
from fastmc.models.vae.priors import GaussianMixturePrior
from modelhelpers import TINY, head

MODELS = ["beta-vae", "alpha-vae"]
PRIORS = ["normal", "bgmm", "gmm", "truth"]


def tiny_model(name: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(name, TINY, processes=["proc"])


def fitted_model(name: str, raw: RawBatch, prior: str):
    model = tiny_model(name)
    if prior in ("bgmm", "gmm"):
        report = model.fit_prior(prior, [raw], components=2, seed=0, max_iter=300)
        assert report["events"] == len(raw)
    return model


def draw(model, n: int, prior: str, raw: RawBatch, seed: int = 3) -> RawBatch:
    gen = torch.Generator().manual_seed(seed)
    truth = head(raw, n) if prior == "truth" else None
    return model.sample(n, condition=Condition(process="proc"), generator=gen, prior=prior,
                        truth=truth)


@pytest.mark.parametrize("name", MODELS)
def test_gradients_reach_every_parameter(name: str, raw: RawBatch) -> None:
    model = tiny_model(name)
    loss, parts = model.training_loss(raw, generator=torch.Generator().manual_seed(0))
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.count_nonzero(p.grad) > 0, pname
    assert {"ce_types", "mse_features", "mse_met"} <= set(parts)
    assert ("kl" in parts) == (name == "beta-vae")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("prior", PRIORS)
def test_sample_shapes_and_validity(name: str, prior: str, raw: RawBatch) -> None:
    model = fitted_model(name, raw, prior)
    out = draw(model, 10, prior, raw)
    assert out.types.shape == (10, 19) and out.types.dtype == torch.int64
    assert out.p4.shape == (10, 19, 4)
    assert out.met.shape == out.met_phi.shape == out.process.shape == (10,)
    assert int(out.types.min()) >= 0 and int(out.types.max()) <= 7
    assert bool((out.met > 0).all())
    assert bool((out.met_phi.abs() <= np.pi).all())
    ev = out.to_events(process_names=model.processes)
    assert ev.equals(ev.sorted())  # Dark Machines order
    assert bool((ev.p4[ev.types == 0] == 0).all())


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("prior", PRIORS)
def test_save_load_round_trip_same_samples(name, prior, raw, tmp_path) -> None:
    model = fitted_model(name, raw, prior)
    model.info = {"processes": {"proc": {"cross_section_weight": 1.5}}}
    save_model(model, tmp_path / "m")
    assert not (tmp_path / "m" / "prior.safetensors").exists() or prior in ("bgmm", "gmm")
    loaded = load_model(tmp_path / "m")
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.info == model.info
    a, b = draw(model.eval(), 12, prior, raw), draw(loaded, 12, prior, raw)
    for field in ("types", "p4", "met", "met_phi", "process"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    c = draw(loaded, 12, prior, raw, seed=4)
    assert not torch.equal(a.met, c.met)  # another seed, other events


@pytest.mark.parametrize("name", MODELS)
def test_tiny_batch_can_be_overfitted(name: str, raw: RawBatch) -> None:
    torch.manual_seed(0)
    model = build_model(name, {**TINY, "latent_dim": 8, "decoder_widths": (64,), "head_width": 64})
    batch = head(raw, 8)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    first = None
    for _ in range(400):
        loss, _ = model.training_loss(batch, generator=gen)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first


def test_config_validation() -> None:
    spec = get_model("beta-vae")
    with pytest.raises(ValueError, match="latent_dim"):
        spec.config_cls(latent_dim=0)
    with pytest.raises(ValueError, match="beta"):
        spec.config_cls(beta=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        get_model("alpha-vae").config_cls(alpha="x")
    with pytest.raises(ValueError, match="unknown AlphaVAEConfig setting"):
        build_model("alpha-vae", {"beta": 0.1})
    with pytest.raises(ValueError, match="unknown model"):
        get_model("no-such-model")


def test_prior_errors(raw: RawBatch) -> None:
    model = tiny_model("beta-vae")
    with pytest.raises(ValueError, match="fit-prior"):
        model.sample(3, prior="gmm")
    with pytest.raises(ValueError, match="truth-events"):
        model.sample(3, prior="truth")
    with pytest.raises(ValueError, match="unknown prior"):
        model.sample(3, prior="nope")
    with pytest.raises(ValueError, match="nothing to fit"):
        model.fit_prior("normal", [raw])
    with pytest.raises(ValueError, match="codes"):
        model.fit_prior("gmm", [raw], components=2, codes="medians")
    means = model.fit_prior("gmm", [raw], components=2, codes="mean")
    assert means["codes"] == "mean"


def test_fitted_prior_is_gaussian_mixture(raw: RawBatch) -> None:
    model = fitted_model("alpha-vae", raw, "gmm")
    prior = model.priors[("gmm", "proc")]
    assert isinstance(prior, GaussianMixturePrior)
    assert prior.means.shape == (2, TINY["latent_dim"])
    dist = prior.distribution()
    z = prior.sample(50, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(dist.log_prob(z)).all()
