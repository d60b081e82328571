"""``fastmc convert`` and ``fastmc info``: event files in, event files or tables out."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from fastmc.cli._app import (
    app,
    check_on_error,
    console,
    errors_as_exit,
    fail,
    on_error_option,
    progress_bar,
)
from fastmc.events import DEFAULT_MAX_OBJECTS

__all__ = ["convert", "info"]

_FORMATS = "Dark Machines CSV (.csv, .csv.gz; MeV), Parquet (.parquet) or ROOT (.root); GeV inside"


def _print_skips(report: dict) -> None:
    if report.get("skipped"):
        reasons = ", ".join(f"{r}: {c}" for r, c in report["skipped_by_reason"].items())
        console.print(
            f"[yellow]skipped {report['skipped']} malformed line(s)[/] ({reasons})", highlight=False
        )
        for message in report.get("first_errors", [])[:3]:
            console.print(f"  {message}", highlight=False, markup=False)
    if report.get("truncated"):
        console.print(
            f"[yellow]truncated {report['truncated']} event(s)[/] with more than --max-objects "
            "objects",
            highlight=False,
        )


@app.command("convert")
def convert(
    inputs: list[str] = typer.Argument(
        ..., help=f"Input files or glob patterns: {_FORMATS}. Format by extension."
    ),
    output: Path = typer.Option(
        ..., "-o", "--output", help="Output file; format by extension (.csv, .csv.gz, .parquet, .root)."
    ),
    on_error: str = on_error_option(),
    max_objects: int = typer.Option(
        DEFAULT_MAX_OBJECTS, "--max-objects", help="K, the most objects an event may have."
    ),
    truncate: bool = typer.Option(
        False, "--truncate", help="Cut events with more than --max-objects objects instead of failing."
    ),
    chunk_size: int = typer.Option(
        100_000, "--chunk-size", help="Events read and written at a time (bounds the memory)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output (never one of the inputs)."
    ),
) -> None:
    """Convert event files between Dark Machines CSV (MeV), Parquet and ROOT (GeV).

    Several inputs are concatenated into one output.  CSV -> CSV reproduces real Dark Machines
    files byte for byte.  The output appears only when the conversion succeeded.
    """
    from fastmc.io import check_output, detect_format, expand_paths, iter_events, open_writer

    check_on_error(on_error)
    report: dict = {}
    with errors_as_exit():
        try:
            paths = expand_paths(inputs)
            detect_format(output)
            for p in paths:
                detect_format(p)
        except (FileNotFoundError, ValueError) as exc:
            raise fail(str(exc)) from None
        check_output(output, inputs=paths, overwrite=overwrite)
        with progress_bar("converting", None) as advance, open_writer(output) as writer:
            for chunk in iter_events(
                paths,
                chunk_size=chunk_size,
                on_error=on_error,
                max_objects=max_objects,
                truncate=truncate,
                report=report,
            ):
                writer.write(chunk)
                advance(len(chunk))
    _print_skips(report)
    console.print(f"wrote {report.get('events', 0)} events to {output}", highlight=False)


def _store_summary(path: Path) -> None:
    try:
        from fastmc.data.store import summary_table
    except ImportError as exc:
        raise fail(
            f"{path} is an event store (it holds meta.json) but the store summary is not "
            f"available in this installation ({exc})"
        ) from None
    with errors_as_exit():
        Console().print(summary_table(path))


def _fmt(x: float) -> str:
    return f"{x:,.1f}"


def _tables(summary: dict, title: str) -> list[Table]:
    n = summary["events"]
    procs = Table(title=f"{title}: {n:,} events", title_justify="left")
    for col in ("process", "events", "share", "sum of weights (events in 10 fb^-1)"):
        procs.add_column(col, justify="left" if col == "process" else "right")
    for name, entry in summary["processes"].items():
        share = entry["events"] / n if n else 0.0
        procs.add_row(name, f"{entry['events']:,}", f"{share:.2%}", f"{entry['weight_sum']:.6g}")

    objects = Table(title="objects per event", title_justify="left")
    for col in ("type", "total", "mean", "max"):
        objects.add_column(col, justify="left" if col == "type" else "right")
    for name, entry in summary["objects"].items():
        objects.add_row(name, f"{entry['total']:,}", f"{entry['mean']:.3f}", str(entry["max"]))

    quant = Table(title="MET and HT quantiles (GeV)", title_justify="left")
    quant.add_column("quantity")
    for q in summary["met_quantiles"]:
        quant.add_column({"0": "min", "1": "max"}.get(q, f"{float(q):.0%}"), justify="right")
    quant.add_row("MET", *map(_fmt, summary["met_quantiles"].values()))
    quant.add_row("HT", *map(_fmt, summary["ht_quantiles"].values()))

    sel = Table(title="Dark Machines selections", title_justify="left")
    for col in ("selection", "events passing", "share"):
        sel.add_column(col, justify="left" if col == "selection" else "right")
    for name, entry in summary["selections"].items():
        sel.add_row(name, f"{entry['events']:,}", f"{entry['share']:.2%}")
    return [procs, objects, quant, sel]


@app.command("info")
def info(
    paths: list[str] = typer.Argument(
        ..., help=f"Event files or globs ({_FORMATS}), or event-store directories (with meta.json)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
    on_error: str = on_error_option(),
    max_objects: int = typer.Option(
        DEFAULT_MAX_OBJECTS, "--max-objects", help="K, the most objects an event may have."
    ),
    truncate: bool = typer.Option(
        False, "--truncate", help="Cut events with more than --max-objects objects instead of failing."
    ),
    chunk_size: int = typer.Option(100_000, "--chunk-size", help="Events read at a time."),
) -> None:
    """Summarise event files: events per process, objects per event (mean, max) by type,
    MET and HT quantiles in GeV (HT = scalar sum of jet pT), and the share of events passing
    the Dark Machines channel selections (chan1, chan2a, chan2b, chan3) and the storage
    requirement.  All files given are summarised together; store directories separately.
    """
    from fastmc.io import expand_paths, iter_events
    from fastmc.io.summary import summarize

    check_on_error(on_error)
    files: list[str] = []
    for p in paths:
        if Path(p).is_dir():
            if not (Path(p) / "meta.json").is_file():
                raise fail(f"{p} is a directory without meta.json (not an event store)")
            _store_summary(Path(p))
        else:
            files.append(p)
    if not files:
        return
    report: dict = {}
    with errors_as_exit():
        try:
            expanded = expand_paths(files)
        except (FileNotFoundError, ValueError) as exc:
            raise fail(str(exc)) from None
        chunks = iter_events(
            expanded,
            chunk_size=chunk_size,
            on_error=on_error,
            max_objects=max_objects,
            truncate=truncate,
            report=report,
        )
        try:
            if as_json:
                summary = summarize(chunks)
            else:
                with progress_bar("reading", None) as advance:
                    summary = summarize(chunks, progress=advance)
        except ValueError as exc:  # unknown extension
            raise fail(str(exc)) from None
    _print_skips(report)
    if as_json:
        typer.echo(json.dumps(summary, indent=2, allow_nan=False))  # strict JSON, never NaN
        return
    title = str(expanded[0]) if len(expanded) == 1 else f"{len(expanded)} files"
    out = Console()
    for table in _tables(summary, title):
        out.print(table)
