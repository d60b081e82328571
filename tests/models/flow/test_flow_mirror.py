"""The training-data mirror of the flow: (eta, phi, METphi) -> (-eta, -phi, -METphi)."""

from __future__ import annotations

import math

import torch

from fastmc.data.batch import RawBatch
from fastmc.models.flow.symmetry import mirror_events


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
