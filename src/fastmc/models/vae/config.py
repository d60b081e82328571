"""Settings of the VAE family (defaults: the theses' experiment II)."""

from __future__ import annotations

import dataclasses
from typing import Literal

from fastmc.config import check_config, setting
from fastmc.events import DEFAULT_MAX_OBJECTS

__all__ = ["AlphaVAEConfig", "BetaVAEConfig", "VAEConfig"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """Settings shared by both VAE variants (defaults: the theses' experiment II).

    Attributes
    ----------
    latent_dim : int            latent size (80, see fastmc.models.vae.model)
    branch_widths : tuple[int]  Dense layers of each encoder input branch (512, 512)
    trunk_widths : tuple[int]   Dense layers after concatenating the branches (512, 512)
    decoder_widths : tuple[int] Dense layers of the decoder before the heads (512, 512)
    head_width : int            hidden Dense layer of each decoder head (512)
    max_objects : int           K, object slots per event (19)
    encoding : str              encoding kind, "thesis" or "physics" (fastmc.models.vae.encoding)
    standardize : bool          standardise features with training statistics (False)
    sample_types : bool         at generation, sample object types from the softmax instead
                                of taking the argmax (False: the theses' argmax)
    process_input : bool        with several processes, feed the process label (one-hot) to
                                the encoder trunk and the decoder: a conditional VAE that
                                generates one chosen process (True; no effect with one process)
    lead : str                  "none", "met" or "ht": also condition on this leading
                                observable (log10 GeV), drawn at generation from its learned
                                per-process distribution, truncated to a --where region's
                                bounds (the faster region path; docs/conditioning.md)
    """

    latent_dim: int = setting(80, ge=1)
    branch_widths: tuple[int, ...] = setting((512, 512), ge=1, nonempty=True)
    trunk_widths: tuple[int, ...] = setting((512, 512), ge=1)
    decoder_widths: tuple[int, ...] = setting((512, 512), ge=1)
    head_width: int = setting(512, ge=1)
    max_objects: int = setting(DEFAULT_MAX_OBJECTS, ge=1)
    encoding: Literal["thesis", "physics"] = "thesis"
    standardize: bool = False
    sample_types: bool = False
    process_input: bool = True
    lead: Literal["none", "met", "ht"] = "none"

    def __post_init__(self) -> None:
        check_config(self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BetaVAEConfig(VAEConfig):
    """beta-VAE: ``beta`` weighs the KL term (theses: 0.001)."""

    beta: float = setting(1e-3, ge=0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class AlphaVAEConfig(VAEConfig):
    """alpha-VAE: ``alpha`` is the standard deviation of the latent noise (theses: 0.2)."""

    alpha: float = setting(0.2, ge=0)
