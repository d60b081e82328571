"""The VAE family: beta-VAE and alpha-VAE (:mod:`.model`), their event encoding
(:mod:`.encoding`) and latent priors (:mod:`.priors`, fitted by :mod:`.prior_fit`)."""

from __future__ import annotations

from fastmc.models.vae.model import (
    VAE,
    AlphaVAE,
    AlphaVAEConfig,
    BetaVAE,
    BetaVAEConfig,
    VAEConfig,
)

__all__ = ["VAE", "AlphaVAE", "AlphaVAEConfig", "BetaVAE", "BetaVAEConfig", "VAEConfig"]
