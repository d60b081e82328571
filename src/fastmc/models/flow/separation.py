"""Jet separation for decoded events: no two jets closer than a radius in (eta, phi).

Used by :meth:`fastmc.models.flow.physics.Parameterisation.decode`.  Jets are visited in pT order;
a jet closer than ``radius`` to a harder jet moves to the nearest free candidate position:
the radial pushes of its position out of each harder jet's radius, else the nearest free
point of a fixed (eta, phi) grid.  Harder jets never move, so by induction every pair ends at
least ``radius`` apart (unless the grid has no free point, which the returned count reports).
The step is the identity on events whose jets are already separated.
"""

from __future__ import annotations

import math

import torch

from fastmc.kinematics import wrap_angle

__all__ = ["close_jet_pairs", "separate_jets", "wrap_angle"]

ETA_CLAMP = 1.0 - 1e-7


def close_jet_pairs(
    eta: torch.Tensor, phi: torch.Tensor, present: torch.Tensor, *, n_jets: int, radius: float
) -> torch.Tensor:
    """bool [B, J, J]: pairs (k, i), i < k, of present jets closer than ``radius``.

    ``eta``, ``phi`` [B, S] (radians), ``present`` bool [B, S]; jets are the first ``n_jets``
    slots, in descending pT.
    """
    eta, phi = eta[:, :n_jets].double(), phi[:, :n_jets].double()
    de = eta[:, :, None] - eta[:, None, :]
    dp = wrap_angle(phi[:, :, None] - phi[:, None, :])
    close = de * de + dp * dp < radius**2
    both = present[:, :n_jets, None] & present[:, None, :n_jets]
    lower = torch.ones(n_jets, n_jets, dtype=torch.bool, device=eta.device).tril(-1)
    return close & both & lower


def _grid(emax: float, dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (eta, phi) grid [1, 81 * 128] of candidate jet positions."""
    ge = torch.linspace(-emax, emax, 81, dtype=torch.float64, device=dev)
    gp = torch.linspace(-math.pi, math.pi, 129, dtype=torch.float64, device=dev)[1:]
    gge, ggp = torch.meshgrid(ge, gp, indexing="ij")
    return gge.reshape(1, -1), ggp.reshape(1, -1)


def separate_jets(
    eta: torch.Tensor,
    phi: torch.Tensor,
    present: torch.Tensor,
    *,
    n_jets: int,
    radius: float,
    eta_max: float,
) -> tuple[torch.Tensor, int, int]:
    """Place every jet at least ``radius`` from all harder jets (see the module docstring).

    ``eta`` float32 [B, S] (modified in place), ``phi`` float64 [B, S] radians, ``present``
    bool [B, S]; jets are the first ``n_jets`` slots in descending pT and stay within
    ``|eta| <= eta_max``.  Returns the new phi, the number of jets moved and the number of jet
    pairs still closer than ``radius`` (0 unless a region is completely full).
    """
    nj = n_jets
    r = radius
    if nj < 2 or r <= 0 or not bool(close_jet_pairs(eta, phi, present, n_jets=nj, radius=r).any()):
        return phi, 0, 0
    target = r * (1.0 + 1e-4)
    emax = eta_max * ETA_CLAMP
    dev = phi.device
    eta64 = eta.double()
    moved = 0

    def free(ce: torch.Tensor, cp: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
        # candidates [b, c]; True where at least target*(1-1e-5) from every harder jet
        de = ce[:, :, None] - eta64[rows, None, :k]
        dp = wrap_angle(cp[:, :, None] - phi[rows, None, :k])
        ok = (de * de + dp * dp >= (r * (1 + 5e-5)) ** 2) | ~present[rows, None, :k]
        return ok.all(dim=2)

    for k in range(1, nj):
        de = eta64[:, k : k + 1] - eta64[:, :k]
        dp = wrap_angle(phi[:, k : k + 1] - phi[:, :k])
        close = (de * de + dp * dp < r * r) & present[:, :k] & present[:, k : k + 1]
        rows = close.any(dim=1).nonzero()[:, 0]
        if not len(rows):
            continue
        moved += len(rows)
        pe, pp = eta64[rows, k], phi[rows, k]
        de, dp = de[rows], dp[rows]
        dr = torch.sqrt(de * de + dp * dp)
        unit_e = torch.where(dr > 1e-12, de / dr.clamp_min(1e-12), torch.zeros_like(de))
        unit_p = torch.where(dr > 1e-12, dp / dr.clamp_min(1e-12), torch.ones_like(dp))
        ce = (eta64[rows, :k] + target * unit_e).clamp(-emax, emax)
        cp = wrap_angle(phi[rows, :k] + target * unit_p)
        ok = free(ce, cp, rows, k) & present[rows, :k]
        dist = (ce - pe[:, None]) ** 2 + wrap_angle(cp - pp[:, None]) ** 2
        dist = torch.where(ok, dist, torch.full_like(dist, math.inf))
        best = dist.argmin(dim=1)
        found = ok.any(dim=1)
        new_e = torch.where(found, ce.gather(1, best[:, None])[:, 0], pe)
        new_p = torch.where(found, cp.gather(1, best[:, None])[:, 0], pp)
        stuck = (~found).nonzero()[:, 0]
        for chunk in stuck.split(64):  # rare: search a fixed grid for the nearest free point
            ge, gp = _grid(emax, dev)
            sub = rows[chunk]
            gok = free(ge.expand(len(sub), -1), gp.expand(len(sub), -1), sub, k)
            gd = (ge - pe[chunk, None]) ** 2 + wrap_angle(gp - pp[chunk, None]) ** 2
            gd = torch.where(gok, gd, torch.full_like(gd, math.inf))
            gbest = gd.argmin(dim=1)
            gfound = gok.any(dim=1)
            new_e[chunk] = torch.where(gfound, ge[0, gbest], pe[chunk])
            new_p[chunk] = torch.where(gfound, gp[0, gbest], pp[chunk])
        eta64[rows, k] = new_e
        phi[rows, k] = new_p
    eta.copy_(eta64.float())
    left = int(close_jet_pairs(eta, phi.float(), present, n_jets=nj, radius=r).sum())
    return phi, moved, left
