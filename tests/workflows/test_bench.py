"""``fastmc bench``'s comparison with the simulation uses as many processes as threads."""

from __future__ import annotations

import torch

from fastmc.models.base import GenerativeModel
from fastmc.workflows import bench


def test_simulation_runs_with_as_many_processes_as_threads(monkeypatch) -> None:
    seen = {}

    def fake_time_simulation(process: str, n_events: int, *, seed: int = 0, jobs: int = 1) -> dict:
        seen["jobs"] = jobs
        return {"process": process, "jobs": jobs, "events": n_events, "seconds": 2.0,
                "events_per_s": n_events / 2.0}

    monkeypatch.setattr(bench, "time_simulation", fake_time_simulation)
    rows = [{"device": "cpu", "target": "memory", "batch_size": 10_000, "events": 10_000,
             "seconds": 1.0, "events_per_s": 10_000.0}]
    monkeypatch.setattr(bench, "_bench_model", lambda *a, **k: rows)

    class Model(GenerativeModel):
        name = "m"

    monkeypatch.setattr(bench, "check_prior", lambda m, p: None)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        res = bench.run_bench(Model(None, processes=("ttbar",)), device="cpu", sim_events=100, batch_sizes=(10_000,))
    finally:
        torch.set_num_threads(threads)
    assert seen["jobs"] == 2 and res["simulation"]["jobs"] == 2
    assert res["ratio_generation_to_simulation"] == 10_000.0 / 50.0
    text = bench.format_markdown(res)
    assert "2 processes" in text and "the same number of cores" in text
