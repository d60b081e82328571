"""Jet azimuths in the allowed set (fastmc.models.flow.azimuth): known answers, exact inverse,
the mirror symmetry and the separation it builds in."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastmc.models.flow.azimuth import (
    exclusion_intervals,
    from_unit,
    gap_table,
    jet_rapidity,
    to_unit,
)

PI = math.pi
R = 0.6


def _random_harder(n_events: int, n_jets: int, seed: int) -> tuple[torch.Tensor, ...]:
    """Harder jets' azimuths (the first at s = pi, the leading jet), rapidity differences and
    presence, float64 [B, n]."""
    gen = torch.Generator().manual_seed(seed)
    s = (2 * torch.rand(n_events, n_jets, generator=gen, dtype=torch.float64) - 1) * PI
    s[:, 0] = PI
    dy = 0.4 * torch.randn(n_events, n_jets, generator=gen, dtype=torch.float64)
    present = torch.rand(n_events, n_jets, generator=gen) < 0.8
    return s, dy, present


def _brute_force_weight(grid: np.ndarray, lo, hi, valid, ramp, power: float) -> np.ndarray:
    """w(s) on a grid [G] for one row, written out independently: merge the intervals into
    their union; in each gap [a, b] between union components w = min(1, ((s - a) / rho_a) **
    power, ((b - s) / rho_b) ** power) with rho the ramp of the interval that makes that end
    (none at the seam +-pi); 0 inside the union."""
    items = sorted((float(lo[i]), float(hi[i]), float(ramp[i])) for i in range(len(lo)) if valid[i])
    comps: list[list[float]] = []  # [start, end, rho at start, rho at end]
    for a, b, r in items:
        if comps and a <= comps[-1][1]:
            if b > comps[-1][1]:
                comps[-1][1], comps[-1][3] = b, r
        else:
            comps.append([a, b, r, r])
    ends = [(-PI, 0.0)] + [(c[1], c[3]) for c in comps]
    starts = [(c[0], c[2]) for c in comps] + [(PI, 0.0)]
    w = np.zeros_like(grid)
    for (a, ra), (b, rb) in zip(ends, starts, strict=True):
        inside = (grid >= a) & (grid <= b)
        s = grid[inside]
        rise = np.minimum(1.0, (s - a) / ra) ** power if ra > 0 else np.ones_like(s)
        fall = np.minimum(1.0, (b - s) / rb) ** power if rb > 0 else np.ones_like(s)
        w[inside] = np.minimum(rise, fall)
    return w


@pytest.mark.parametrize(("width", "power"), [(0.0, 1.0), (0.1, 1.0), (0.5, 1.0), (0.2, 0.5), (0.3, 2.0)])
def test_unit_map_is_the_integral_of_the_weight(width: float, power: float) -> None:
    """Known answer: u(s) = integral of w up to s / its total, against a fine numerical grid."""
    s, dy, present = _random_harder(40, 5, seed=1)
    lo, hi, valid, ramp = exclusion_intervals(s, dy, present, radius=R, edge_width=width)
    gaps = gap_table(lo, hi, valid, ramp, edge_power=power)
    grid = np.linspace(-PI, PI, 200_001)
    step = grid[1] - grid[0]
    query = torch.linspace(-PI + 0.01, PI - 0.01, 37, dtype=torch.float64)
    for b in range(40):
        w = _brute_force_weight(grid, lo[b].numpy(), hi[b].numpy(), valid[b].numpy(), ramp[b].numpy(), power)
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * step)])
        row = {k: (v[b : b + 1].expand(len(query), -1) if v.dim() else v) for k, v in gaps.items()}
        u, total = to_unit(query, row)
        np.testing.assert_allclose(total.numpy(), cum[-1], atol=1e-3)
        expect = np.interp(query.numpy(), grid, cum) / cum[-1]
        np.testing.assert_allclose(u.numpy(), expect, atol=1e-3)


def test_ramp_width_follows_the_distance_to_the_harder_jet() -> None:
    """rho = sqrt((R + width)^2 - dy^2) - sqrt(R^2 - dy^2): the width itself head-on, wider
    for rows that cut the circle near its top."""
    dy = torch.tensor([[0.0, 0.3, 0.59]], dtype=torch.float64)
    _, _, valid, ramp = exclusion_intervals(torch.zeros_like(dy), dy, torch.ones_like(dy, dtype=torch.bool),
                                            radius=R, edge_width=0.1)
    assert valid[0, :3].all() and not valid[0, 3:].any()  # inside the circle; nothing wraps
    expect = np.sqrt(0.7**2 - dy.numpy() ** 2) - np.sqrt(R**2 - dy.numpy() ** 2)
    np.testing.assert_allclose(ramp[0, :3].numpy(), expect[0])
    assert float(ramp[0, 0]) == pytest.approx(0.1) and float(ramp[0, 2]) > 0.25


def test_without_exclusions_u_is_the_plain_azimuth() -> None:
    s = torch.linspace(-PI + 1e-9, PI, 101, dtype=torch.float64)
    none = torch.zeros(len(s), 3, dtype=torch.bool)
    gaps = gap_table(*exclusion_intervals(torch.zeros(len(s), 3, dtype=torch.float64),
                                          torch.zeros(len(s), 3, dtype=torch.float64), none, radius=R, edge_width=0.1))
    u, total = to_unit(s, gaps)
    np.testing.assert_allclose(total.numpy(), 2 * PI)
    np.testing.assert_allclose(u.numpy(), (s.numpy() + PI) / (2 * PI), atol=1e-15)
    np.testing.assert_allclose(from_unit(u, gaps).numpy(), s.numpy(), atol=1e-14)


def test_one_interval_known_answer() -> None:
    """One harder jet at s = 0 with dy = 0: the interval [-R, R]; with hard edges the allowed
    length is 2 pi - 2 R and u(s) = (s + pi) / (2 pi - 2 R) below it."""
    s0, dy = torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    gaps = gap_table(*exclusion_intervals(s0, dy, torch.ones(1, 1, dtype=torch.bool), radius=R))
    u, total = to_unit(torch.tensor([-1.0], dtype=torch.float64), gaps)
    assert float(total) == pytest.approx(2 * PI - 2 * R)
    assert float(u) == pytest.approx((PI - 1.0) / (2 * PI - 2 * R))
    # dy = 0.36: half-width sqrt(0.36 - 0.1296) = 0.48
    lo, _, _, _ = exclusion_intervals(s0, torch.full((1, 1), 0.36, dtype=torch.float64),
                                      torch.ones(1, 1, dtype=torch.bool), radius=R)
    assert float(lo[0, 0]) == pytest.approx(-0.48)
    # a ramp of width d at both edges takes d / 2 of weight from each side
    gaps = gap_table(*exclusion_intervals(s0, dy, torch.ones(1, 1, dtype=torch.bool), radius=R, edge_width=0.2))
    assert float(to_unit(torch.zeros(1, dtype=torch.float64) + 1.0, gaps)[1]) == pytest.approx(2 * PI - 2 * R - 0.2)


@pytest.mark.parametrize(("width", "power"), [(0.0, 1.0), (0.1, 1.0), (0.2, 0.5)])
def test_inverse_is_exact_and_lands_in_the_allowed_set(width: float, power: float) -> None:
    s, dy, present = _random_harder(5000, 6, seed=2)
    gaps = gap_table(*exclusion_intervals(s, dy, present, radius=R, edge_width=width), edge_power=power)
    gen = torch.Generator().manual_seed(5)
    u = torch.rand(5000, generator=gen, dtype=torch.float64)
    placed = from_unit(u, gaps)
    back, total = to_unit(placed, gaps)
    assert bool((total > 0).all())
    np.testing.assert_allclose(back.numpy(), u.numpy(), atol=1e-13)
    # never inside a harder jet's circle: dR(y, phi) >= R for every harder jet
    dphi = torch.remainder(placed[:, None] - s + PI, 2 * PI) - PI
    dr = torch.sqrt(dphi**2 + dy**2)
    assert bool((dr[present] >= R - 1e-12).all())
    # allowed azimuths map to u and back to themselves
    trial = (2 * torch.rand(5000, generator=gen, dtype=torch.float64) - 1) * PI
    dphi = torch.remainder(trial[:, None] - s + PI, 2 * PI) - PI
    ok = ~((torch.sqrt(dphi**2 + dy**2) < R) & present).any(dim=1)
    again = from_unit(to_unit(trial, gaps)[0], gaps)
    np.testing.assert_allclose(again[ok].numpy(), trial[ok].numpy(), atol=1e-12)


def test_mirror_symmetry() -> None:
    """(y, phi) -> (-y, -phi) of every jet maps u to 1 - u (so the parameter changes sign)."""
    s, dy, present = _random_harder(500, 5, seed=3)
    trial = (2 * torch.rand(500, generator=torch.Generator().manual_seed(1), dtype=torch.float64) - 1) * 3.1
    g1 = gap_table(*exclusion_intervals(s, dy, present, radius=R, edge_width=0.2), edge_power=0.5)
    mirrored = torch.where(s == PI, s, -s)  # the leading jet stays at the seam
    g2 = gap_table(*exclusion_intervals(mirrored, -dy, present, radius=R, edge_width=0.2), edge_power=0.5)
    u1, _ = to_unit(trial, g1)
    u2, _ = to_unit(-trial, g2)
    np.testing.assert_allclose(u2.numpy(), 1.0 - u1.numpy(), atol=1e-12)


def test_fully_excluded_row_is_reported() -> None:
    """Six harder jets at the same rapidity cover the whole circle: nothing is allowed (total 0)."""
    s = torch.tensor([[PI, -2.1, -1.05, 0.0, 1.05, 2.1]], dtype=torch.float64)
    gaps = gap_table(*exclusion_intervals(s, torch.zeros_like(s), torch.ones_like(s, dtype=torch.bool), radius=R,
                                          edge_width=0.1))
    _, total = to_unit(torch.zeros(1, dtype=torch.float64), gaps)
    assert float(total) == 0.0
    assert float(from_unit(torch.tensor([0.3], dtype=torch.float64), gaps)) == -PI


def test_rapidity_of_massless_and_massive_objects() -> None:
    eta = torch.tensor([0.0, 1.0, -2.0], dtype=torch.float64)
    np.testing.assert_allclose(jet_rapidity(eta, torch.zeros(3, dtype=torch.float64)).numpy(), eta.numpy())
    # E = pT cosh(eta) (1 + r): y = 0.5 log((E + pz) / (E - pz))
    r = torch.tensor([0.0, 0.3, 0.05], dtype=torch.float64)
    e, pz = torch.cosh(eta) * (1 + r), torch.sinh(eta)
    np.testing.assert_allclose(jet_rapidity(eta, r).numpy(), (0.5 * torch.log((e + pz) / (e - pz))).numpy(), atol=1e-14)
