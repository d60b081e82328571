"""Process-conditional generation, cross-section cocktails and kinematic regions (issue 14)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.errors import ConfigError
from fastmc.evaluate.observables import compute_observables
from fastmc.io import read_events
from fastmc.models.base import build_model
from fastmc.workflows.conditioning import process_plan
from fastmc.workflows.generate import generate
from modelhelpers import TINY, TINY_CONFIGS, make_events

runner = CliRunner()

#: Cross-section weights of the two synthetic processes (sum of event weights, sigma x 10/fb).
XSEC = {"ttbar": 800 * 0.01, "z_jets": 800 * 0.03}


@pytest.fixture(scope="module")
def two_process_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """800 'ttbar' events with 5x the MET of 800 'z_jets' events; z_jets has 3x the cross section."""
    from fastmc.data.store import prepare
    from fastmc.io import write_events

    root = tmp_path_factory.mktemp("two_proc")
    tt = make_events(800, seed=11, process="ttbar")
    tt = dataclasses.replace(tt, met=tt.met * 5, weight=np.full(800, 0.01))
    zj = make_events(800, seed=12, process="z_jets")
    zj = dataclasses.replace(zj, weight=np.full(800, 0.03))
    paths = []
    for name, ev in (("tt", tt), ("zj", zj)):
        paths.append(root / f"{name}.parquet")
        write_events(paths[-1], ev)
    store = root / "store"
    prepare(paths, store, val=0.1, test=0.1, seed=0)
    return store


@pytest.fixture(scope="module")
def cvae(two_process_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny beta-VAE trained on both processes (process label input)."""
    import torch

    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cvae") / "model"
    cfg = TrainConfig(epochs=15, batch_size=128, batches_per_epoch=30, val_events=100,
                      device="cpu", lr=5e-3)
    train_from_store(two_process_store, out, model_name="beta-vae", model_config=TINY, config=cfg)
    return out


def _median_met(path: Path) -> float:
    return float(np.median(read_events(path).met))


# ---------------------------------------------------------------------------- processes
def test_process_generation_returns_only_that_process(cvae: Path, tmp_path: Path) -> None:
    medians = {}
    for proc in ("ttbar", "z_jets"):
        out = tmp_path / f"{proc}.parquet"
        rep = generate(cvae, out, 3000, process=proc, device="cpu", seed=1)
        ev = read_events(out)
        assert set(ev.process.tolist()) == {proc} and rep.process_counts == {proc: 3000}
        np.testing.assert_allclose(ev.weight, XSEC[proc] / 3000)
        medians[proc] = _median_met(out)
    # the decoder follows its label: ttbar (5x the MET in training) comes out harder (a tiny,
    # briefly trained VAE with a normal prior softens MET, so the ratio is below 5)
    assert medians["ttbar"] > 2 * medians["z_jets"], medians


def test_no_process_gives_the_training_mixture(cvae: Path, tmp_path: Path) -> None:
    out = tmp_path / "mix.parquet"
    n = 4000
    rep = generate(cvae, out, n, device="cpu", seed=2, batch_size=1000)
    ev = read_events(out)
    k = int((ev.process == "ttbar").sum())
    # equal training counts (640 each): binomial(n, 1/2) within 4 sigma
    assert abs(k - n / 2) < 4 * np.sqrt(n / 4), k
    assert rep.process_counts == {"ttbar": k, "z_jets": n - k}
    # labels are not in blocks: the batch is shuffled
    assert 0 < (ev.process[:200] == "ttbar").mean() < 1
    # hard events carry the ttbar label
    met = ev.met
    assert np.median(met[ev.process == "ttbar"]) > 2 * np.median(met[ev.process == "z_jets"])


