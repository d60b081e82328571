"""Jet separation: which pairs of jets are closer than a radius in (eta, phi).

Used by :meth:`fastmc.models.flow.physics.Parameterisation.decode` to mark generated events
whose jets are not all separated by the jet radius; the flow rejects those events whole (and
counts them).  No jet is ever moved.
"""

from __future__ import annotations

import torch

from fastmc.kinematics import wrap_angle

__all__ = ["close_jet_pairs", "wrap_angle"]


def close_jet_pairs(
    eta: torch.Tensor, phi: torch.Tensor, present: torch.Tensor, *, n_jets: int, radius: float
) -> torch.Tensor:
    """bool [B, J, J]: pairs (k, i), i < k, of present jets closer than ``radius``.

    ``eta``, ``phi`` [B, S] (radians; compared in float64), ``present`` bool [B, S]; jets are
    the first ``n_jets`` slots, in descending pT.
    """
    eta, phi = eta[:, :n_jets].double(), phi[:, :n_jets].double()
    de = eta[:, :, None] - eta[:, None, :]
    dp = wrap_angle(phi[:, :, None] - phi[:, None, :])
    close = de * de + dp * dp < radius**2
    both = present[:, :n_jets, None] & present[:, None, :n_jets]
    lower = torch.ones(n_jets, n_jets, dtype=torch.bool, device=eta.device).tril(-1)
    return close & both & lower
