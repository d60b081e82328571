"""``fastmc evaluate``: generated vs reference events, every metric with its floor."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from fastmc.cli._app import app, console, errors_as_exit, fail, progress_bar
from fastmc.errors import FastMCError

__all__ = ["evaluate_cmd"]

_FORMATS = "Dark Machines CSV (.csv, .csv.gz; MeV), .parquet or .root (GeV); globs allowed"


def _read(paths: list[str], what: str):
    from fastmc.io import read_events

    try:
        return read_events(paths)
    except FastMCError:
        raise
    except (FileNotFoundError, ValueError) as exc:
        raise fail(f"{what}: {exc}") from None


@app.command("evaluate")
def evaluate_cmd(
    reference: list[str] = typer.Option(
        ..., "--reference", "-r", help=f"Held-out reference events (repeatable): {_FORMATS}."
    ),
    generated: list[str] = typer.Option(
        ..., "--generated", "-g", help="A generated sample (repeat for several samples; each one file or glob)."
    ),
    label: list[str] = typer.Option(
        None, "--label", "-l", help="Name of each generated sample, in order (default: the file names)."
    ),
    reference2: list[str] = typer.Option(
        None, "--reference2", help="A second independent reference sample: floors become reference vs reference2 "
        "instead of reference half vs half.",
    ),
    channel: Literal["chan1", "chan2a", "chan2b", "chan3"] | None = typer.Option(
        None, "--channel", help="Dark Machines channel (chan1, chan2a, chan2b, chan3): physicality then "
        "requires passing its selection (cuts in GeV).", show_default=False,
    ),
    max_events: int = typer.Option(
        None, "--max-events", min=20, help="Use at most this many events per sample (a seeded random subset; "
        "default: all).",
    ),
    repeats: int = typer.Option(10, "--repeats", min=3, help="Seeded splits for the floors (default 10)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every split, subsample and classifier (default 0)."),
    no_classifier: bool = typer.Option(False, "--no-classifier", help="Skip the whole-event classifier test "
                                       "(the headline)."),
    model: Literal["hgb", "mlp"] = typer.Option("hgb", "--classifier-model", help="Whole-event "
                                                "classifier: hgb (gradient boosting) or mlp (small "
                                                "torch MLP)."),
    folds: int = typer.Option(5, "--folds", min=2, help="k of the k-fold scoring (every event scored once)."),
    n_jets: int = typer.Option(8, "--n-jets", min=1, help="Jets per event in the whole-event features."),
    train: list[str] = typer.Option(
        None, "--train", help="The generators' training sample: memorisation check (generated events closer "
        "to it than held-out reference events are?) and a warning if the reference overlaps it.",
    ),
    reconstruction: list[str] = typer.Option(
        None, "--reconstruction", help="Label of a sample that reconstructs real events (e.g. a VAE's truth "
        "prior): evaluated like the others, labelled 'reconstruction, not generation' (repeatable).",
    ),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the plots (faster)."),
    per_process: bool = typer.Option(
        False, "--per-process", help="Evaluate each process on its own (events split by their process "
        "names): OUTPUT/<process>/ reports and OUTPUT/per_process.json."
    ),
    out: Path = typer.Option(..., "-o", "--output", help="Report folder: metrics.json, plots/*.png, index.html."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Write into an existing report folder (its report files are "
        "replaced, other files kept)."
    ),
) -> None:
    """Compare generated events with reference events.  Headline: a classifier on whole-event
    features (every object, jet pair and triplet; GeV), each sample against the whole
    reference, k-fold, AUC with its error and floor (two parts of the reference) and per jet
    multiplicity.  Also W1 (units of the reference std), KS, JS, chi2 per observable, FPD, KPD
    with floors, physicality, pile-ups at the jet radius and pT thresholds, shared events and
    (with --train) memorisation.  Writes metrics.json, plots (PNG + PDF) and a self-contained
    index.html that opens offline."""
    from fastmc.evaluate.features import FeatureConfig
    from fastmc.evaluate.floors import FloorConfig
    from fastmc.evaluate.report import evaluate, evaluation_steps
    from fastmc.evaluate.wholeevent import ClassifierConfig

    labels = list(label or [])
    if labels and len(labels) != len(generated):
        raise fail(f"{len(labels)} --label for {len(generated)} --generated; give one per sample or none")
    if not labels:
        labels = [Path(g).name.split(".")[0] or f"generated{i + 1}" for i, g in enumerate(generated)]
    if len(set(labels)) != len(labels) or "reference" in labels:
        raise fail(f"labels must be distinct and not 'reference', got {labels}; use --label")
    from fastmc.io import check_output, expand_paths

    # missing inputs first, then the output (never one of the inputs, replaced only with
    # --overwrite); each sample is expanded on its own (a sample may be given twice)
    groups = [reference, *([g] for g in generated), *([reference2] if reference2 else []), *([train] if train else [])]
    inputs = [p for group in groups for p in expand_paths(group)]
    check_output(out, inputs=inputs, overwrite=overwrite, kind="folder")
    with errors_as_exit():
        try:
            cfg = FloorConfig(repeats=repeats)
            ccfg = ClassifierConfig(model=model, folds=folds)
            fcfg = FeatureConfig(n_jets=n_jets, n_pair_jets=min(6, n_jets), n_triplet_jets=min(6, n_jets),
                                 n_lepton_jets=min(4, n_jets))
            if console.is_terminal:  # in logs and pipes an error stays the only line
                console.print("reading events ...", highlight=False)
            ref = _read(reference, "--reference")
            gens = {lab: _read([g], f"--generated {g}") for lab, g in zip(labels, generated, strict=True)}
            ref2 = _read(reference2, "--reference2") if reference2 else None
            train_ev = _read(train, "--train") if train else None
            if per_process:
                _per_process(ref, gens, out, dict(
                    reference2=ref2, channel=channel, seed=seed, config=cfg, classifier=not no_classifier,
                    plots=not no_plots, max_events=max_events, feature_config=fcfg, classifier_config=ccfg,
                    train=train_ev, reconstruction=tuple(reconstruction or ())))
                return
            total = evaluation_steps(len(gens), repeats=repeats, classifier=not no_classifier, plots=not no_plots)
            with progress_bar("evaluating", total, unit="steps") as advance:
                report = evaluate(
                    ref, gens, reference2=ref2, channel=channel, out_dir=out, seed=seed, config=cfg,
                    classifier=not no_classifier, plots=not no_plots, max_events=max_events, progress=advance,
                    feature_config=fcfg, classifier_config=ccfg, train=train_ev,
                    reconstruction=tuple(reconstruction or ()),
                )
        except FastMCError:
            raise
        except ValueError as exc:
            raise fail(str(exc)) from None
    for w in report.metrics.get("warnings", []):
        console.print(f"warning: {w}", highlight=False, markup=False, style="yellow")
    out_console = Console(soft_wrap=True)  # the ranking on stdout; notes stay on stderr
    we = report.metrics.get("whole_event") or {"samples": {}}
    for row in report.summary:
        d = we["samples"].get(row.label)
        if d:
            flag = "  FLAGGED" if d["flagged"] else ""
            per = ", ".join(f"{b['n_jets']}j {_num(b['auc'])}" for b in d["per_n_jets"])
            kind = " (reconstruction, not generation)" if row.kind == "reconstruction" else ""
            out_console.print(
                f"{row.rank}. {row.label}{kind}: whole-event AUC {_num(d['auc'])} +- {_num(d['auc_err'])} "
                f"(floor {_num(d['floor_auc'])} +- {_num(d['floor_auc_err'])}; {_num(d['significance'], '.1f')} "
                f"sigma){flag}; n = {d['n_generated']} generated vs {d['n_reference']} reference "
                f"(floor {d['floor_n_generated']} vs {d['floor_n_reference']}); per jet multiplicity: {per}",
                highlight=False, markup=False,
            )
        from fastmc.evaluate.generation import generation_note

        note = generation_note(report.metrics["samples"].get(row.label, {}).get("generation"))
        if note:
            out_console.print(f"   generation: {note}", highlight=False, markup=False)
        out_console.print(
            f"   W1/floor median {_num(row.w1_ratio_median, '.2f')} worst {_num(row.w1_ratio_max, '.2f')} "
            f"({row.w1_worst}), FPD {_num(row.fpd, '.3g')} (floor {_num(row.fpd_floor, '.3g')}), "
            f"KPD {_num(row.kpd, '.3g')} (floor {_num(row.kpd_floor, '.3g')}), physicality {_num(row.physicality)}",
            highlight=False, markup=False,
        )
    console.print(f"report written to {out / 'index.html'}", highlight=False)


def _per_process(ref, gens, out: Path, options: dict) -> None:
    """``--per-process``: one evaluation per process (fastmc.workflows.evaluate_processes)."""
    from fastmc.workflows.evaluate_processes import evaluate_per_process

    if options["reference2"] is not None or options["train"] is not None:
        raise fail("--per-process does not take --reference2 or --train yet; evaluate one process at a time")
    options = {k: v for k, v in options.items() if k not in ("reference2", "train")}
    res = evaluate_per_process(ref, gens, out, on_process=lambda p: console.print(f"evaluating {p} ...",
                                                                                  highlight=False), **options)
    for proc, entry in res["processes"].items():
        for lab, d in entry["whole_event_auc"].items():
            console.print(f"{proc} / {lab}: whole-event AUC {_num(d['auc'])} +- {_num(d['auc_err'])} "
                          f"(floor {_num(d['floor_auc'])}); n reference {entry['n_reference']}",
                          highlight=False, markup=False)
    for proc, why in res["skipped"].items():
        console.print(f"skipped {proc}: {why}", highlight=False, markup=False)
    console.print(f"reports written to {out}/<process>/index.html and {out / 'per_process.json'}",
                  highlight=False)


def _num(x: float | None, fmt: str = ".3f") -> str:
    """A number for the terminal; 'skipped' when there is none (no nan on screen)."""
    if x is None or x != x or x in (float("inf"), float("-inf")):
        return "skipped"
    return format(x, fmt)
