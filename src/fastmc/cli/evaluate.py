"""``fastmc evaluate``: generated vs reference events, every metric with its floor."""

from __future__ import annotations

from pathlib import Path

import typer

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
    channel: str = typer.Option(
        None, "--channel", help="Dark Machines channel (chan1, chan2a, chan2b, chan3): physicality then "
        "requires passing its selection (cuts in GeV).",
    ),
    max_events: int = typer.Option(
        None, "--max-events", min=20, help="Use at most this many events per sample (a seeded random subset; "
        "default: all).",
    ),
    repeats: int = typer.Option(10, "--repeats", min=3, help="Seeded splits for the floors (default 10)."),
    seed: int = typer.Option(0, "--seed", help="Seed of every split, subsample and classifier (default 0)."),
    no_classifier: bool = typer.Option(False, "--no-classifier", help="Skip the classifier two-sample test."),
    no_plots: bool = typer.Option(False, "--no-plots", help="Skip the plots (faster)."),
    out: Path = typer.Option(..., "-o", "--output", help="Report folder: metrics.json, plots/*.png, index.html."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Write into an existing report folder (its report files are "
        "replaced, other files kept)."
    ),
) -> None:
    """Compare generated events with reference events: W1 (units of the reference std), KS,
    JS, chi2 per observable (GeV, radians), FPD, KPD, classifier AUC and physicality, each
    with its statistical floor (two reference samples of the same size), ratio and
    significance.  Writes a self-contained index.html that opens offline."""
    from fastmc.evaluate.floors import FloorConfig
    from fastmc.evaluate.report import evaluate, evaluation_steps

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
    groups = [reference, *([g] for g in generated), *([reference2] if reference2 else [])]
    inputs = [p for group in groups for p in expand_paths(group)]
    check_output(out, inputs=inputs, overwrite=overwrite, kind="folder")
    with errors_as_exit():
        try:
            cfg = FloorConfig(repeats=repeats)
            if console.is_terminal:  # in logs and pipes an error stays the only line
                console.print("reading events ...", highlight=False)
            ref = _read(reference, "--reference")
            gens = {lab: _read([g], f"--generated {g}") for lab, g in zip(labels, generated, strict=True)}
            ref2 = _read(reference2, "--reference2") if reference2 else None
            total = evaluation_steps(len(gens), repeats=repeats, classifier=not no_classifier, plots=not no_plots)
            with progress_bar("evaluating", total, unit="steps") as advance:
                report = evaluate(
                    ref, gens, reference2=ref2, channel=channel, out_dir=out, seed=seed, config=cfg,
                    classifier=not no_classifier, plots=not no_plots, max_events=max_events, progress=advance,
                )
        except FastMCError:
            raise
        except ValueError as exc:
            raise fail(str(exc)) from None
    for row in report.summary:
        console.print(
            f"{row.rank}. {row.label}: AUC {row.auc:.3f} +- {row.auc_err:.3f} (floor {row.auc_floor:.3f}), "
            f"W1/floor median {row.w1_ratio_median:.2f} worst {row.w1_ratio_max:.2f} ({row.w1_worst}), "
            f"FPD {row.fpd:.3g} (floor {row.fpd_floor:.3g}), KPD {row.kpd:.3g} (floor {row.kpd_floor:.3g}), "
            f"physicality {row.physicality:.3f}",
            highlight=False, markup=False,
        )
    console.print(f"report written to {out / 'index.html'}", highlight=False)
