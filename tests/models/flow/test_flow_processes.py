"""The flow conditioned on the process: per-process patterns, process embedding (issue 14)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fastmc.data.batch import RawBatch, cat_batches
from fastmc.models.base import Condition, build_model
from fastmc.models.modeldir import load_model, save_model
from modelhelpers import TINY_CONFIGS, fit_steps, make_events

pytest.importorskip("zuko")


def _two_processes() -> RawBatch:
    """Process 0: events with at most 2 jets; process 1: 4 or more jets and 4x the MET."""
    ev = make_events(600, seed=3)
    n_jets = (ev.mask("j", "b")).sum(axis=1)
    few = ev[n_jets <= 2]
    many = ev[n_jets >= 4]
    many = dataclasses.replace(many, met=many.met * 4)
    a, b = RawBatch.from_events(few), RawBatch.from_events(many)
    b.process = torch.ones(len(b), dtype=torch.long)
    a.process = torch.zeros(len(a), dtype=torch.long)
    return cat_batches([a, b])


def test_flow_samples_the_patterns_and_kinematics_of_the_process(tmp_path) -> None:
    torch.manual_seed(0)
    raw = _two_processes()
    model = build_model("flow", TINY_CONFIGS["flow"], processes=("few", "many"))
    model.fit_data(raw)
    assert model.process_conditional and model.process_counts.shape[0] == 2
    fit_steps(model, raw, 60, lr=1e-2, generator=torch.Generator().manual_seed(0))
    out = {}
    for i, proc in enumerate(("few", "many")):
        s = model.sample(400, condition=Condition(process=proc), generator=torch.Generator().manual_seed(1))
        assert s.process.tolist() == [i] * 400
        out[proc] = s
    jets = {p: ((s.types == 1) | (s.types == 2)).sum(dim=1) for p, s in out.items()}
    # patterns come from each process's own training patterns: exact by construction
    assert int(jets["few"].max()) <= 2 and int(jets["many"].min()) >= 4
    # the process embedding moves the kinematics too (MET 4x harder in training)
    assert float(out["many"].met.median()) > 1.5 * float(out["few"].met.median())
    # saved and loaded with the per-process pattern counts
    save_model(model, tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert torch.equal(again.process_counts, model.process_counts) and again.process_conditional
    s2 = again.sample(400, condition=Condition(process="many"), generator=torch.Generator().manual_seed(1))
    np.testing.assert_allclose(s2.met.numpy(), out["many"].met.numpy(), rtol=1e-5)
