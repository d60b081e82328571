"""Jet separation: which pairs of jets are closer than a radius in (eta, phi).

Used by :meth:`fastmc.models.flow.physics.Parameterisation.decode` to mark generated events
whose jets are not all separated by the jet radius; the flow rejects those events whole (and
counts them).  No jet is ever moved.
"""

from __future__ import annotations

import functools
import math

import torch

from fastmc.kinematics import wrap_angle

__all__ = ["close_jet_pairs", "jets_separated", "wrap_angle"]


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


@functools.cache
def _pairs(n_jets: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    i, k = torch.triu_indices(n_jets, n_jets, 1, device=device)
    return i, k


def jets_separated(
    eta: torch.Tensor, phi: torch.Tensor, present: torch.Tensor, *, n_jets: int, radius: float
) -> torch.Tensor:
    """bool [B]: every pair of present jets at least ``radius`` apart (no pair of
    :func:`close_jet_pairs`), computed over the ``J (J - 1) / 2`` pairs only.

    Same arguments as :func:`close_jet_pairs`; compared in float64, with the azimuthal
    difference folded as ``min(|dphi|, 2 pi - |dphi|)`` (the same distance as wrapping it into
    (-pi, pi], up to float64 rounding).
    """
    if n_jets < 2:
        return torch.ones(eta.shape[0], dtype=torch.bool, device=eta.device)
    i, k = _pairs(n_jets, eta.device)
    eta, phi = eta[:, :n_jets].double(), phi[:, :n_jets].double()
    de = eta[:, k] - eta[:, i]
    dp = (phi[:, k] - phi[:, i]).abs()
    dp = torch.minimum(dp, 2 * math.pi - dp)
    close = (de * de + dp * dp < radius**2) & present[:, k] & present[:, i]
    return ~close.any(dim=1)
