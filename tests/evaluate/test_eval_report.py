"""evaluate(), the HTML report, the plots and the ``fastmc evaluate`` command."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
from evalsynth import synthetic_events
from typer.testing import CliRunner

from fastmc.cli import app
from fastmc.evaluate import FloorConfig, evaluate, evaluation_steps
from fastmc.evaluate import plots as P
from fastmc.evaluate.metrics import multiplicity_counts
from fastmc.evaluate.observables import OBSERVABLES, compute_observables

PNG = b"\x89PNG\r\n\x1a\n"


def _offline(html: str) -> bool:
    low = html.lower()
    return "http://" not in low and "https://" not in low and "<link" not in low and "<script" not in low


def test_evaluate_ranks_and_writes_report(tmp_path):
    ref = synthetic_events(1600, seed=1)
    good = synthetic_events(1000, seed=2)
    bad = dataclasses.replace(good, met=good.met * 1.6)
    steps = []
    report = evaluate(
        ref,
        {"bad": bad, "good": good},
        out_dir=tmp_path / "rep",
        seed=3,
        config=FloorConfig(repeats=3),
        plots=False,
        channel="chan3",
        progress=steps.append,
        reconstruction=("good",),
    )
    assert sum(steps) == evaluation_steps(2, repeats=3, plots=False)
    assert [s.label for s in report.summary] == ["good", "bad"]
    good_row, bad_row = report.summary
    assert good_row.rank == 1 and bad_row.rank == 2
    assert good_row.kind == "reconstruction" and bad_row.kind == "generation"
    assert bad_row.auc > good_row.auc and bad_row.auc - 0.5 > 3 * bad_row.auc_err
    assert bad_row.w1_ratio_max > 3 and bad_row.w1_worst == "met"
    assert math.isfinite(good_row.fpd) and math.isfinite(good_row.kpd)
    assert 0 <= good_row.physicality <= 1
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["repeats"] == 3 and m["channel"] == "chan3"
    assert set(m["samples"]) == {"good", "bad"}
    # honest sizes: each sample at its own size, against the whole reference
    assert m["samples"]["good"]["n_compared"] == 800 and m["samples"]["bad"]["n_compared"] == 800
    we = m["whole_event"]["samples"]["bad"]
    assert we["n_generated"] == 1000 and we["n_reference"] == 1600
    assert we["floor_n_generated"] == 800 and we["floor_n_reference"] == 800
    # a 1.6x MET scale on exponential MET: the best possible AUC is 1.6 / 2.6 = 0.615
    assert we["significance"] > 3 and m["whole_event"]["samples"]["good"]["significance"] < 3
    assert m["samples"]["bad"]["metrics"]["w1/met"]["significance"] > 5
    assert m["samples"]["good"]["physicality"]["selection"] == pytest.approx(
        report.metrics["samples"]["good"]["physicality"]["selection"]
    )
    html = (tmp_path / "rep" / "index.html").read_text()
    assert _offline(html) and "Summary" in html and "W1/floor" in html and "jet1_pt" in html
    assert "good (reconstruction, not generation)" in html
    # the headline comes first
    assert html.index("Whole-event classifier test") < html.index("Summary (best first)")
    with pytest.raises(ValueError, match="labelled"):
        evaluate(ref, {"reference": good})
    with pytest.raises(ValueError, match="reconstruction labels"):
        evaluate(ref, {"good": good}, reconstruction=("vae / truth",))
    with pytest.raises(ValueError, match="too few events"):
        evaluate(ref, {"tiny": good[:5]})


def test_plots_are_written_without_warnings(tmp_path):
    ref, gen = synthetic_events(800, seed=1), synthetic_events(600, seed=2)
    ro, go = compute_observables(ref), compute_observables(gen)
    specs = {s.name: s for s in OBSERVABLES}
    paths = [
        P.plot_observable(specs["met"], ro, {"a": go, "b": ro}, tmp_path / "met.png"),
        P.plot_observable(specs["n_jets"], ro, {"a": go}, tmp_path / "n_jets.png"),
        P.plot_observable(specs["lep2_pt"], ro, {"a": go}, tmp_path / "lep2.png"),
        P.plot_multiplicities(multiplicity_counts(ref), {"a": multiplicity_counts(gen)}, tmp_path / "m.png"),
        P.plot_phi_holes({"reference": ro, "a": go}, tmp_path / "phi.png"),
        P.plot_eta_pt({"reference": ro, "a": go}, tmp_path / "etapt.png"),
    ]
    for p in paths:
        assert p.read_bytes()[:8] == PNG, p
        assert p.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-", p
    from PIL import Image

    with Image.open(paths[0]) as im:  # 150 dpi
        assert round(im.info["dpi"][0]) == 150
    assert not list(tmp_path.glob(".*part*"))  # atomic writes leave no temporary files
    # the histograms are there for the API user: hist objects with weights, not normalised
    h = P.observable_histograms(specs["met"], ro, {"a": go})
    assert set(h) == {"reference", "a"} and h["a"].sum().value == pytest.approx(go.weight.sum())
    # colours never repeat within a figure (colour + line style for more than 16 samples)
    assert len({P.color_of(i) for i in range(40)}) == 40 and len(set(P.PALETTE)) == len(P.PALETTE)


def test_classifier_plots(tmp_path):
    from fastmc.evaluate.features import whole_event_features
    from fastmc.evaluate.wholeevent import (
        ClassifierConfig,
        summarise,
        whole_event_floor,
        whole_event_test,
    )

    ref, gen = synthetic_events(600, seed=1), synthetic_events(500, seed=2)
    cfg = ClassifierConfig(folds=2, min_bin_events=30)
    fr, fg = whole_event_features(ref), whole_event_features(gen)
    res = whole_event_test(fr, fg, config=cfg)
    d = summarise(res, whole_event_floor(fr, len(fg), config=cfg), fg, cfg)
    p1 = P.plot_auc_per_multiplicity({"a": d, "b": d}, tmp_path / "auc.png")
    p2 = P.plot_weights({"a": res}, tmp_path / "w.png")
    assert p1.read_bytes()[:8] == PNG and p2.read_bytes()[:8] == PNG and p2.with_suffix(".pdf").exists()


def test_cli_evaluate_on_real_files(tmp_path, data_dir):
    runner = CliRunner()
    out = tmp_path / "report"
    res = runner.invoke(
        app,
        [
            "evaluate",
            "-r", str(data_dir / "glgl1400_neutralino1100_chan1.csv"),
            "-g", str(data_dir / "sqsq1_sq1400_neut800_chan1.csv"),
            "-l", "sqsq1",
            "--channel", "chan1",
            "--repeats", "3",
            "--max-events", "1500",
            "--train", str(data_dir / "glgl1400_neutralino1100_chan1.csv"),
            "--no-plots",
            "-o", str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    # the reference was given as training sample too: not held out, and the terminal says so
    text = " ".join(res.output.split())  # the console wraps lines
    assert "not held out" in text and "subsampled" in text
    m = json.loads((out / "metrics.json").read_text())
    assert m["samples"]["sqsq1"]["n_compared"] == 750 and m["samples"]["sqsq1"]["physicality"]["valid"] == 1.0
    assert "whole-event AUC" in res.output and "FLAGGED" in res.output
    assert m["samples"]["sqsq1"]["memorisation"]["n_train"] == 4096 and m["warnings"]
    assert m["summary"][0]["auc"] > 0.65
    assert (out / "index.html").exists()


def test_cli_evaluate_errors(tmp_path, data_dir):
    runner = CliRunner()
    f = str(data_dir / "glgl1400_neutralino1100_chan1.csv")
    res = runner.invoke(app, ["evaluate", "-r", f, "-g", f, "-l", "a", "-l", "b", "-o", str(tmp_path)])
    assert res.exit_code == 1 and "--label" in res.output
    res = runner.invoke(app, ["evaluate", "-r", str(tmp_path / "nope.csv"), "-g", f, "-o", str(tmp_path)])
    assert res.exit_code == 1 and "nope.csv" in res.output
    res = runner.invoke(app, ["evaluate", "--help"])
    assert res.exit_code == 0 and "GeV" in res.output


@pytest.mark.slow
def test_cli_full_report_with_plots(tmp_path, data_dir):
    out = tmp_path / "report"
    res = CliRunner().invoke(
        app,
        [
            "evaluate",
            "-r", str(data_dir / "glgl1400_neutralino1100_chan1.csv"),
            "-g", str(data_dir / "sqsq1_sq1400_neut800_chan1.csv"),
            "-g", str(data_dir / "sqsq_sq1800_neut800_chan1.csv"),
            "--repeats", "4",
            "-o", str(out),
        ],
    )
    assert res.exit_code == 0, res.output
    pngs = sorted((out / "plots").rglob("*.png"))
    assert len(pngs) == 2 * len(OBSERVABLES) + 11  # each sample's observables + the overview
    assert len(list((out / "plots").rglob("*.pdf"))) == len(pngs)
    html = (out / "index.html").read_text()
    assert _offline(html) and html.count("data:image/png;base64,") == len(pngs)


def test_floor_config_is_validated_and_json_is_strict(tmp_path):
    with pytest.raises(ValueError, match="repeats must be >= 3"):
        FloorConfig(repeats=2)
    with pytest.raises(ValueError, match="fpd_points"):
        FloorConfig(fpd_points=2)
    with pytest.raises(TypeError):
        FloorConfig(10)  # keyword-only
    ref, gen = synthetic_events(300, seed=1), synthetic_events(300, seed=2)
    report = evaluate(ref, {"g": gen}, config=FloorConfig(repeats=3, whole_event=False), classifier=False)
    assert report.out_dir is None and report.plots == []
    text = report.to_json()  # no NaN/inf: they are null

    def bad_constant(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    m = json.loads(text, parse_constant=bad_constant)
    assert m["summary"][0]["auc"] is None and m["summary"][0]["fpd"] is None
