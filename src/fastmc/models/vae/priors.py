"""Latent priors: the distributions a VAE's decoder is fed from at generation time.

The theses' generation modes:

``normal``
    z ~ N(0, 1): generation from random numbers alone (:class:`StandardNormalPrior`).
``bgmm``
    scikit-learn ``BayesianGaussianMixture`` (full covariance, ``components`` = the number of
    mixture components, the theses' gamma) fitted on the latent codes of up to 200k training
    events of one process (:func:`fastmc.models.vae.prior_fit.fit_bgmm`).
``gmm``
    a Gaussian mixture fitted by EM in torch (:func:`fastmc.models.vae.prior_fit.fit_gmm`): float32, batched over
    components, on any device; the same model as scikit-learn's ``GaussianMixture``.
``truth``
    encode given events and add noise; it needs input events and lives in the model
    (:meth:`fastmc.models.vae.VAE.sample`), so it has no fitted state here.

Fitted mixtures are :class:`GaussianMixturePrior` objects: weights [C], means [C, D] and
Cholesky factors of the covariances [C, D, D] (latent units, dimensionless).  They are stored
in a model directory's ``prior.safetensors`` (see :mod:`fastmc.models.modeldir`); they are fitted by :mod:`fastmc.models.vae.prior_fit`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "PRIOR_KINDS",
    "GaussianMixturePrior",
    "StandardNormalPrior",
    "prior_from_state",
]

#: Every prior kind a VAE accepts at generation time.
PRIOR_KINDS = ("normal", "bgmm", "gmm", "truth")


class StandardNormalPrior:
    """z ~ N(0, I) in ``dim`` dimensions."""

    kind = "normal"

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 [n, dim] on the generator's device (CPU if none)."""
        device = generator.device if generator is not None else "cpu"
        return torch.randn(n, self.dim, generator=generator, device=device)

    def distribution(self) -> torch.distributions.Distribution:
        """The prior as a torch distribution (event shape [dim])."""
        d = torch.distributions
        return d.Independent(d.Normal(torch.zeros(self.dim), torch.ones(self.dim)), 1)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}


class GaussianMixturePrior:
    """A Gaussian mixture over the latent space.

    Parameters
    ----------
    weights : float [C]            mixture weights (sum 1)
    means : float [C, D]           component means
    scale_tril : float [C, D, D]   lower Cholesky factors of the component covariances
    kind : str                     ``"bgmm"`` or ``"gmm"`` (how it was fitted)
    report : dict                  JSON facts about the fit (converged, n_iter, events, ...)
    """

    def __init__(
        self,
        weights: torch.Tensor,
        means: torch.Tensor,
        scale_tril: torch.Tensor,
        *,
        kind: str = "gmm",
        report: Mapping[str, Any] | None = None,
    ) -> None:
        c, d = means.shape
        if weights.shape != (c,) or scale_tril.shape != (c, d, d):
            raise ValueError(
                f"inconsistent mixture shapes: weights {tuple(weights.shape)}, means "
                f"{tuple(means.shape)}, scale_tril {tuple(scale_tril.shape)}"
            )
        self.weights = weights.float()
        self.means = means.float()
        self.scale_tril = scale_tril.float()
        self.kind = kind
        self.report = dict(report or {})

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    def to(self, device: str | torch.device) -> GaussianMixturePrior:
        """Move the parameters to ``device`` (in place; returns self)."""
        self.weights = self.weights.to(device)
        self.means = self.means.to(device)
        self.scale_tril = self.scale_tril.to(device)
        return self

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """float32 [n, D] on the generator's device (CPU if none).

        The noise is drawn first ([n, D]) and then the components, so the draw is the same
        however the events group into components.
        """
        device = generator.device if generator is not None else torch.device("cpu")
        if self.means.device != device:
            self.to(device)
        eps = torch.randn(n, self.dim, generator=generator, device=device)
        comp = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        out = torch.empty_like(eps)
        if n <= 64:  # few events: gather per event
            return self.means[comp] + torch.einsum("nij,nj->ni", self.scale_tril[comp], eps)
        order = torch.argsort(comp, stable=True)
        counts = torch.bincount(comp, minlength=self.n_components).tolist()
        start = 0
        for k, cnt in enumerate(counts):
            if cnt:
                idx = order[start : start + cnt]
                out[idx] = self.means[k] + eps[idx] @ self.scale_tril[k].T
                start += cnt
        return out

    def distribution(self) -> torch.distributions.Distribution:
        """The mixture as ``torch.distributions.MixtureSameFamily`` (for ``log_prob``)."""
        d = torch.distributions
        return d.MixtureSameFamily(
            d.Categorical(probs=self.weights),
            d.MultivariateNormal(self.means, scale_tril=self.scale_tril),
        )

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dim": self.dim,
            "components": self.n_components,
            "report": self.report,
        }

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weights, "means": self.means, "scale_tril": self.scale_tril}


def prior_from_state(
    description: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]
) -> StandardNormalPrior | GaussianMixturePrior:
    """Rebuild a prior from :meth:`describe` output and its tensors."""
    kind = description["kind"]
    if kind == "normal":
        return StandardNormalPrior(description["dim"])
    if kind in ("bgmm", "gmm"):
        return GaussianMixturePrior(
            tensors["weights"],
            tensors["means"],
            tensors["scale_tril"],
            kind=kind,
            report=description.get("report"),
        )
    raise ValueError(f"unknown prior kind {kind!r} in prior.safetensors")


# ---------------------------------------------------------------------------- scikit-learn
