"""Classifier refinement (fastmc.workflows.refine, `fastmc refine`): it pulls a generator
towards its training events by keeping or dropping whole events, counts what it did, and is
stored without pickling, tied to the weights it was fitted to."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.errors import ConfigError
from fastmc.events import Events
from fastmc.io import read_events, write_events
from fastmc.models.modeldir import ModelDir, load_model
from fastmc.workflows.generate import generate
from fastmc.workflows.refine import RefineConfig, Refiner, load_refiner, refine_model_dir
from fastmc.workflows.train_config import TrainConfig
from fastmc.workflows.train_store import train_from_store
from modelhelpers import TINY

pytest.importorskip("sklearn")

SMALL = RefineConfig(events=4000, held_out=3000, max_iter=150, seed=3)


def _hard(ev: Events, cut: float) -> np.ndarray:
    """Events whose leading object has pT above ``cut`` (GeV), bool [N]."""
    return ev.p4[:, 0, 1] > cut


@pytest.fixture(scope="module")
def setup(tiny_store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model, and "training events" made from its own output with a known distortion:
    70% of its events with the leading object's pT above the median dropped, so the
    refinement has a known target (23% of such events instead of 50%)."""
    root = tmp_path_factory.mktemp("refine")
    model = root / "model"
    cfg = TrainConfig(epochs=1, batch_size=64, batches_per_epoch=2, device="cpu", val_events=60)
    train_from_store(tiny_store, model, model_config=TINY, config=cfg)
    own = read_events_of(model, root / "own.parquet", 12_000, seed=99)
    cut = float(np.median(own.p4[:, 0, 1]))
    drop = _hard(own, cut) & (np.random.default_rng(5).random(len(own)) < 0.7)
    write_events(root / "train.parquet", own[~drop])
    return {"root": root, "model": model, "train": root / "train.parquet", "cut": cut,
            "share_model": float(_hard(own, cut).mean()),
            "share_train": float(_hard(own[~drop], cut).mean())}


def read_events_of(model: Path, out: Path, n: int, *, seed: int, refine: bool | None = False) -> Events:
    generate(model, out, n, seed=seed, refine=refine, batch_size=2000)
    return read_events(out)


@pytest.fixture(scope="module")
def refined(setup: dict) -> Path:
    # the distorted copy of the model's own output is not the file it was trained on: warned
    with pytest.warns(UserWarning, match="not among the files the model was trained on"):
        refine_model_dir(setup["model"], [str(setup["train"])], config=SMALL, threads=1)
    return setup["model"]


def test_refinement_moves_the_output_to_the_training_events(setup: dict, refined: Path) -> None:
    # the known target: 70% of the hard events removed from the model's own output
    assert setup["share_model"] - setup["share_train"] > 0.2
    ev = read_events_of(refined, setup["root"] / "r.parquet", 4000, seed=1, refine=True)
    share = float(_hard(ev, setup["cut"]).mean())
    # most of the way to the target, not past it (a smooth classifier rounds the sharp cut)
    moved = (setup["share_model"] - share) / (setup["share_model"] - setup["share_train"])
    assert 0.75 < moved < 1.15, (share, setup)
    meta = json.loads(json.dumps(ev.meta))["refinement"]
    assert meta["kept"] + meta["rejected"] == meta["drawn"] > len(ev)
    assert 0 < meta["acceptance"] < 1 and meta["clipped"] >= 0
    assert "none moved" in meta["reason"]
    # two stages by default, their trees in one ensemble; the marginals close better weighted
    fit = meta["fit"]
    assert len(fit["stages"]) == 2 and fit["trees"] == sum(st["trees"] for st in fit["stages"])
    closure = fit["closure"]
    assert closure["after"] < closure["before"] and closure["before"] > 2, closure
    assert closure["features"] > 10 and len(closure["worst_after"]) == 5


def test_kept_events_are_drawn_events_unchanged(refined: Path, setup: dict) -> None:
    ev = read_events_of(refined, setup["root"] / "k.parquet", 1500, seed=2, refine=True)
    drawn = ev.meta["refinement"]["drawn"]
    assert drawn % 2000 == 0  # whole batches of 2000 were drawn
    raw = read_events_of(refined, setup["root"] / "u.parquet", drawn, seed=2, refine=False)
    rows = {r.tobytes(): i for i, r in enumerate(raw.p4.reshape(len(raw), -1))}
    idx = [rows[r.tobytes()] for r in ev.p4.reshape(len(ev), -1)]  # KeyError: an event changed
    assert np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(raw.types[idx], ev.types)
    np.testing.assert_array_equal(raw.met[idx], ev.met)
    again = read_events_of(refined, setup["root"] / "k2.parquet", 1500, seed=2, refine=True)
    np.testing.assert_array_equal(again.p4, ev.p4)  # seeded


