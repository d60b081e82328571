"""Floors and power on real Dark Machines events and on large synthetic samples.

Real file: glgl1400_neutralino1100 (4096 events), split at random into two halves of 2048:
reference = one half, "generated" = the other (not flagged), the other with MET x 1.05, the
other with MET x 1.15, and another signal file (sqsq1).  The comparisons run at the matched
size n = 2048 // 2 = 1024.  At that size a 5% MET shift (0.1 standard deviations of MET) is
near the statistical limit: even the optimal test on all 2048 vs 2048 events gives ~3.5
sigma (KS p ~ 2e-4), so the conservative significance of fastmc.evaluate.floors is ~2 there.
The 5% shift is therefore asserted to be > 5 sigma on a large synthetic sample (n = 20000),
and on the real file we assert that MET is the most significant observable and that a 15%
shift passes 5 sigma.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from evalsynth import read_real, synthetic_events

from fastmc.evaluate.classifier import classifier_test
from fastmc.evaluate.floors import FloorConfig, compare_with_floors, make_sample

PER_OBS = ("w1", "ks", "js", "chi2")


@pytest.fixture(scope="module")
def real_comparison(data_dir):
    ev = read_real(data_dir / "glgl1400_neutralino1100_chan1.csv")
    other = read_real(data_dir / "sqsq1_sq1400_neut800_chan1.csv")
    perm = np.random.default_rng(2024).permutation(len(ev))
    ref, half = ev[perm[: len(ev) // 2]], ev[perm[len(ev) // 2 :]]
    samples = {
        "half": half,
        "met5": dataclasses.replace(half, met=half.met * 1.05),
        "met15": dataclasses.replace(half, met=half.met * 1.15),
        "sqsq1": other,
    }
    res = compare_with_floors(
        make_sample(ref), {k: make_sample(v) for k, v in samples.items()}, config=FloorConfig(repeats=10), seed=0
    )
    return ref, samples, res


def _sig(stats, key):
    return stats[key].significance


def test_half_vs_half_is_not_flagged(real_comparison):
    _, _, res = real_comparison
    assert res["n"] == 1024 and res["repeats"] == 10
    stats = res["samples"]["half"]
    sigs = {k: s.significance for k, s in stats.items() if not math.isnan(s.significance)}
    assert len(sigs) > 70  # lepton observables are NaN: the file has no leptons
    worst = max(sigs, key=lambda k: abs(sigs[k]))
    assert abs(sigs[worst]) < 3, (worst, stats[worst])
    ratios = [s.ratio for k, s in stats.items() if k.startswith("w1/") and math.isfinite(s.ratio)]
    assert 0.7 < np.median(ratios) < 1.4


def test_met_shift_is_seen_on_met(real_comparison):
    _, _, res = real_comparison
    half, met5, met15 = (res["samples"][k] for k in ("half", "met5", "met15"))
    # 5%: at the statistical limit of n = 1024 (see the module docstring), but MET moves and
    # nothing else does
    assert _sig(met5, "w1/met") > 1.5 and _sig(met5, "w1/met") - _sig(half, "w1/met") > 1.5
    assert _sig(met5, "ks/met") > 1.0 and _sig(met5, "ks/met") - _sig(half, "ks/met") > 1.0
    for key in ("w1/jet1_pt", "w1/ht", "ks/n_jets"):
        assert abs(_sig(met5, key) - _sig(half, key)) < 1.5, key
    # 15%: clearly flagged
    assert _sig(met15, "w1/met") > 5 and _sig(met15, "ks/met") > 5
    assert met15["w1/met"].ratio > 3


def test_other_signal_is_clearly_flagged(real_comparison):
    _, _, res = real_comparison
    s = res["samples"]["sqsq1"]
    assert _sig(s, "fpd") > 10 and _sig(s, "kpd") > 5
    assert _sig(s, "w1/jet2_pt") > 10 and _sig(s, "w1/met") > 5
    assert s["w1/jet2_pt"].ratio > 5


def test_classifier_floor_and_power_on_real_files(real_comparison):
    ref, samples, _ = real_comparison
    rng = np.random.default_rng(5)
    perm = rng.permutation(len(ref))
    a, b = make_sample(ref[perm[:1024]]).obs, make_sample(ref[perm[1024:]]).obs
    floor = classifier_test(a.values, b.values, seed=1)
    assert abs(floor.auc - 0.5) < 3 * floor.auc_err
    half = make_sample(samples["half"][rng.permutation(2048)[:1024]]).obs
    same = classifier_test(a.values, half.values, seed=1)
    assert abs(same.auc - floor.auc) < 3 * math.hypot(same.auc_err, floor.auc_err)
    other = make_sample(samples["sqsq1"][rng.permutation(len(samples["sqsq1"]))[:1024]]).obs
    diff = classifier_test(a.values, other.values, seed=1)
    assert (diff.auc - floor.auc) / math.hypot(diff.auc_err, floor.auc_err) > 5


def test_five_percent_met_shift_flagged_on_large_sample():
    ref = make_sample(synthetic_events(40000, seed=11))
    gen = synthetic_events(20000, seed=12)
    res = compare_with_floors(
        ref,
        {"same": make_sample(gen), "met5": make_sample(dataclasses.replace(gen, met=gen.met * 1.05))},
        config=FloorConfig(repeats=6, whole_event=False),
        seed=0,
    )
    assert res["n"] == 20000
    same, met5 = res["samples"]["same"], res["samples"]["met5"]
    # ~110 metrics: a perfect generator's largest |significance| is ~2-4 (floors docstring)
    assert max(abs(s.significance) for s in same.values()) < 5
    assert met5["w1/met"].significance > 5 and met5["ks/met"].significance > 3
    assert met5["w1/met"].ratio > 2 * same["w1/met"].ratio
    assert abs(met5["w1/jet1_pt"].significance) < 3


def test_generator_without_leptons_is_flagged():
    ref = synthetic_events(2000, seed=21)
    gen = synthetic_events(1000, seed=22)
    lep = gen.mask("e-", "e+", "m-", "m+")
    no_lep = dataclasses.replace(gen, types=np.where(lep, 0, gen.types), p4=np.where(lep[..., None], 0, gen.p4))
    res = compare_with_floors(make_sample(ref), {"nolep": make_sample(no_lep)},
                              config=FloorConfig(repeats=4, whole_event=False), seed=0)
    s = res["samples"]["nolep"]
    assert s["ks/lep1_pt"].value == 1.0 and s["js/lep1_pt"].value == 1.0
    assert s["ks/lep1_pt"].significance > 10 and s["mult_chi2/e-"].significance > 10
    assert math.isnan(s["w1/lep1_pt"].value)  # W1 of an empty sample is undefined
