"""The defect zoo (issue 12): every planted defect is flagged by the evaluation, a second half
of the same file is not.

"Flagged" means what the report flags: whole-event AUC above its floor by >= 5 combined
standard errors, or a boundary check (pile-up at the jet radius / a pT threshold).  The fast
part uses a real Dark Machines file (4096 events, halves of 2048); the ttbar defects need more
events and run in the slow suite on ``fastmc simulate ttbar`` samples (the session's
/work/simdata files when present, else simulated here).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from defects import DEFECTS, charges_flipped
from evalsynth import read_real

from fastmc.evaluate import FloorConfig, evaluate
from fastmc.evaluate.features import whole_event_features
from fastmc.evaluate.wholeevent import ClassifierConfig, whole_event_floor, whole_event_test
from fastmc.events import Events

SIMDATA = Path("/work/simdata")
FAST = ClassifierConfig(folds=3)


def _halves(ev: Events, seed: int) -> tuple[Events, Events]:
    perm = np.random.default_rng(seed).permutation(len(ev))
    return ev[np.sort(perm[: len(ev) // 2])], ev[np.sort(perm[len(ev) // 2 :])]


def _flagged(report, label: str) -> bool:
    d = report.metrics
    return bool(d["whole_event"]["samples"][label]["flagged"] or d["samples"][label]["boundary"]["flagged"])


def test_defect_zoo_on_a_real_file(data_dir):
    ref, second = _halves(read_real(data_dir / "glgl1400_neutralino1100_chan1.csv"), seed=0)
    samples = {"second half": second}
    for name in ("soft_jets_redrawn", "met_phi_flat", "dr_pileup"):
        samples[name] = DEFECTS[name](second, np.random.default_rng(1))
    report = evaluate(ref, samples, seed=0, config=FloorConfig(repeats=3, whole_event=False),
                      classifier_config=FAST, plots=False)
    assert not _flagged(report, "second half")
    for name in ("soft_jets_redrawn", "met_phi_flat", "dr_pileup"):
        assert _flagged(report, name), name
    we = report.metrics["whole_event"]["samples"]
    assert we["met_phi_flat"]["significance"] > 10 and we["soft_jets_redrawn"]["significance"] > 10
    # the pile-up at the jet radius is seen by the boundary check, with the reference's share beside it
    near = report.metrics["samples"]["dr_pileup"]["boundary"]["closest_pair_near_radius"]
    assert near["flagged"] and near["generated"] > 0.2 > 0.05 > near["reference"]


def _ttbar(n: int, seed: int, name: str) -> Events:
    from fastmc.io import read_events

    path = SIMDATA / name
    if path.exists():
        return read_events(path)[:n]
    from fastmc.simulate import simulate

    return Events.concatenate(list(simulate("ttbar", n, seed=seed)))


def _significance(ref: Events, gen: Events, cfg: ClassifierConfig = FAST) -> float:
    fr, fg = whole_event_features(ref), whole_event_features(gen)
    res, floor = whole_event_test(fr, fg, config=cfg), whole_event_floor(fr, len(fg), config=cfg)
    return (res.auc - floor.auc) / np.hypot(res.auc_err, floor.auc_err)


@pytest.mark.slow
def test_defect_zoo_on_ttbar():
    ev = _ttbar(20_000, 2, "ttbar_20k_s2.parquet")
    ref, second = _halves(ev, seed=0)
    rng = np.random.default_rng(1)
    assert abs(_significance(ref, second)) < 5
    assert _significance(ref, DEFECTS["btags_moved"](second, rng)) >= 5
    # charges: a flip only shows in dilepton events (2% of ttbar), so the sample is those events
    two = ev.mask("e-", "e+", "m-", "m+").sum(axis=1) == 2
    dl_ref, dl_second = _halves(ev[two], seed=0)
    assert len(dl_ref) >= 100
    assert _significance(dl_ref, charges_flipped(dl_second, rng)) >= 5


@pytest.mark.slow
def test_three_percent_third_jet_scale_on_100k_ttbar():
    path = SIMDATA / "ttbar_100k_s4.parquet"
    if not path.exists():
        pytest.skip(f"{path} (fastmc simulate ttbar -n 100000 --seed 4) not present: a 3% scale of one jet "
                    "needs ~50k events per side, too many to simulate inside a test")
    from fastmc.io import read_events

    ref, second = _halves(read_events(path), seed=0)
    assert _significance(ref, DEFECTS["third_jet_scale_3pct"](second, np.random.default_rng(1))) >= 5


@pytest.mark.slow
def test_half_vs_half_is_rarely_flagged(data_dir):
    ev = read_real(data_dir / "glgl1400_neutralino1100_chan1.csv")
    flagged = 0
    for seed in range(10):
        ref, second = _halves(ev, seed=100 + seed)
        report = evaluate(ref, {"half": second}, seed=seed, config=FloorConfig(repeats=3, whole_event=False),
                          classifier_config=FAST, plots=False)
        flagged += _flagged(report, "half")
    assert flagged <= 1
