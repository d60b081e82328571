"""The structure-first flow family: the model (:mod:`.model`), its physics parameterisation
(:mod:`.physics`, :mod:`.separation`, :mod:`.symmetry`), its settings (:mod:`.config`), the
fast sampling inverse (:mod:`.inverse`) and the pattern sampler (:mod:`.structure`)."""

from __future__ import annotations

from fastmc.models.flow.model import FlowConfig, FlowModel

__all__ = ["FlowConfig", "FlowModel"]