def test_cocktail_fractions_follow_cross_sections(cvae: Path, tmp_path: Path) -> None:
    out = tmp_path / "cocktail.parquet"
    n = 20_000
    rep = generate(cvae, out, n, cocktail=True, device="cpu", seed=3, batch_size=5000)
    ev = read_events(out)
    total = sum(XSEC.values())
    counts = np.array([(ev.process == p).sum() for p in XSEC])
    expected = n * np.array([XSEC[p] / total for p in XSEC])
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 10.8, (counts, expected)  # 1 dof, p = 0.001
    # unweighted: every event has the same weight, and they sum to the total cross section
    np.testing.assert_allclose(ev.weight, total / n)
    assert rep.process_counts == dict(zip(XSEC, counts.tolist(), strict=True))


def test_cocktail_lumi_sets_the_number_of_events(cvae: Path, tmp_path: Path) -> None:
    out = tmp_path / "lumi.parquet"
    # sigma_total = (8 + 24) / 10 fb^-1 = 3.2 fb -> 1000 fb^-1 gives 3200 events
    rep = generate(cvae, out, None, cocktail=True, lumi=1000.0, device="cpu")
    assert rep.n == 3200 and len(read_events(out)) == 3200
    with pytest.raises(ConfigError, match="--lumi"):
        generate(cvae, out, 10, cocktail=True, lumi=1000.0, device="cpu")
    with pytest.raises(ConfigError, match="--lumi"):
        generate(cvae, out, None, lumi=10.0, device="cpu")