def test_stored_refiner_is_the_fitted_one(refined: Path, setup: dict) -> None:
    r = load_refiner(refined, required=True)
    assert isinstance(r, Refiner) and 0 < r.expected_acceptance <= 1
    ev = read_events(setup["train"])[:300]
    w = r.weights(ev)
    assert w.shape == (300,) and np.isfinite(w).all() and (w > 0).all()
    assert r.info["weights_digest"] == ModelDir(refined).weights_digest()
    assert r.info["training_events"] == len(read_events(setup["train"]))


def test_retrained_weights_make_the_refiner_stale(refined: Path, setup: dict, tmp_path: Path) -> None:
    import shutil

    import torch

    copy = tmp_path / "m"
    shutil.copytree(refined, copy)
    model = load_model(copy)
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    ModelDir(copy).write_weights(model)
    with pytest.raises(ConfigError, match="fitted to other weights"):
        generate(copy, tmp_path / "g.parquet", 100, refine=True)
    with pytest.warns(UserWarning, match="generating without it"):
        report = generate(copy, tmp_path / "g.parquet", 100)
    assert report.refinement is None
    assert read_events(tmp_path / "g.parquet").meta["refinement"] is None


def test_a_refiner_applies_to_its_own_prior_only(refined: Path) -> None:
    with pytest.raises(ConfigError, match="prior 'normal', not 'gmm'"):
        load_refiner(refined, required=True, prior="gmm")
    with pytest.warns(UserWarning, match="--prior gmm"):
        assert load_refiner(refined, prior="gmm") is None
    assert load_refiner(refined, required=True).info["prior"] == "normal"


