"""Fitting latent priors: scikit-learn's Bayesian mixture and a batched torch EM.

Both return a :class:`fastmc.models.vae.priors.GaussianMixturePrior` with a ``report``
(``converged``, ``n_iter``, ...).  Latent codes are dimensionless.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from fastmc.models.vae.priors import GaussianMixturePrior

__all__ = ["fit_bgmm", "fit_gmm"]


def fit_bgmm(
    z: np.ndarray | torch.Tensor,
    *,
    components: int = 100,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    weight_concentration_prior: float | None = None,
    chunk_iter: int = 10,
    progress: Callable[[int], None] | None = None,
) -> GaussianMixturePrior:
    """Fit scikit-learn's ``BayesianGaussianMixture`` (full covariance) to latent codes.

    ``z``: float [N, D] latent codes.  ``components`` is the (maximal) number of mixture
    components; the Dirichlet-process weight prior switches unneeded ones off.  Fitting runs
    in chunks of ``chunk_iter`` EM iterations (warm start) so that ``progress(iterations)``
    can report; it stops when scikit-learn reports convergence or after ``max_iter``.  Warns
    (``RuntimeWarning``) if it did not converge.  Needs the ``stats`` extra.
    """
    from fastmc.errors import require

    mixture = require("sklearn.mixture", "stats")
    from sklearn.exceptions import ConvergenceWarning

    x = _as_numpy(z)
    _check_codes(x, components)
    chunk = max(2, min(chunk_iter, max_iter))
    model = mixture.BayesianGaussianMixture(
        n_components=components,
        covariance_type="full",
        weight_concentration_prior=weight_concentration_prior,
        max_iter=chunk,
        tol=tol,
        reg_covar=reg_covar,
        random_state=seed,
        warm_start=True,
        init_params="kmeans",
    )
    done = 0
    while done < max_iter:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x)
        done += model.n_iter_
        if progress is not None:
            progress(model.n_iter_)
        if model.converged_:
            break
    converged = bool(model.converged_)
    report = {
        "method": "sklearn.mixture.BayesianGaussianMixture",
        "converged": converged,
        "n_iter": int(done),
        "events": int(x.shape[0]),
        "lower_bound": float(model.lower_bound_),
        "effective_components": int((model.weights_ > 1.0 / (10 * components)).sum()),
        "seed": int(seed),
    }
    if not converged:
        warnings.warn(
            f"BayesianGaussianMixture did not converge in {done} iterations; the prior is "
            "stored anyway. Try more iterations (--max-iter), fewer components or a larger tol.",
            RuntimeWarning,
            stacklevel=2,
        )
    cov = torch.as_tensor(model.covariances_, dtype=torch.float64)
    tril = torch.linalg.cholesky(cov)
    weights = torch.as_tensor(model.weights_, dtype=torch.float64)
    return GaussianMixturePrior(
        (weights / weights.sum()).float(),
        torch.as_tensor(model.means_).float(),
        tril.float(),
        kind="bgmm",
        report=report,
    )


# ---------------------------------------------------------------------------- torch EM
def fit_gmm(
    z: np.ndarray | torch.Tensor,
    *,
    components: int = 100,
    seed: int = 0,
    max_iter: int = 200,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    kmeans_iter: int = 10,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int], None] | None = None,
) -> GaussianMixturePrior:
    """Fit a full-covariance Gaussian mixture by EM in torch (CPU or GPU).

    ``z``: float [N, D] latent codes.  Initialised like scikit-learn's ``GaussianMixture``
    (k-means, here k-means++ seeding + ``kmeans_iter`` Lloyd steps, seeded by ``seed``);
    stops when the mean log-likelihood per event changes by less than ``tol`` (as
    scikit-learn does) or after ``max_iter`` iterations (then warns, ``RuntimeWarning``).
    ``reg_covar`` is added to every covariance diagonal.  Work is batched over components
    and chunked over events so memory stays ~100 MB at 100 components x 160 dimensions.
    ``progress(1)`` is called after each EM iteration.
    """
    x = torch.as_tensor(_as_numpy(z) if not isinstance(z, torch.Tensor) else z)
    x = x.to(device=device if device is not None else x.device, dtype=dtype)
    _check_codes(x, components)
    n = x.shape[0]
    shift = x.mean(0)
    x = x - shift  # centring keeps float32 covariances accurate
    gen = torch.Generator(device=x.device).manual_seed(seed)
    means = _kmeans(x, components, kmeans_iter, gen)
    # initial responsibilities: hard assignment to the nearest k-means centre
    labels = _nearest(x, means)
    resp_sum, mean_acc, cov_acc = _hard_stats(x, labels, components)
    weights, means, tril = _m_step(resp_sum, mean_acc, cov_acc, n, reg_covar)
    prev = -math.inf
    converged = False
    it = 0
    ll = -math.inf
    for it in range(1, max_iter + 1):  # noqa: B007 - used after the loop
        ll, resp_sum, mean_acc, cov_acc = _e_step_stats(x, weights, means, tril)
        weights, means, tril = _m_step(resp_sum, mean_acc, cov_acc, n, reg_covar)
        if progress is not None:
            progress(1)
        if abs(ll - prev) < tol:
            converged = True
            break
        prev = ll
    report = {
        "method": "fastmc torch EM",
        "converged": converged,
        "n_iter": int(it),
        "events": int(n),
        "mean_log_likelihood": float(ll),
        "seed": int(seed),
    }
    if not converged:
        warnings.warn(
            f"torch GMM EM did not converge in {max_iter} iterations (last change in mean "
            f"log-likelihood {abs(ll - prev):.2g} > tol {tol}); the prior is stored anyway. "
            "Try --max-iter larger, fewer components or a larger tol.",
            RuntimeWarning,
            stacklevel=2,
        )
    return GaussianMixturePrior(
        weights.float().cpu(),
        (means + shift).float().cpu(),
        tril.float().cpu(),
        kind="gmm",
        report=report,
    )


def _as_numpy(z: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(z, torch.Tensor):
        return z.detach().cpu().double().numpy()
    return np.asarray(z, dtype=np.float64)


def _check_codes(x: np.ndarray | torch.Tensor, components: int) -> None:
    if x.ndim != 2:
        raise ValueError(f"latent codes must have shape [N, D], got {tuple(x.shape)}")
    if components < 1:
        raise ValueError(f"components must be >= 1, got {components}")
    if x.shape[0] < 2 * components:
        raise ValueError(
            f"{x.shape[0]} latent codes are too few for {components} components; "
            "use more events or fewer components"
        )
    finite = np.isfinite(x).all() if isinstance(x, np.ndarray) else bool(torch.isfinite(x).all())
    if not finite:
        raise ValueError("latent codes contain NaN or infinite values")


def _chunk(n_rows: int, c: int, d: int) -> int:
    """Events per chunk so that a [C, chunk, D] float tensor stays ~ 2.5e7 elements."""
    return max(256, min(n_rows, int(2.5e7 // max(1, c * d))))


def _nearest(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    step = _chunk(x.shape[0], centres.shape[0], 1) // 4
    for s in range(0, x.shape[0], step):
        out[s : s + step] = torch.cdist(x[s : s + step], centres).argmin(1)
    return out


def _kmeans(x: torch.Tensor, k: int, n_iter: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding then ``n_iter`` Lloyd iterations; returns centres [k, D]."""
    n = x.shape[0]
    first = torch.randint(n, (1,), generator=gen, device=x.device)
    centres = [x[first[0]]]
    d2 = ((x - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        probs = d2 / d2.sum() if float(d2.sum()) > 0 else torch.full_like(d2, 1.0 / n)
        idx = torch.multinomial(probs, 1, generator=gen)[0]
        centres.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(n_iter):
        labels = _nearest(x, c)
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        cnt = torch.bincount(labels, minlength=k).to(x.dtype)
        c = torch.where(cnt[:, None] > 0, sums / cnt.clamp(min=1)[:, None], c)
    return c


def _hard_stats(
    x: torch.Tensor, labels: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    d = x.shape[1]
    resp_sum = torch.bincount(labels, minlength=k).to(x.dtype) + 10 * torch.finfo(x.dtype).eps
    mean_acc = torch.zeros(k, d, dtype=x.dtype, device=x.device).index_add_(0, labels, x)
    cov_acc = torch.zeros(k, d, d, dtype=x.dtype, device=x.device)
    for j in range(k):
        xs = x[labels == j]
        cov_acc[j] = xs.T @ xs
    return resp_sum, mean_acc, cov_acc


def _m_step(
    resp_sum: torch.Tensor,
    mean_acc: torch.Tensor,
    cov_acc: torch.Tensor,
    n: int,
    reg_covar: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weights [C], means [C, D], Cholesky factors [C, D, D] from accumulated statistics."""
    nk = resp_sum
    means = mean_acc / nk[:, None]
    cov = cov_acc / nk[:, None, None] - means[:, :, None] * means[:, None, :]
    d = means.shape[1]
    eye = torch.eye(d, dtype=cov.dtype, device=cov.device)
    cov = 0.5 * (cov + cov.transpose(1, 2)) + reg_covar * eye
    jitter = reg_covar
    for _ in range(8):
        tril, info = torch.linalg.cholesky_ex(cov)
        if not bool((info > 0).any()):
            break
        jitter *= 10  # float32 round-off: make the covariance positive definite
        cov = cov + jitter * eye
    else:
        raise ValueError("a covariance matrix is not positive definite; increase reg_covar")
    return nk / n, means, tril


def _e_step_stats(
    x: torch.Tensor, weights: torch.Tensor, means: torch.Tensor, tril: torch.Tensor
) -> tuple[float, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean log-likelihood and sufficient statistics sum r, sum r x, sum r x x^T."""
    c, d = means.shape
    # precision Cholesky: P = L^{-1}; log N = -0.5 |P (x - mu)|^2 + log det P - d/2 log 2 pi
    eye = torch.eye(d, dtype=x.dtype, device=x.device).expand(c, d, d)
    prec = torch.linalg.solve_triangular(tril, eye, upper=False)  # [C, D, D]
    log_det = torch.log(torch.diagonal(prec, dim1=1, dim2=2)).sum(1)  # [C]
    const = torch.log(weights) + log_det - 0.5 * d * math.log(2 * math.pi)
    mu_p = torch.einsum("cij,cj->ci", prec, means)  # [C, D]
    resp_sum = torch.zeros(c, dtype=x.dtype, device=x.device)
    mean_acc = torch.zeros(c, d, dtype=x.dtype, device=x.device)
    cov_acc = torch.zeros(c, d, d, dtype=x.dtype, device=x.device)
    total = 0.0
    step = _chunk(x.shape[0], c, d)
    for s in range(0, x.shape[0], step):
        xs = x[s : s + step]
        y = torch.matmul(xs, prec.transpose(1, 2)) - mu_p[:, None, :]  # [C, n, D]
        logp = const[:, None] - 0.5 * (y * y).sum(2)  # [C, n]
        lse = torch.logsumexp(logp, 0)  # [n]
        total += float(lse.sum())
        r = torch.exp(logp - lse[None, :])  # [C, n]
        resp_sum += r.sum(1)
        mean_acc += r @ xs
        cov_acc += torch.matmul((r[:, :, None] * xs[None]).transpose(1, 2), xs)
    resp_sum = resp_sum + 10 * torch.finfo(x.dtype).eps
    return total / x.shape[0], resp_sum, mean_acc, cov_acc
