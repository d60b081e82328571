"""The typer application object and helpers shared by the command modules."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fastmc import __version__
from fastmc.errors import FastMCError

app = typer.Typer(
    name="fastmc",
    help=(
        "fastmc: fast deep generative surrogates for LHC Monte Carlo events. "
        "Energies and momenta are in GeV inside fastmc (MeV in Dark Machines CSV files)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fastmc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """fastmc command line."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error in red and return an Exit to raise (``raise fail(...)``)."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True)
    return typer.Exit(code)


@contextlib.contextmanager
def errors_as_exit() -> Iterator[None]:
    """Turn fastmc's own exceptions into a one-line error and exit status 1."""
    try:
        yield
    except FastMCError as exc:
        raise fail(str(exc)) from None


@contextlib.contextmanager
def progress_bar(
    description: str, total: float | None, unit: str = "events"
) -> Iterator[Callable[[float], None]]:
    """A rich progress bar with rate; yields ``advance(n)`` to pass to library callbacks."""
    columns = [
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as prog:
        task = prog.add_task(description, total=total, rate="")

        def advance(n: float) -> None:
            prog.advance(task, n)
            t = prog.tasks[task]
            speed = t.finished_speed or t.speed
            if speed:
                prog.update(task, rate=f"{speed:,.0f} {unit}/s")

        yield advance
