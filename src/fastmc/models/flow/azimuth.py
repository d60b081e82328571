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
is 1 in the middle of a gap and falls to 0 at every exclusion edge as ``(d / rho) **
edge_power`` (d the azimuthal distance to the edge, for d < rho).  The ramp width rho of an
edge is where the (y, phi) distance to its harder jet reaches R + ``edge_width``: ``rho =
sqrt((R + width)^2 - dy^2) - sqrt(R^2 - dy^2)``, so ``edge_width`` for a jet at the same
rapidity and wider for rows that cut the circle near its top (there a step in phi moves the
distance to the jet little).  The density of a jet next to a harder one vanishes at distance R
in Monte Carlo, so a flow that draws u with a density that is flat near the edge reproduces
the edge by construction (``docs/results.md``).  At the seam s = +-pi, when it is not
excluded, w does not fall.  ``edge_width = 0`` gives w = 1 (hard exclusion only).  Without
exclusions u = (s + pi) / (2 pi), the plain azimuth.

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
    s: torch.Tensor, dy: torch.Tensor, present: torch.Tensor, *, radius: float | torch.Tensor,
    edge_width: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The excluded azimuth intervals around harder jets, split at the seam, and their ramps.

    ``s`` [..., n]: the harder jets' azimuths in (-pi, pi]; ``dy`` [..., n]: rapidity
    differences to the jet being placed; ``present`` bool [..., n]: which of the n count;
    ``radius`` a float or a tensor that broadcasts against ``dy`` (e.g. [..., 1]).
    Returns ``lo``, ``hi`` [..., 2 n] (inside [-pi, pi]), ``valid`` bool [..., 2 n] and
    ``ramp`` [..., 2 n] (radians): each harder jet gives ``[s - h, s + h]`` with ``h = sqrt(R^2
    - dy^2)`` (when |dy| < R), the part beyond +-pi wrapped to the other end as a second
    interval, and the ramp width ``sqrt((R + edge_width)^2 - dy^2) - h`` of its edges.
    """
    pi = math.pi
    h2 = radius * radius - dy * dy
    on = present & (h2 > 0)
    h = h2.clamp_min(0).sqrt()
    outer = (radius + edge_width) ** 2 - dy * dy
    ramp = torch.where(on, outer.clamp_min(0).sqrt() - h, torch.zeros_like(h)) if edge_width > 0 else torch.zeros_like(h)
    lo, hi = s - h, s + h
    lo_a, hi_a = lo.clamp(min=-pi), hi.clamp(max=pi)
    wrap_low = on & (lo < -pi)
    wrap_high = on & (hi > pi)
    lo_b = torch.where(wrap_low, lo + 2 * pi, torch.full_like(lo, -pi))
    hi_b = torch.where(wrap_low, torch.full_like(hi, pi), hi - 2 * pi)
    valid_b = wrap_low | wrap_high
    return (
        torch.cat([lo_a, lo_b], dim=-1),
        torch.cat([hi_a, hi_b], dim=-1),
        torch.cat([on, valid_b], dim=-1),
        torch.cat([ramp, ramp], dim=-1),
    )


def gap_table(
    lo: torch.Tensor, hi: torch.Tensor, valid: torch.Tensor, ramp: torch.Tensor, *, edge_power: float = 1.0
) -> dict[str, torch.Tensor]:
    """The allowed gaps of [-pi, pi] between the union of intervals, with their weights.

    ``lo``, ``hi``, ``valid``, ``ramp`` [..., m] from :func:`exclusion_intervals`.  Returns a
    dict of [..., m + 1] tensors: ``a`` (gap start), ``length`` (>= 0; empty gaps have 0),
    ``ramp_a``, ``ramp_b`` (the extent of the falling weight at the two ends: the edge's ramp
    width, less where the two ramps meet in a short gap; 0 at the seam), ``scale_a``,
    ``scale_b`` (integral of w over the first d of a ramp = scale d^(power + 1)), ``weight``
    (integral of w over the gap) and ``before`` (sum of the weights of the earlier gaps).
    """
    pi = math.pi
    # invalid intervals become [-pi, -pi]: empty, sorted first
    lo = torch.where(valid, lo, torch.full_like(lo, -pi))
    hi = torch.where(valid, hi, torch.full_like(hi, -pi))
    order = torch.argsort(lo, dim=-1, stable=True)
    lo, hi, valid, ramp = (v.gather(-1, order) for v in (lo, hi, valid, ramp))
    cummax, arg = torch.cummax(hi, dim=-1)
    start = torch.cat([torch.full_like(lo[..., :1], -pi), cummax], dim=-1)  # left ends
    end = torch.cat([lo, torch.full_like(lo[..., :1], pi)], dim=-1)  # right ends
    zero = torch.zeros_like(ramp[..., :1])
    seen = torch.cumsum(valid.long(), dim=-1) > 0
    # the left end of gap i is the end of the interval reaching furthest among the first i
    rho_a = torch.cat([zero, torch.where(seen, ramp.gather(-1, arg), 0.0)], dim=-1)
    rho_b = torch.cat([torch.where(valid, ramp, 0.0), zero], dim=-1)
    length = (end - start).clamp_min(0)
    both = rho_a + rho_b
    fits = both <= length
    share = length / torch.where(both > 0, both, torch.ones_like(both))
    ramp_a = torch.where(fits, rho_a, rho_a * share)  # two ramps meet where they are equal
    ramp_b = torch.where(fits, rho_b, rho_b * share)
    q = edge_power + 1.0

    def scale(rho: torch.Tensor) -> torch.Tensor:
        return torch.where(rho > 0, 1.0 / (q * torch.where(rho > 0, rho, 1.0) ** edge_power), 0.0)

    scale_a, scale_b = scale(rho_a), scale(rho_b)
    weight = scale_a * ramp_a**q + scale_b * ramp_b**q + (length - ramp_a - ramp_b).clamp_min(0)
    before = torch.cumsum(weight, dim=-1) - weight
    return {"a": start, "length": length, "ramp_a": ramp_a, "ramp_b": ramp_b, "scale_a": scale_a,
            "scale_b": scale_b, "weight": weight, "before": before, "q": torch.tensor(q, dtype=lo.dtype)}


def _partial(t: torch.Tensor, g: dict[str, torch.Tensor]) -> torch.Tensor:
    """Integral of w from a gap's start to ``t`` (0 <= t <= length) in it, elementwise."""
    q = g["q"]
    ra, rb, length = g["ramp_a"], g["ramp_b"], g["length"]
    rising = g["scale_a"] * t**q
    flat = g["scale_a"] * ra**q + (t - ra)
    rest = (length - t).clamp_min(0)
    falling = g["weight"] - g["scale_b"] * rest**q
    return torch.where(t < ra, rising, torch.where(t <= length - rb, flat, falling))


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
    q = pick["q"]
    ra, rb, length, weight = pick["ramp_a"], pick["ramp_b"], pick["length"], pick["weight"]
    sa, sb = pick["scale_a"], pick["scale_b"]
    cc = torch.minimum((c - pick["before"]).clamp(min=0.0), weight)
    first = sa * ra**q
    t_rise = (cc / torch.where(sa > 0, sa, 1.0)).clamp_min(0) ** (1.0 / q)
    t_flat = ra + (cc - first)
    t_fall = length - ((weight - cc) / torch.where(sb > 0, sb, 1.0)).clamp_min(0) ** (1.0 / q)
    t = torch.where(cc < first, t_rise, torch.where(cc <= weight - sb * rb**q, t_flat, t_fall))
    t = torch.minimum(t.clamp_min(0), length)
    return torch.where(total > 0, pick["a"] + t, torch.full_like(t, -math.pi))
