"""The structure-first flow family: the model (:mod:`.model`), its physics parameterisation
(:mod:`.physics`, :mod:`.separation`) and the pattern sampler (:mod:`.structure`)."""

from __future__ import annotations

from fastmc.models.flow.model import FlowConfig, FlowModel

__all__ = ["FlowConfig", "FlowModel"]
