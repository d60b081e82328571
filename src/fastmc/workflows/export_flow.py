"""ONNX export of the flow's sampling network (used by :mod:`fastmc.workflows.export`).

Kept apart from the VAE export so that a rework of :mod:`fastmc.models.flow` adapts this
file only.  The graph is the deterministic heart of ``FlowModel.sample``:

    input  ``pattern``      int64 [B]        object pattern index, drawn by the caller from
                                             the model's pattern distribution (the
                                             ``structure.*`` tensors of weights.safetensors)
           ``z``            float32 [B, D]   standard-normal base noise
    output ``x``            float32 [B, D]   the physics parameters (de-standardised flow
                                             output), laid out by the model's SlotLayout
           ``slot_types``   int64 [B, S]     the object type of every slot of the pattern

Inside: pattern -> slot types -> flow context (pattern embedding, object counts) -> the
inverse of every autoregressive rational-quadratic spline transform, block by block
(zuko's bin search ``sum(knots < x)`` exports as plain comparisons and a ReduceSum) -> x.

Not in the graph, to do on the caller's side (docs/onnx.md): drawing the pattern (a
categorical draw), the reference azimuth and the decoding of ``x`` into four-vectors
(``Parameterisation.decode``: angles relative to the reference or, with ``jet_azimuth:
allowed``, jet by jet in the azimuths the harder jets allow; masses; the validity mask of the
events to reject whole) and, with ``canonical_eta_sign``, the orientation of each event.  The
model's process or parameter-point conditioning is not an input of the graph: the export is
refused for multi-process and parameter-conditioned models.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["FlowSampler", "flow_spec"]


class FlowSampler(torch.nn.Module):
    """The flow from (pattern, base noise) to its physics parameters: traceable."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, pattern: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        slot_types = m._slot_types(pattern)
        x = m._inverse(m.context(slot_types, pattern), z)
        return x * m.x_std + m.x_mean, slot_types.long()


def _inputs(model: Any, n: int) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    pattern = model._require_fitted().sample(n, generator=gen).long()
    return {"pattern": pattern, "z": torch.randn(n, model.layout.dim, generator=gen)}


def flow_spec(model: Any) -> dict[str, Any]:
    """What :func:`fastmc.workflows.export.export_onnx` needs to export ``model``."""
    if getattr(model, "velocity", None) is not None:
        from fastmc.errors import ConfigError

        raise ConfigError(
            "ONNX export covers the spline modes (autoregressive, coupling) of the flow; a "
            "model trained with mode: matching is not exported (generate with fastmc generate)"
        )
    if len(model.processes) > 1 or model.param_conditional:
        from fastmc.errors import ConfigError

        raise ConfigError(
            f"ONNX export covers one-process flows; this model is conditioned on "
            f"{'parameter points' if model.param_conditional else 'processes'} "
            f"({', '.join(model.processes)}), which the graph has no input for: generate with "
            "fastmc generate --process/--cocktail"
        )
    dim, slots = model.layout.dim, model.layout.n_slots
    return {
        "module": FlowSampler(model),
        "inputs": {"pattern": ["B"], "z": ["B", dim]},
        "outputs": {"x": ["B", dim], "slot_types": ["B", slots]},
        "example": _inputs(model, 4),
        "check_inputs": lambda spec, n: _inputs(model, n),
        "not_exported": [
            "pattern sampling (categorical draw over the model's patterns)",
            "reference azimuth draw and Parameterisation.decode (x -> four-vectors; jet "
            "azimuths in the allowed set with jet_azimuth: allowed; the mask of events to "
            "reject whole for jet separation)",
            "the orientation draw of canonical_eta_sign models",
        ],
        "meta": {"dim": dim, "slots": slots, "input_z": "standard-normal base noise",
                 "input_pattern": "pattern index from the model's pattern distribution"},
    }
