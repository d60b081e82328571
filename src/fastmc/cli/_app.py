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
from fastmc.cli._errors import ErrorMappingGroup, debug_enabled
from fastmc.cli._help import HelpStyle


class FastmcGroup(HelpStyle, ErrorMappingGroup):
    """The ``fastmc`` group: one help style (:mod:`._help`), one exception map (:mod:`._errors`)."""


app = typer.Typer(
    name="fastmc",
    help=(
        "fastmc: fast deep generative surrogates for LHC Monte Carlo events. "
        "Energies and momenta are in GeV inside fastmc (MeV in Dark Machines CSV files)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=FastmcGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fastmc {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(
        False, "--debug", help="Show the full traceback of an error (for bug reports)."
    ),
) -> None:
    """fastmc command line."""
    ctx.meta["fastmc.debug"] = debug


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error in red and return an Exit to raise (``raise fail(...)``)."""
    import sys
    import traceback

    if debug_enabled() and sys.exc_info()[0]:
        traceback.print_exc()
    text = " ".join(str(message).split())  # always one line
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, markup=True,
                  soft_wrap=True)
    return typer.Exit(code)


ON_ERROR_CHOICES = ("raise", "skip")


def on_error_option():
    """The ``--on-error {raise,skip}`` option of every command that reads event files."""
    return typer.Option(
        "raise",
        "--on-error",
        metavar="raise|skip",
        help="raise: stop at the first malformed line (exit 1, nothing written); "
        "skip: skip malformed lines, count them and say why.",
    )


def check_on_error(on_error: str) -> None:
    """Exit with a one-line error unless ``on_error`` is one of :data:`ON_ERROR_CHOICES`."""
    if on_error not in ON_ERROR_CHOICES:
        raise fail(f"--on-error must be 'raise' or 'skip', got {on_error!r}")


@contextlib.contextmanager
def errors_as_exit() -> Iterator[None]:
    """Mark a block whose errors are user errors.  The mapping itself is done once, by the
    command group (:mod:`fastmc.cli._errors`): fastmc's own exceptions (among them
    :class:`~fastmc.errors.ConfigError`), ValueError (bad arguments), OSError and damaged-file
    errors become one line (exit 1), or with ``fastmc --debug`` a traceback; anything else
    is a bug and keeps its traceback."""
    yield


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
    # only on a terminal: in logs and pipes an error stays the only line on stderr
    with Progress(*columns, console=console, transient=False,
                  disable=not console.is_terminal) as prog:
        task = prog.add_task(description, total=total, rate="")

        def advance(n: float) -> None:
            prog.advance(task, n)
            t = prog.tasks[task]
            speed = t.finished_speed or t.speed
            if speed:
                prog.update(task, rate=f"{speed:,.0f} {unit}/s")

        yield advance
