"""Boundary pile-ups, shared events and memorisation (``fastmc.evaluate.checks``)."""

from __future__ import annotations

import numpy as np
import pytest
from defects import dr_pileup
from evalsynth import read_real

from fastmc.evaluate.checks import boundary_checks, memorisation, shared_events
from fastmc.events import PT


@pytest.fixture(scope="module")
def real(data_dir):
    ev = read_real(data_dir / "sqsq1_sq1400_neut800_chan1.csv")
    perm = np.random.default_rng(3).permutation(len(ev))
    n = len(ev) // 3
    return ev[np.sort(perm[:n])], ev[np.sort(perm[n : 2 * n])], ev[np.sort(perm[2 * n :])]


def test_boundary_checks_see_pileups_and_not_a_second_sample(real):
    a, b, _ = real
    same = boundary_checks(a, b)
    assert same["flagged"] == [] and same["jet_radius"] == 0.6
    assert same["closest_pair_near_radius"]["n_reference"] == len(a)  # chan1: >= 4 jets everywhere
    piled = boundary_checks(a, dr_pileup(b, np.random.default_rng(0), share=0.2))
    near = piled["closest_pair_near_radius"]
    assert "closest_pair_near_radius" in piled["flagged"] and near["generated"] > 0.15 > 0.05 > near["reference"]
    # every jet clamped at the reference's smallest pT: a pile-up at the threshold
    clamped = b[np.arange(len(b))]
    jets = clamped.mask("j", "b")
    lo = float(a.p4[..., PT][a.mask("j", "b")].min())
    scale = np.where(jets & (clamped.p4[..., PT] < 40), lo / np.maximum(clamped.p4[..., PT], 1e-3), 1.0)
    p4 = clamped.p4.copy()
    p4[..., 0] *= scale
    p4[..., 1] *= scale
    clamped.p4 = p4
    res = boundary_checks(a, clamped)
    assert "pt_near_threshold/jets" in res["flagged"], res["pt_near_threshold"]["jets"]


def test_shared_events_and_memorisation(real):
    a, b, c = real
    assert shared_events(a, a) == len(a) and shared_events(a, b) == 0
    assert shared_events(a, a[:10]) == 10
    # a "generator" that copies its training sample, against held-out events
    copy = memorisation(a, b, a[: len(b)], max_queries=800, seed=1)
    fair = memorisation(a, b, c, max_queries=800, seed=1)
    assert copy["flagged"] and copy["exact_copies"] == copy["n_generated"] and copy["close_generated"] == 1.0
    assert not fair["flagged"] and fair["close_generated"] < 0.05
    assert fair["median_distance_generated"] == pytest.approx(fair["median_distance_reference"], rel=0.3)
