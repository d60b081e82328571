"""Latent priors: the torch EM mixture against scikit-learn, the Bayesian mixture, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fastmc.models.vae.prior_fit import fit_bgmm, fit_gmm
from fastmc.models.vae.priors import GaussianMixturePrior, StandardNormalPrior, prior_from_state

MEANS = np.array([[0.0, 0.0], [5.0, 5.0], [-4.0, 6.0]])
COVS = np.array([[[1.0, 0.3], [0.3, 0.5]], [[0.4, 0.0], [0.0, 1.5]], [[0.8, -0.4], [-0.4, 0.6]]])
WEIGHTS = np.array([0.5, 0.3, 0.2])


def mixture_sample(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    comp = rng.choice(3, size=n, p=WEIGHTS)
    out = np.empty((n, 2))
    for k in range(3):
        sel = comp == k
        out[sel] = rng.multivariate_normal(MEANS[k], COVS[k], size=sel.sum())
    return out


def by_first_mean(weights, means, covs):
    order = np.lexsort((means[:, 1], means[:, 0]))
    return weights[order], means[order], covs[order]


def test_torch_gmm_agrees_with_sklearn() -> None:
    from sklearn.mixture import GaussianMixture

    x = mixture_sample(3000)
    ours = fit_gmm(x, components=3, seed=0, tol=1e-5, max_iter=500)
    ref = GaussianMixture(3, covariance_type="full", tol=1e-5, max_iter=500, random_state=0).fit(x)
    assert ours.report["converged"]
    cov_ours = (ours.scale_tril @ ours.scale_tril.transpose(1, 2)).double().numpy()
    w1, m1, c1 = by_first_mean(ours.weights.double().numpy(), ours.means.double().numpy(), cov_ours)
    w2, m2, c2 = by_first_mean(ref.weights_, ref.means_, ref.covariances_)
    np.testing.assert_allclose(w1, w2, atol=2e-3)
    np.testing.assert_allclose(m1, m2, atol=5e-3)
    np.testing.assert_allclose(c1, c2, atol=5e-3)
    # same mean log-likelihood as scikit-learn's
    assert ours.report["mean_log_likelihood"] == pytest.approx(ref.score(x), abs=1e-3)
    # and close to the truth
    np.testing.assert_allclose(m1, MEANS[np.lexsort((MEANS[:, 1], MEANS[:, 0]))], atol=0.1)


def test_gmm_deterministic_and_warns_when_not_converged() -> None:
    x = mixture_sample(500, seed=1)
    a = fit_gmm(x, components=3, seed=5)
    b = fit_gmm(torch.as_tensor(x), components=3, seed=5)
    assert torch.equal(a.means, b.means)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        c = fit_gmm(x, components=3, seed=5, max_iter=1, tol=1e-12)
    assert not c.report["converged"] and c.report["n_iter"] == 1


def test_bgmm_finds_the_mixture_and_reports_progress() -> None:
    x = mixture_sample(1500, seed=2)
    ticks: list[int] = []
    prior = fit_bgmm(x, components=6, seed=0, progress=ticks.append)
    assert prior.kind == "bgmm" and prior.n_components == 6
    assert prior.report["converged"] and sum(ticks) == prior.report["n_iter"]
    big = prior.weights > 0.05
    assert int(big.sum()) == 3  # the Dirichlet-process prior switches the rest off
    found = prior.means[big].double().numpy()
    for m in MEANS:
        assert np.min(np.linalg.norm(found - m, axis=1)) < 0.2


def test_bgmm_warns_when_not_converged() -> None:
    x = mixture_sample(300, seed=3)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        prior = fit_bgmm(x, components=4, max_iter=2, chunk_iter=2, tol=1e-12)
    assert not prior.report["converged"]


def test_mixture_sampling_matches_its_moments() -> None:
    w = torch.tensor(WEIGHTS, dtype=torch.float32)
    m = torch.tensor(MEANS, dtype=torch.float32)
    tril = torch.linalg.cholesky(torch.tensor(COVS, dtype=torch.float32))
    prior = GaussianMixturePrior(w, m, tril)
    z = prior.sample(40_000, generator=torch.Generator().manual_seed(0))
    mean = (w[:, None] * m).sum(0)
    torch.testing.assert_close(z.mean(0), mean, atol=0.05, rtol=0)
    # small batches take the per-event path: same distribution, deterministic
    small = prior.sample(10, generator=torch.Generator().manual_seed(1))
    again = prior.sample(10, generator=torch.Generator().manual_seed(1))
    assert torch.equal(small, again)
    rebuilt = prior_from_state(prior.describe(), prior.state_tensors())
    assert torch.equal(rebuilt.sample(100, generator=torch.Generator().manual_seed(2)),
                       prior.sample(100, generator=torch.Generator().manual_seed(2)))
    lp = prior.distribution().log_prob(z[:100])
    assert torch.isfinite(lp).all()


def test_standard_normal_and_bad_input() -> None:
    p = StandardNormalPrior(3)
    z = p.sample(5, generator=torch.Generator().manual_seed(0))
    assert z.shape == (5, 3)
    assert p.distribution().event_shape == (3,)
    with pytest.raises(ValueError, match="too few"):
        fit_gmm(np.zeros((5, 2)), components=4)
    with pytest.raises(ValueError, match="NaN"):
        fit_gmm(np.full((50, 2), np.nan), components=2)
    with pytest.raises(ValueError, match="shape"):
        fit_gmm(np.zeros(50), components=2)