def test_refinement_refuses_what_it_cannot_do(refined: Path, setup: dict, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--no-refine"):
        generate(refined, tmp_path / "p.parquet", 100, part=(0, 2), shard_size=50)
    with pytest.raises(ConfigError, match="already has a refiner"):
        refine_model_dir(refined, [str(setup["train"])], config=SMALL)
    with pytest.raises(ConfigError, match="1000"):
        RefineConfig(events=10)
    with pytest.raises(ConfigError, match="cap_quantile"):
        RefineConfig(cap_quantile=0.2)


def test_a_separable_model_is_warned_about(setup: dict, tmp_path: Path) -> None:
    import shutil

    from modelhelpers import make_events

    copy = tmp_path / "m"
    shutil.copytree(setup["model"], copy)  # then synthetic events, not the model's output:
    with pytest.warns(UserWarning) as caught:
        refine_model_dir(copy, make_events(3000, seed=4, process="ttbar"), threads=1,
                         config=RefineConfig(events=1000, held_out=1000, max_iter=20), overwrite=True)
    messages = " ".join(str(w.message) for w in caught)
    assert "almost perfectly" in messages
    assert "not calibrated" in messages  # such weights are far from averaging 1 as well


def test_cli_refine_then_generate(setup: dict, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(setup["model"], copy)
    ModelDir(copy).remove_refiner()
    args = ["refine", str(copy), "-t", str(setup["train"]), "--events", "2000", "--held-out",
            "1000", "--max-iter", "20", "--threads", "1"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "refiner.safetensors" in "".join(res.output.split())
    assert "warning: the training events given are not among" in " ".join(res.output.split())
    assert "drawn events" in " ".join(res.output.split())
    res = CliRunner().invoke(app, args)
    assert res.exit_code != 0 and "--overwrite" in res.output
    out = tmp_path / "g.parquet"
    res = CliRunner().invoke(app, ["generate", str(copy), "-n", "500", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "refinement kept" in " ".join(res.output.split())
    assert read_events(out).meta["refinement"]["kept"] >= 500
    res = CliRunner().invoke(app, ["generate", str(copy), "-n", "500", "-o", str(out),
                                   "--where", "met > 0", "--overwrite"])
    assert res.exit_code == 0, res.output
    meta = read_events(out).meta
    assert f"of {meta['refinement']['kept']:,} refined events" in " ".join(res.output.split())
    res = CliRunner().invoke(app, ["generate", str(copy), "-n", "500", "-o", str(out),
                                   "--no-refine", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert read_events(out).meta["refinement"] is None


def test_the_evaluation_report_says_what_refinement_did(refined: Path, setup: dict) -> None:
    from fastmc.evaluate.generation import generation_note, generation_record

    ev = read_events_of(refined, setup["root"] / "n.parquet", 500, seed=4, refine=True)
    record = generation_record(ev.meta)
    r = ev.meta["refinement"]
    assert record is not None and record["refinement"] == r
    note = generation_note(record)
    assert f"kept {100 * r['acceptance']:.1f}% of {r['drawn']:,} drawn events" in note
    c = r["fit"]["closure"]
    assert f"marginal closure (chi2/ndf) {c['before']:.2f} -> {c['after']:.2f}" in note
    generate(refined, setup["root"] / "nw.parquet", 500, seed=4, refine_mode="weights")
    r = read_events(setup["root"] / "nw.parquet").meta["refinement"]
    note = generation_note(generation_record(read_events(setup["root"] / "nw.parquet").meta))
    assert (f"as event weights on all 500 drawn events (effective share {r['effective_share']:.3f}"
            in note)
    unrefined = generation_record(read_events(setup["train"]).meta) or {}  # --no-refine output
    assert "refinement" not in unrefined
    assert generation_note(None) is None


def test_python_api_refines_in_memory_too(refined: Path, setup: dict, tmp_path: Path) -> None:
    import shutil

    import fastmc

    auto = fastmc.generate(refined, 300, seed=3)
    forced = fastmc.generate(refined, 300, seed=3, refine=True)
    plain = fastmc.generate(refined, 300, seed=3, refine=False)
    assert len(auto) == len(forced) == len(plain) == 300
    np.testing.assert_array_equal(auto.p4, forced.p4)
    assert not np.array_equal(auto.p4, plain.p4)
    weighted = fastmc.generate(refined, 300, seed=3, refine_mode="weights")
    np.testing.assert_array_equal(weighted.p4, plain.p4)  # the same events, other weights
    assert weighted.weight.std() > 0 and plain.weight.std() == 0
    copy = tmp_path / "m"
    shutil.copytree(setup["model"], copy)
    import warnings

    with warnings.catch_warnings(record=True):  # a 20-tree fit on 2,000 events may be uncalibrated
        warnings.simplefilter("always")
        info = fastmc.refine(copy, read_events(setup["train"]), events=2000, held_out=2000,
                             max_iter=20, threads=1, overwrite=True)
    assert 0 < info["acceptance"] <= 1 and info["held_out_events"] == 2000
    assert len(info["stages"]) == 2 and all(st["trees"] <= 20 for st in info["stages"])


def test_bench_times_refined_generation_too(refined: Path) -> None:
    from fastmc.workflows.bench import run_bench

    result = run_bench(refined, scale=0.01, batch_sizes=(100,), targets=("memory",),
                       device="cpu", simulate=False)
    rows = [r for r in result["rows"] if "refined" in r["target"]]
    assert len(rows) == 4 and all(r["events"] >= 100 and r["events_per_s"] > 0 for r in rows)
    assert "% of drawn kept)" in rows[0]["target"] and "above the cap weighted" in rows[1]["target"]
    ess = float(rows[2]["target"].split("effective share ")[1].rstrip(")"))
    assert "as weights" in rows[2]["target"] and 0 < ess < 1
    assert "as uncapped weights" in rows[3]["target"]


def test_the_models_store_gives_its_training_split(setup: dict, tiny_store: Path) -> None:
    """-t STORE: the store's training split, no provenance warning; the store's source file
    (which also holds its test split) is warned about; another file too."""
    from fastmc.data.store import open_store
    from fastmc.workflows.refine import _training_events

    data = ModelDir(setup["model"]).read_config()["data"]
    events = _training_events([str(tiny_store)], data)  # no warning (errors in this suite)
    assert len(events) == len(open_store(tiny_store).events("train"))
    with pytest.warns(UserWarning, match="also hold the events of the store's test split"):
        _training_events([str(tiny_store.parent / "tiny.csv")], data)
    with pytest.warns(UserWarning, match="not among the files the model was trained on"):
        _training_events(str(setup["train"]), data)


def test_refining_on_the_models_own_output_changes_little(setup: dict, tmp_path: Path) -> None:
    """Null test: training events drawn from the model itself (another seed) leave the
    classifier nothing to learn: log-loss at ln 2, weights near 1, most events kept."""
    import math
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(setup["model"], copy)
    own = read_events_of(copy, tmp_path / "own.parquet", 6000, seed=123)
    with pytest.warns(UserWarning, match="not among the files"):
        info = refine_model_dir(copy, [str(tmp_path / "own.parquet")], config=SMALL,
                                overwrite=True, threads=1).info
    assert len(own) == info["training_events"] == 6000
    assert info["validation_log_loss"] > math.log(2) - 0.01
    assert info["acceptance"] > 0.7
    assert abs(info["mean_weight_generated"] - 1) < 0.05  # calibrated: no warning either


def test_weights_on_threads_are_the_same(refined: Path, setup: dict) -> None:
    r = load_refiner(refined, required=True)
    ev = read_events(setup["train"])[:3000]
    np.testing.assert_array_equal(r.weights(ev, threads=3), r.weights(ev))


def test_both_tree_walkers_give_the_same_weights(refined: Path, setup: dict) -> None:
    """ONNX Runtime (the default where installed) and the numpy walk: the same weights to
    rounding, and the output metadata says which one ran."""
    import dataclasses

    r = load_refiner(refined, required=True)
    assert r.engine == "auto" and r.tree_engine in ("numpy", "onnxruntime")
    ev = read_events(setup["train"])[:3000]
    slow = dataclasses.replace(r, engine="numpy")
    np.testing.assert_allclose(r.weights(ev, threads=2), slow.weights(ev), rtol=1e-12, atol=0)
    out = read_events_of(refined, setup["root"] / "engine.parquet", 500, seed=4, refine=True)
    assert out.meta["refinement"]["tree_engine"] == r.tree_engine
    assert r.walker("cuda:0") == "torch on cuda:0" and r.walker("cpu") == r.tree_engine


def test_generated_events_per_stage_follow_the_training_count() -> None:
    from fastmc.workflows.refine import fit_events

    # twice the training events, within 20k-100k (the demo flow's 12,001 -> 24,002)
    assert [fit_events(n) for n in (2_878, 12_001, 95_000)] == [20_000, 24_002, 100_000]
    assert RefineConfig().events is None and RefineConfig(events=5000).events == 5000
    with pytest.raises(ConfigError, match="events=999"):
        RefineConfig(events=999)
    with pytest.raises(ConfigError, match="stages"):
        RefineConfig(stages=0)


def test_weights_mode_keeps_every_event_and_moves_the_weighted_share(setup: dict, refined: Path) -> None:
    out = setup["root"] / "w.parquet"
    generate(refined, out, 4000, seed=1, refine=True, refine_mode="weights", batch_size=2000)
    ev = read_events(out)
    raw = read_events_of(refined, setup["root"] / "w0.parquet", 4000, seed=1, refine=False)
    np.testing.assert_array_equal(ev.p4, raw.p4)  # the same events as without the refiner
    np.testing.assert_array_equal(ev.types, raw.types)
    factor = ev.weight / raw.weight
    assert factor.min() > 0 and factor.std() > 0.05
    assert abs(factor.mean() - 1) < 0.1  # the sum of the weights is unchanged on average
    share = float(np.average(_hard(ev, setup["cut"]), weights=ev.weight))
    moved = (setup["share_model"] - share) / (setup["share_model"] - setup["share_train"])
    assert 0.75 < moved < 1.15, (share, setup)
    meta = json.loads(json.dumps(ev.meta))["refinement"]
    assert meta["mode"] == "weights" and meta["drawn"] == meta["kept"] == 4000
    assert meta["rejected"] == 0 and 0 < meta["effective_share"] < 1
    ess = factor.sum() ** 2 / (factor ** 2).sum() / len(factor)
    assert meta["effective_share"] == pytest.approx(ess, rel=1e-6)
    assert "none moved or dropped" in meta["reason"]
    # nothing dropped: a run in parts works, and its parts are the whole run's events
    parts = [setup["root"] / f"wp{k}.parquet" for k in (0, 1)]
    for k, path in enumerate(parts):
        generate(refined, path, 4000, seed=1, refine_mode="weights", batch_size=2000,
                 part=(k, 2), shard_size=2000)
    whole = setup["root"] / "wall.parquet"
    generate(refined, whole, 4000, seed=1, refine_mode="weights", batch_size=2000, shard_size=2000)
    joined, ev = Events.concatenate([read_events(p) for p in parts]), read_events(whole)
    np.testing.assert_array_equal(joined.p4, ev.p4)
    np.testing.assert_allclose(joined.weight, ev.weight, rtol=1e-12)
    with pytest.raises(ConfigError, match="refine_mode"):
        generate(refined, setup["root"] / "x.parquet", 10, refine_mode="drop")


def test_uncapped_weights_are_w_over_its_mean_at_the_fit(setup: dict, refined: Path) -> None:
    """weights-uncapped: the same events, each weighted by w / mean(w at the fit) with no cap
    (the capped mode's factor is min(w, cap) / (cap x acceptance)); no event is clipped."""
    r = load_refiner(refined, required=True)
    out, capped = setup["root"] / "wu.parquet", setup["root"] / "wc.parquet"
    generate(refined, out, 4000, seed=1, refine_mode="weights-uncapped", batch_size=2000)
    generate(refined, capped, 4000, seed=1, refine_mode="weights", batch_size=2000)
    ev, ec = read_events(out), read_events(capped)
    raw = read_events_of(refined, setup["root"] / "wu0.parquet", 4000, seed=1, refine=False)
    np.testing.assert_array_equal(ev.p4, raw.p4)
    w = r.weights(raw)
    np.testing.assert_allclose(ev.weight / raw.weight, w / r.info["mean_weight_generated"], rtol=1e-9)
    np.testing.assert_allclose(ec.weight / raw.weight,
                               np.minimum(w, r.cap) / (r.cap * r.expected_acceptance), rtol=1e-9)
    assert (w > r.cap).any()  # the two modes differ on this sample
    meta = ev.meta["refinement"]
    assert meta["mode"] == "weights-uncapped" and meta["clipped"] == 0 and "uncapped" in meta["reason"]
    assert abs(meta["mean_factor"] - 1) < 0.1
    res = CliRunner().invoke(app, ["generate", str(refined), "-n", "300", "-o",
                                   str(setup["root"] / "wu_cli.parquet"), "--refine-mode", "weights-uncapped"])
    assert res.exit_code == 0 and "weights not capped" in " ".join(res.output.split()), res.output


def test_partial_unweighting_keeps_the_rejected_events_and_weights_the_overweights(
        setup: dict, refined: Path) -> None:
    """reject-uncapped: the very events --refine-mode reject keeps (same seed, same draws),
    weight 1 x norm below the cap and w / cap x norm above it, norm = cap x acceptance / E[w]
    at the fit; so the weighted kept events carry no clipping."""
    r = load_refiner(refined, required=True)
    plain, part = setup["root"] / "rj.parquet", setup["root"] / "ru.parquet"
    generate(refined, plain, 2500, seed=3, refine_mode="reject", batch_size=2000)
    generate(refined, part, 2500, seed=3, refine_mode="reject-uncapped", batch_size=2000)
    a, b = read_events(plain), read_events(part)
    np.testing.assert_array_equal(a.p4, b.p4)  # the same kept events
    w = r.weights(b)
    norm = r.info["mean_weight_generated"] / (r.cap * r.expected_acceptance)
    np.testing.assert_allclose(b.weight / a.weight, np.maximum(w / r.cap, 1.0) / norm, rtol=1e-9)
    assert (w > r.cap).any() and np.ptp(a.weight) == 0  # overweights here; reject: unweighted
    meta = b.meta["refinement"]
    assert meta["mode"] == "reject-uncapped" and len(b) <= meta["kept"] < meta["drawn"]
    assert 0.5 < meta["effective_share"] <= 1 and abs(meta["mean_factor"] - 1) < 0.15
    assert "partial unweighting" in meta["reason"]


def test_cli_generates_weighted_events(refined: Path, tmp_path: Path) -> None:
    out = tmp_path / "w.parquet"
    args = ["generate", str(refined), "-n", "500", "-o", str(out), "--refine-mode", "weights"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "weighted all 500 drawn events (effective share" in " ".join(res.output.split())
    res = CliRunner().invoke(app, [*args[:-1], "drop", "--overwrite"])
    assert res.exit_code != 0 and "--refine-mode must be one of reject, reject-uncapped, weights, weights-uncapped" in " ".join(res.output.split())


def test_weights_mode_without_a_refiner_says_so(refined: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(refined, copy)
    ModelDir(copy).remove_refiner()
    with pytest.warns(UserWarning, match="has no refiner that applies"):
        generate(copy, tmp_path / "g.parquet", 100, refine_mode="weights")
    assert read_events(tmp_path / "g.parquet").meta["refinement"] is None
