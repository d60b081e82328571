"""``fastmc demo`` and ``fastmc study``: the whole pipeline in one command."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from fastmc.cli._app import app, console, errors_as_exit, progress_bar
from fastmc.cli.models import _threads_option


def _summary_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The ranking as a rich table (one block of rows per process, best first)."""

    def num(x: Any, fmt: str) -> str:
        return "-" if x is None or x != x else format(x, fmt)

    several = len({r["process"] for r in rows}) > 1
    floors = {r["process"]: r["auc_floor"] for r in rows}
    caption = "AUC floor (reference half vs half): " + ", ".join(
        f"{p} {num(f, '.3f')}" for p, f in floors.items()
    )
    table = Table(title=title, title_justify="left", caption=caption, caption_justify="left")
    columns = [("process", "left")] if several else []
    columns += [
        ("#", "right"),
        ("model / prior", "left"),
        ("AUC ± err", "right"),
        ("W1/floor med", "right"),
        ("W1/floor worst", "right"),
        ("valid", "right"),
        ("events/s", "right"),
    ]
    for col, just in columns:
        table.add_column(col, justify=just, overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        cells = [r["process"]] if several else []
        cells += [
            str(r["rank"]),
            r["label"].replace("_alpha=", " a=").replace("_beta=", " b="),
            f"{num(r['auc'], '.3f')}±{num(r['auc_err'], '.3f')}",
            num(r["w1_ratio_median"], ".2f"),
            f"{num(r['w1_ratio_max'], '.1f')} {r['w1_worst']}",
            f"{num(100 * r['physicality'], '.0f')}%",
            num(r.get("events_per_s"), ",.0f"),
        ]
        table.add_row(*cells)
    return table


def _run(config: Any, fresh: bool, title: str, threads: int | None) -> None:
    from rich.console import Console

    from fastmc.cli.models import _set_threads
    from fastmc.workflows.study import run_study

    t0 = time.perf_counter()

    units = {"train": "batches", "fit": "iterations", "evaluate": "steps", "prepare": "events"}

    def progress(desc: str, total: float | None):
        return progress_bar(desc, total, unit=units.get(desc.split()[0], "events"))

    def log(msg: str) -> None:
        console.print(f"[dim]{msg}[/]", highlight=False)

    with errors_as_exit():
        _set_threads(threads)
        result = run_study(config, fresh=fresh, progress=progress, log=log)
    out = Console()  # the results on stdout, progress and notes on stderr
    out.print(_summary_table(result.rows, title))
    out.print(
        "AUC: classifier two-sample test vs held-out MC (0.5 = indistinguishable). W1/floor: "
        "Wasserstein-1 distance per observable divided by its statistical floor (1 = as close "
        "as a second MC sample); median and worst observable. valid: share of physically "
        "valid events. events/s: generation to Parquet on this machine."
    )
    for name, path in result.reports.items():
        out.print(f"report ({name}): [bold]{path}[/]", highlight=False)
    out.print(f"ranking: {result.output / 'summary.md'}; took {time.perf_counter() - t0:.0f} s",
              highlight=False)


@app.command("demo")
def demo_cmd(
    output: Path = typer.Option(Path("demo-output"), "-o", "--output", help="Output folder."),
    events: int = typer.Option(20_000, "-n", "--events", help="ttbar events to simulate."),
    jobs: int = typer.Option(0, "--jobs", help="Simulation processes (0 = all cores)."),
    minutes: float = typer.Option(
        3.0, "--minutes-per-model", help="Training wall time per model, minutes."
    ),
    generate_events: int = typer.Option(
        20_000, "--generate-events", help="Events generated per model and prior."
    ),
    flow: bool = typer.Option(True, "--flow/--no-flow", help="Include the structure-first flow."),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every stage instead of reusing output."),
    threads: int | None = _threads_option(),
) -> None:
    """Run the whole pipeline on Pythia ttbar: simulate, prepare, train a beta-VAE, an alpha-VAE
    and a flow, fit a Gaussian-mixture prior, generate from every prior and evaluate against
    held-out events; writes OUTPUT/report/index.html and prints a summary table.
    Under 20 minutes on 2 cores with the defaults; re-running reuses finished stages."""
    from fastmc.workflows.demo import demo_config

    with errors_as_exit():
        config = demo_config(
            output=str(output),
            events=events,
            jobs=jobs or None,
            minutes_per_model=minutes,
            generate_events=generate_events,
            flow=flow,
        )
    _run(config, fresh, "fastmc demo: ttbar, generators vs held-out Pythia events", threads)


@app.command("study")
def study_cmd(
    config_file: Path = typer.Argument(..., help="Study YAML file (see fastmc/configs/*.yaml)."),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Output folder (default: the file's `output`)."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Redo every stage instead of reusing output."),
    threads: int | None = _threads_option(),
) -> None:
    """Run a grid of models and priors on one or more processes, evaluate each against held-out
    events and write one comparison report with a ranking table (OUTPUT/summary.md, study.json)."""
    import dataclasses

    from fastmc.workflows.study import load_study_config

    with errors_as_exit():
        config = load_study_config(config_file)
    if output is not None:
        config = dataclasses.replace(config, output=str(output))
    _run(config, fresh, f"fastmc study: {config.name}", threads)
