"""Jet azimuths inside the allowed set: jet separation by construction (issue 13).

Anti-kT jets of radius R are at least R apart in rapidity y and azimuth phi.  With
``jet_azimuth: allowed`` (:class:`~fastmc.models.flow.config.FlowConfig`) the parameterisation
builds this in.  Jets are placed in slot order (descending pT).  For jet k every harder jet j
with ``|y_k - y_j| < R`` excludes the azimuths ``|phi - phi_j| < h_j = sqrt(R^2 - (y_k -
y_j)^2)``, so every allowed azimuth keeps jet k at least R from every harder jet; the union
of these intervals is taken out of the circle and what is left (the *gaps*) is mapped
monotonically onto (0, 1):

    u(s) = C(s) / C(pi),    C(s) = integral from -pi to s of w(t) dt over the gaps,

with ``s = wrap(phi - phi_ref + pi)`` in (-pi, pi] the azimuth the other parameterisation uses
(``phi_ref`` the event's first object, the leading jet, which sits at s = pi).  The weight w
is 1 in the middle of a gap and falls to 0 at every exclusion edge as ``(d / edge_width) **
edge_power`` (d the distance to the edge in radians, for d < edge_width).  The density of a
jet next to a harder one vanishes at distance R in Monte Carlo, and in Pythia ttbar it rises
from there as sqrt(d / 0.2) (measured: ``docs/results.md``), so with the defaults (0.2, 0.5) a
flow that draws u with a density that is flat near the edge reproduces the edge by
construction.  At the seam s = +-pi, when it is not excluded, w does not fall.  ``edge_width =
0`` gives w = 1 (hard exclusion only).  Without exclusions u = (s + pi) / (2 pi), the plain
azimuth.

Every map here is exact in float64 in both directions (piecewise powers, solved in closed
form).  Shapes: any leading batch dimensions ``[...]``; angles in radians.
"""

from __future__ import annotations

import math

import torch

__all__ = ["exclusion_intervals", "from_unit", "gap_table", "jet_rapidity", "to_unit"]


def jet_rapidity(eta: torch.Tensor, mass_ratio: torch.Tensor) -> torch.Tensor:
    """Rapidity y of objects with pseudorapidity ``eta`` and ``mass_ratio`` = E / (pT cosh eta)
    - 1 (>= 0): ``y = atanh(tanh(eta) / (1 + mass_ratio))``.  Any shape, float64 advised."""
    return torch.atanh(torch.tanh(eta) / (1.0 + mass_ratio))


