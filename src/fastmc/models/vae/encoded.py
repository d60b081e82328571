"""The data types of the VAE encoding: :class:`EncodingConfig` and :class:`EncodedBatch`.

The conversion itself is :class:`fastmc.models.vae.encoding.Encoding`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import torch

from fastmc.config import check_config, from_dict, setting
from fastmc.data.batch import TensorBatch
from fastmc.events import DEFAULT_MAX_OBJECTS

__all__ = ["N_CLASSES", "EncodedBatch", "EncodingConfig"]

#: object classes: 0 = padding, 1..7 = j, b, e-, e+, m-, m+, g
N_CLASSES = 8


@dataclasses.dataclass(frozen=True, kw_only=True)
class EncodingConfig:
    """How events become model tensors.

    Attributes
    ----------
    kind : "thesis" | "physics"
        ``"thesis"``: object features (log10 E, log10 pT, eta, phi); ``"physics"``:
        (log10 pT, eta, phi, log10 m) with E derived.  See the module docstring.
    max_objects : int
        K, the number of object slots per event (default 19).
    standardize : bool
        Standardise every feature with a mean and std fitted on training data.
    """

    kind: Literal["thesis", "physics"] = "thesis"
    max_objects: int = setting(DEFAULT_MAX_OBJECTS, ge=1)
    standardize: bool = False

    def __post_init__(self) -> None:
        check_config(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (inverse of :meth:`from_dict`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncodingConfig:
        """Build from :meth:`to_dict` output; unknown keys raise ConfigError."""
        return from_dict(cls, data)


@dataclasses.dataclass
class EncodedBatch(TensorBatch):
    """B events as model tensors (all on one device).

    Attributes
    ----------
    types : int64 [B, K]      class index 0..7 (0 = padding, 1..7 = j, b, e-, e+, m-, m+, g)
    features : float [B, K, 4] object features (see :class:`EncodingConfig`); zero for padding
    met : float [B, 2]        (log10 MET/GeV, METphi), standardised if configured
    weight : float [B]        event weights
    process : int64 [B]       process index
    """

    types: torch.Tensor
    features: torch.Tensor
    met: torch.Tensor
    weight: torch.Tensor
    process: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.features.device

    def one_hot(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``types`` as one-hot, float [B, K, 8] (dtype of ``features`` by default)."""
        oh = torch.nn.functional.one_hot(self.types, N_CLASSES)
        return oh.to(dtype or self.features.dtype)