def test_unknown_process_lists_the_known_ones(cvae: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'wjets' is not one of the model's processes: ttbar, z_jets"):
        generate(cvae, tmp_path / "x.parquet", 10, process="wjets", device="cpu")
    with pytest.raises(ConfigError, match="exclude each other"):
        generate(cvae, tmp_path / "x.parquet", 10, process="ttbar", cocktail=True, device="cpu")
    assert not (tmp_path / "x.parquet").exists()


def test_unconditional_model_refuses_a_process_instead_of_stamping_it() -> None:
    model = build_model("beta-vae", {**TINY, "process_input": False}, processes=("ttbar", "z_jets"))
    with pytest.raises(ConfigError, match="not conditioned on the process"):
        process_plan(model, process="ttbar")
    plan = process_plan(model)  # the model's own mixture, under an honest name
    assert plan.mode == "unconditional" and plan.label == "mixture:ttbar+z_jets"
    # a fitted per-process prior makes it conditional again
    assert process_plan(model, process="ttbar", prior="gmm").fractions == {"ttbar": 1.0}
    flow = build_model("flow", TINY_CONFIGS["flow"], processes=("ttbar", "z_jets"))
    if not flow.process_conditional:
        with pytest.raises(ConfigError, match="not conditioned on the process"):
            process_plan(flow, process="z_jets")


# ---------------------------------------------------------------------------- regions
def test_region_by_rejection_is_exact_and_records_efficiency(cvae: Path, tmp_path: Path) -> None:
    out = tmp_path / "region.parquet"
    where = "met > 150 and n_jets >= 1"
    rep = generate(cvae, out, 500, process="ttbar", where=where, device="cpu", seed=4,
                   batch_size=500, pilot_events=500)
    ev = read_events(out)
    obs = compute_observables(ev)
    assert len(ev) == 500 and (obs["met"] > 150).all() and (obs["n_jets"] >= 1).all()
    assert ev.event_id.tolist() == list(range(500))
    assert 0 < rep.efficiency < 1 and rep.where == where
    # the efficiency is that of the unselected sample
    plain = tmp_path / "plain.parquet"
    generate(cvae, plain, rep.attempted, process="ttbar", device="cpu", seed=4, batch_size=500)
    full = compute_observables(read_events(plain))
    assert rep.efficiency == pytest.approx(((full["met"] > 150) & (full["n_jets"] >= 1)).mean())
    meta = read_events(out).meta
    assert meta["where"] == where and meta["selection_efficiency"] == pytest.approx(rep.efficiency)
    assert meta["selection_attempted"] == rep.attempted


def test_region_too_rare_stops_with_the_expected_cost(cvae: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"efficiency .* < min_efficiency .*would need"):
        generate(cvae, tmp_path / "rare.parquet", 100, where="met > 3000", device="cpu",
                 batch_size=1000, pilot_events=2000, min_efficiency=0.05)
    assert not (tmp_path / "rare.parquet").exists()


def test_generate_cli_conditioning(cvae: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.parquet"
    res = runner.invoke(app, ["generate", str(cvae), "-n", "300", "-o", str(out), "--process",
                              "z_jets", "--where", "met > 50 GeV", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "selection kept" in res.output and set(read_events(out).process) == {"z_jets"}
    res = runner.invoke(app, ["generate", str(cvae), "-n", "10", "-o", str(out), "--overwrite", "--where",
                              "met >> 5"])
    assert res.exit_code == 1 and "position 6" in res.output and "^" in res.output
    res = runner.invoke(app, ["generate", str(cvae), "-n", "10", "-o", str(out), "--overwrite",
                              "--process", "nope"])
    assert res.exit_code == 1 and "ttbar, z_jets" in res.output
    res = runner.invoke(app, ["generate", str(cvae), "--cocktail", "--lumi", "100", "-o", str(out), "--overwrite",
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "ttbar" in res.output and len(read_events(out)) == 320
    meta = read_events(out).meta
    assert meta["mode"] == "cocktail" and meta["lumi_fb"] == 100
    assert json.dumps(meta["process_fractions"]) and meta["process_fractions"]["z_jets"] == 0.75


def test_evaluate_per_process(cvae: Path, two_process_store: Path, tmp_path: Path) -> None:
    from fastmc.data.store import open_store
    from fastmc.events import Events
    from fastmc.workflows.evaluate_processes import evaluate_per_process

    st = open_store(two_process_store)
    reference = Events.concatenate([st.events("test", p) for p in st.processes])
    out = tmp_path / "mix.parquet"
    generate(cvae, out, 400, device="cpu", seed=5)
    res = evaluate_per_process(reference, {"cvae": read_events(out)}, tmp_path / "report",
                               classifier=False, plots=False, seed=0)
    assert set(res["processes"]) == {"ttbar", "z_jets"}
    for proc, entry in res["processes"].items():
        assert entry["n_reference"] == 80  # 10 % of 800
        assert (tmp_path / "report" / proc / "metrics.json").exists()
        assert entry["summary"][0]["label"] == "cvae"
    saved = json.loads((tmp_path / "report" / "per_process.json").read_text())
    assert set(saved["processes"]) == {"ttbar", "z_jets"}
    with pytest.raises(ConfigError, match="no process to evaluate"):
        evaluate_per_process(reference, {"x": make_events(50, process="wjets")}, tmp_path / "r2",
                             classifier=False, plots=False)


@pytest.fixture(scope="module")
def lead_vae(two_process_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny beta-VAE on both processes, also conditioned on log10 MET (lead=met)."""
    import torch

    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lead") / "model"
    cfg = TrainConfig(epochs=15, batch_size=128, batches_per_epoch=30, val_events=100,
                      device="cpu", lr=5e-3)
    train_from_store(two_process_store, out, model_name="beta-vae",
                     model_config={**TINY, "lead": "met"}, config=cfg)
    return out


def test_truncated_lead_path_is_exact_and_more_efficient(lead_vae: Path, tmp_path: Path) -> None:
    from fastmc.models.modeldir import load_model

    model = load_model(lead_vae)
    assert model.lead_observable == "met"
    # the tail: the 95th percentile of the learned ttbar MET distribution
    cut = float(10 ** model.lead_quantiles[model.process_index("ttbar")][243])
    where = f"met > {cut:.1f} and n_jets >= 1"
    reports = {}
    for path in ("auto", "rejection"):
        out = tmp_path / f"{path}.parquet"
        reports[path] = generate(lead_vae, out, 200, process="ttbar", where=where, device="cpu",
                                 seed=3, batch_size=1000, pilot_events=1000, min_efficiency=1e-3,
                                 region_path=path)
        ev = read_events(out)
        obs = compute_observables(ev)
        assert len(ev) == 200 and (obs["met"] > round(cut, 1)).all() and (obs["n_jets"] >= 1).all()
        assert ev.meta["region_path"] == reports[path].region_path
    assert reports["auto"].region_path.startswith("truncated met")
    assert reports["rejection"].region_path == "rejection"
    # the tail holds ~5 % of the learned distribution: truncation raises the efficiency a lot
    assert reports["auto"].efficiency > 4 * reports["rejection"].efficiency, reports
    # a region that does not bound MET, and a mixture, take the rejection path
    rep = generate(lead_vae, tmp_path / "ht.parquet", 20, process="ttbar", where="ht > 50",
                   device="cpu", pilot_events=100)
    assert rep.region_path == "rejection"
    rep = generate(lead_vae, tmp_path / "mix.parquet", 20, where="met > 50", device="cpu",
                   pilot_events=100)
    assert rep.region_path == "rejection"
    with pytest.raises(ConfigError, match="no training events of ttbar have met"):
        generate(lead_vae, tmp_path / "far.parquet", 20, process="ttbar", where="met > 1e6",
                 device="cpu")


def test_evaluate_cli_per_process(cvae: Path, two_process_store: Path, tmp_path: Path) -> None:
    from fastmc.data.store import open_store
    from fastmc.events import Events
    from fastmc.io import write_events

    st = open_store(two_process_store)
    write_events(tmp_path / "ref.parquet",
                 Events.concatenate([st.events("test", p) for p in st.processes]))
    generate(cvae, tmp_path / "mix.parquet", 400, device="cpu", seed=6)
    res = runner.invoke(app, ["evaluate", "-r", str(tmp_path / "ref.parquet"), "-g",
                              str(tmp_path / "mix.parquet"), "-l", "cvae", "--per-process",
                              "--no-classifier", "--no-plots", "--repeats", "3", "-o",
                              str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    saved = json.loads((tmp_path / "rep" / "per_process.json").read_text())
    assert set(saved["processes"]) == {"ttbar", "z_jets"}
    assert (tmp_path / "rep" / "z_jets" / "index.html").exists()


def test_fit_sample_shares_events_between_processes() -> None:
    """The events of the model's data-dependent state are shared between the processes (the
    smaller one's leftover to the others), not the first ``n`` of the store in process order."""
    from fastmc.workflows.train_store import _fit_quotas

    assert [k for _, k in _fit_quotas([range(1_000_000), range(95_000)], 100_000)] == [50_000, 50_000]
    assert [k for _, k in _fit_quotas([range(1_000_000), range(20_000)], 100_000)] == [80_000, 20_000]
    assert [k for _, k in _fit_quotas([range(30), range(10), range(500)], 90)] == [30, 10, 50]
    assert [k for _, k in _fit_quotas([range(5)], 100)] == [5]


def test_flow_fit_sees_every_process_when_the_first_fills_fit_events(two_process_store: Path,
                                                                       tmp_path: Path) -> None:
    """fit_events below the first process's training events: the second process still gets
    its pattern table, and the model generates it (session 13: it was refused)."""
    import torch

    from fastmc.models.modeldir import load_model
    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    torch.set_num_threads(1)
    out = tmp_path / "flow"
    cfg = TrainConfig(epochs=1, batch_size=64, batches_per_epoch=2, val_events=64, device="cpu",
                      fit_events=400, seed=0)
    train_from_store(two_process_store, out, model_name="flow", model_config=TINY_CONFIGS["flow"],
                     config=cfg)
    counts = load_model(out).process_counts.sum(dim=1)
    assert counts.tolist() == [200, 200]
    gen = tmp_path / "zj.parquet"
    generate(out, gen, 50, seed=1, process="z_jets", device="cpu")
    assert set(read_events(gen).process.tolist()) == {"z_jets"}