def exclusion_intervals(
    s: torch.Tensor, dy: torch.Tensor, present: torch.Tensor, *, radius: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The excluded azimuth intervals around harder jets, split at the seam.

    ``s`` [..., n]: the harder jets' azimuths in (-pi, pi]; ``dy`` [..., n]: rapidity
    differences to the jet being placed; ``present`` bool [..., n]: which of the n count.
    Returns ``lo``, ``hi`` [..., 2 n] (inside [-pi, pi]) and ``valid`` bool [..., 2 n]: each
    harder jet gives ``[s - h, s + h]`` with ``h = sqrt(R^2 - dy^2)`` (when |dy| < R), the part
    beyond +-pi wrapped to the other end as a second interval.
    """
    pi = math.pi
    h2 = radius * radius - dy * dy
    on = present & (h2 > 0)
    h = h2.clamp_min(0).sqrt()
    lo, hi = s - h, s + h
    lo_a, hi_a = lo.clamp(min=-pi), hi.clamp(max=pi)
    wrap_low = on & (lo < -pi)
    wrap_high = on & (hi > pi)
    lo_b = torch.where(wrap_low, lo + 2 * pi, torch.full_like(lo, -pi))
    hi_b = torch.where(wrap_low, torch.full_like(hi, pi), hi - 2 * pi)
    valid_b = wrap_low | wrap_high
    lo_out = torch.cat([lo_a, lo_b], dim=-1)
    hi_out = torch.cat([hi_a, hi_b], dim=-1)
    valid = torch.cat([on, valid_b], dim=-1)
    return lo_out, hi_out, valid


def gap_table(
    lo: torch.Tensor, hi: torch.Tensor, valid: torch.Tensor, *, edge_width: float, edge_power: float = 1.0
) -> dict[str, torch.Tensor]:
    """The allowed gaps of [-pi, pi] between the union of intervals, with their weights.

    ``lo``, ``hi``, ``valid`` [..., m] from :func:`exclusion_intervals`.  Returns a dict of
    [..., m + 1] tensors: ``a`` (gap start), ``length`` (>= 0; empty gaps have 0), ``ramp_a``,
    ``ramp_b`` (ramp widths at the two ends, 0 at the seam), ``weight`` (integral of w over the
    gap) and ``before`` (sum of the weights of the earlier gaps).
    """
    pi = math.pi
    # invalid intervals become [-pi, -pi]: empty, sorted first
    lo = torch.where(valid, lo, torch.full_like(lo, -pi))
    hi = torch.where(valid, hi, torch.full_like(hi, -pi))
    order = torch.argsort(lo, dim=-1, stable=True)
    lo, hi, valid = lo.gather(-1, order), hi.gather(-1, order), valid.gather(-1, order)
    cummax = torch.cummax(hi, dim=-1).values
    start = torch.cat([torch.full_like(lo[..., :1], -pi), cummax], dim=-1)  # left ends
    end = torch.cat([lo, torch.full_like(lo[..., :1], pi)], dim=-1)  # right ends
    seen = torch.cumsum(valid.long(), dim=-1) > 0
    edge_a = torch.cat([torch.zeros_like(seen[..., :1]), seen], dim=-1)
    edge_b = torch.cat([valid, torch.zeros_like(valid[..., :1])], dim=-1)
    length = (end - start).clamp_min(0)
    q = edge_power + 1.0
    if edge_width > 0:
        half = torch.where(edge_a & edge_b, 0.5 * length, length)
        ramp_a = torch.where(edge_a, half.clamp(max=edge_width), torch.zeros_like(length))
        ramp_b = torch.where(edge_b, half.clamp(max=edge_width), torch.zeros_like(length))
        scale = 1.0 / (q * edge_width**edge_power)  # integral of (d / width)^p is scale d^q
    else:
        ramp_a = ramp_b = torch.zeros_like(length)
        scale = 0.0
    weight = scale * (ramp_a**q + ramp_b**q) + (length - ramp_a - ramp_b)
    before = torch.cumsum(weight, dim=-1) - weight
    return {"a": start, "length": length, "ramp_a": ramp_a, "ramp_b": ramp_b,
            "weight": weight, "before": before, "scale": torch.tensor(scale, dtype=lo.dtype),
            "q": torch.tensor(q, dtype=lo.dtype)}


def _partial(t: torch.Tensor, g: dict[str, torch.Tensor]) -> torch.Tensor:
    """Integral of w from a gap's start to ``t`` (0 <= t <= length) in it, elementwise."""
    scale, q = g["scale"], g["q"]
    ra, rb, length = g["ramp_a"], g["ramp_b"], g["length"]
    plateau_end = length - rb
    rising = scale * t**q
    flat = scale * ra**q + (t - ra)
    rest = (length - t).clamp_min(0)
    falling = g["weight"] - scale * rest**q
    return torch.where(t < ra, rising, torch.where(t <= plateau_end, flat, falling))


def to_unit(s: torch.Tensor, g: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``u`` in [0, 1] of azimuths ``s`` [...] (radians, in (-pi, pi]) and the total weight
    [...] of the allowed set (0 when everything is excluded); ``g`` from :func:`gap_table`
    with one more trailing dimension.  An ``s`` inside an excluded interval maps to the edge."""
    t = (s[..., None] - g["a"]).clamp_min(0)
    t = torch.minimum(t, g["length"])
    c = _partial(t, g).sum(dim=-1)
    total = g["weight"].sum(dim=-1)
    u = torch.where(total > 0, c / torch.where(total > 0, total, torch.ones_like(total)), 0.5 * torch.ones_like(c))
    return u.clamp(0.0, 1.0), total


def from_unit(u: torch.Tensor, g: dict[str, torch.Tensor]) -> torch.Tensor:
    """Azimuths ``s`` [...] in [-pi, pi] of ``u`` [...] in [0, 1]: the inverse of
    :func:`to_unit` (exact up to float64 rounding where the total weight is positive; where it
    is 0, -pi)."""
    total = g["weight"].sum(dim=-1)
    c = u * total
    end = g["before"] + g["weight"]
    n = g["weight"].shape[-1]
    nonempty = g["weight"] > 0
    # the first non-empty gap whose cumulative end exceeds c (the last non-empty gap at c = total)
    beyond = (end > c[..., None]) & nonempty
    last = n - 1 - torch.argmax(torch.flip(nonempty, dims=[-1]).long(), dim=-1)
    idx = torch.where(beyond.any(dim=-1), torch.argmax(beyond.long(), dim=-1), last)[..., None]
    pick = {k: (v.gather(-1, idx)[..., 0] if v.dim() else v) for k, v in g.items()}
    scale, inv_q = pick["scale"], 1.0 / pick["q"]
    ra, rb, length, weight = pick["ramp_a"], pick["ramp_b"], pick["length"], pick["weight"]
    cc = (c - pick["before"]).clamp(min=0.0)
    cc = torch.minimum(cc, weight)
    first = scale * ra ** pick["q"]
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    t_rise = (cc / safe).clamp_min(0) ** inv_q
    t_flat = ra + (cc - first)
    t_fall = length - ((weight - cc) / safe).clamp_min(0) ** inv_q
    t = torch.where(cc < first, t_rise, torch.where(cc <= weight - scale * rb ** pick["q"], t_flat, t_fall))
    t = torch.minimum(t.clamp_min(0), length)
    return torch.where(total > 0, pick["a"] + t, torch.full_like(t, -math.pi))
