"""The training-data symmetries of the flow: the mirror (eta, phi, METphi) -> (-eta, -phi,
-METphi) and the reflection (phi, METphi) -> (-phi, -METphi)."""

from __future__ import annotations

import math

import torch

from fastmc.data.batch import RawBatch
from fastmc.models.flow.symmetry import mirror_events, reflect_events


def _batch(n: int = 4000) -> RawBatch:
    g = torch.Generator().manual_seed(3)
    types = torch.zeros(n, 19, dtype=torch.long)
    types[:, :3] = 1
    p4 = torch.zeros(n, 19, 4)
    p4[:, :3, 1] = 50 + 100 * torch.rand(n, 3, generator=g)
    p4[:, :3, 2] = 0.5 + torch.rand(n, 3, generator=g)  # all eta > 0: maximally asymmetric
    p4[:, :3, 3] = math.pi - 2 * math.pi * torch.rand(n, 3, generator=g)
    p4[:, 0, 3] = math.pi  # the edge of (-pi, pi]
    p4[:, :3, 0] = p4[:, :3, 1] * torch.cosh(p4[:, :3, 2])
    return RawBatch(types=types, p4=p4, met=torch.full((n,), 30.0), met_phi=torch.full((n,), math.pi),
                    weight=torch.ones(n), process=torch.zeros(n, dtype=torch.long))


def test_mirror_flips_exactly_the_chosen_events_and_keeps_everything_else():
    raw = _batch()
    choose = torch.rand(len(raw), generator=torch.Generator().manual_seed(0)) < 0.5
    out = mirror_events(raw, choose)
    flipped = out.p4[:, 1, 2] < 0
    assert torch.equal(flipped, choose)
    assert torch.equal(out.p4[..., :2], raw.p4[..., :2])  # E, pT untouched
    assert torch.equal(out.p4[..., 2].abs(), raw.p4[..., 2].abs())
    phi = out.p4[..., 3]
    assert bool(((phi > -math.pi) & (phi <= math.pi)).all())
    assert bool(((out.met_phi > -math.pi) & (out.met_phi <= math.pi)).all())
    # padding stays exactly +0 (no -0.0 that a writer would print as "-0")
    assert not torch.signbit(out.p4[:, 3:]).any()
    # dR between objects is unchanged
    def dr(p):
        dphi = torch.remainder(p[:, 0, 3] - p[:, 1, 3] + math.pi, 2 * math.pi) - math.pi
        return torch.hypot(p[:, 0, 2] - p[:, 1, 2], dphi)
    torch.testing.assert_close(dr(out.p4), dr(raw.p4))
    # twice is the identity (phi = pi maps to pi, not -pi)
    back = mirror_events(out, choose)
    assert torch.equal(back.p4, raw.p4) and torch.equal(back.met_phi, raw.met_phi)


def test_reflection_flips_only_the_azimuths_of_the_chosen_events():
    raw = _batch()
    choose = torch.rand(len(raw), generator=torch.Generator().manual_seed(1)) < 0.5
    out = reflect_events(raw, choose)
    assert torch.equal(out.p4[..., :3], raw.p4[..., :3])  # E, pT, eta untouched
    inner = raw.p4[:, 1:3, 3].abs() < math.pi - 1e-3  # away from the edge
    changed = (out.p4[:, 1:3, 3] != raw.p4[:, 1:3, 3]) & inner
    assert torch.equal(changed.any(1), choose & inner.any(1))
    torch.testing.assert_close(out.p4[choose][:, 1:3, 3], -raw.p4[choose][:, 1:3, 3])
    phi = out.p4[..., 3]
    assert bool(((phi > -math.pi) & (phi <= math.pi)).all())
    assert torch.equal(out.met_phi, raw.met_phi)  # pi reflects to pi
    assert not torch.signbit(out.p4[:, 3:]).any()
    def dr(p, i, j):
        dphi = torch.remainder(p[:, i, 3] - p[:, j, 3] + math.pi, 2 * math.pi) - math.pi
        return torch.hypot(p[:, i, 2] - p[:, j, 2], dphi)
    for i, j in ((0, 1), (1, 2)):
        torch.testing.assert_close(dr(out.p4, i, j), dr(raw.p4, i, j))
    back = reflect_events(out, choose)
    assert torch.equal(back.p4, raw.p4) and torch.equal(back.met_phi, raw.met_phi)
