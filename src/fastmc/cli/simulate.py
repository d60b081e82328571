"""``fastmc simulate``: Pythia 8 + FastJet + the Dark Machines detector response."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path

import typer

from fastmc.cli._app import app, console, errors_as_exit, fail, progress_bar


def _parse_params(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise fail(f"--param expects KEY=VALUE (e.g. m_stop=1000), got {item!r}")
        out[key.strip()] = value.strip()
    return out


@contextlib.contextmanager
def _sigterm_exits():
    """Make a plain `kill` run the clean-up (temporary folder, partial output removed)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _catalogue_table():
    from rich.markup import escape
    from rich.table import Table

    from fastmc.simulate.processes import CATALOGUE, UNSUPPORTED

    table = Table(title="fastmc simulate: process catalogue (masses and cuts in GeV)")
    for col in ("process", "what", "parameters (defaults)", "generator cuts", "decays"):
        table.add_column(col, overflow="fold")
    for p in CATALOGUE.values():
        params = ", ".join(f"{k}={v:g}" for k, v in p.params.items()) or "-"
        chans = "; ".join(
            f"{c}: " + ", ".join(f"{k}={v:g}" for k, v in d.items())
            for c, d in p.channel_params.items()
        )
        if chans:
            params += f" [{chans}]"
        table.add_row(*(escape(x) for x in (p.name, p.description, params, p.generator_cuts,
                                             p.decays)))
    missing = Table(title="Dark Machines IDs fastmc cannot make")
    missing.add_column("process")
    missing.add_column("why", overflow="fold")
    for name, why in UNSUPPORTED.items():
        missing.add_row(escape(name), escape(why))
    return table, missing


@app.command("simulate")
def simulate_cmd(
    process: str = typer.Argument(
        None,
        help="Dark Machines process ID (ttbar, njets, z_jets, stop_02, ...); see --list.",
        show_default=False,
    ),
    n_events: int = typer.Option(
        None, "-n", "--events", help="Number of STORED events (after the storage requirement "
        "and --channel).", show_default=False,
    ),
    output: Path = typer.Option(
        None, "-o", "--output", help="Output file: .csv/.csv.gz (Dark Machines, MeV), "
        ".parquet or .root (GeV). Written atomically.", show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", help="Master seed S; same S and --jobs give "
                             "byte-identical output."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Worker processes (independent seeds "
                             "derived from S)."),
    channel: str = typer.Option(
        None, "--channel", help="Keep only events of a Dark Machines channel: chan1, chan2a, "
        "chan2b or chan3 (default: the storage requirement only).", show_default=False,
    ),
    param: list[str] = typer.Option(
        [], "--param", help="Process parameter KEY=VALUE, GeV (e.g. m_stop=1000, "
        "pthat_min=300); repeatable.", show_default=False,
    ),
    batch_size: int = typer.Option(200, "--batch-size", help="Events per Pythia batch."),
    list_: bool = typer.Option(False, "--list", help="Print the process catalogue and exit."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output (never one of the inputs)."
    ),
) -> None:
    """Simulate events with Pythia 8 (pp, 13 TeV, default tune, MPI and hadronisation on) and
    the Dark Machines detector response (Delphes ATLAS card: anti-kT R=0.6 jets, b-tagging,
    lepton/photon efficiencies and isolation, calorimeter MET with muons invisible).

    Energies and momenta are in GeV (MeV in .csv output). Each event's weight is
    sigma x 10 fb^-1 / N with sigma the cross section of the stored events (Pythia's estimate).
    """
    from fastmc.simulate.processes import UnknownProcessError, get_process

    if list_:
        table, missing = _catalogue_table()
        console.print(table)
        console.print(missing)
        return
    if process is None:
        raise fail("give a PROCESS (see `fastmc simulate --list`)")
    if n_events is None or output is None:
        raise fail("give the number of events with -n N and the output file with -o OUT")
    if n_events < 1 or jobs < 1:
        raise fail(f"-n and --jobs must be >= 1, got -n {n_events} --jobs {jobs}")
    params = _parse_params(param)
    from fastmc.io import check_output, detect_format
    from fastmc.simulate.run import simulate_to_file

    check_output(output, overwrite=overwrite)

    try:
        detect_format(output)
        get_process(process).resolve_params(params, channel)
    except UnknownProcessError as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    start = time.perf_counter()
    with _sigterm_exits():
        with errors_as_exit():
            try:
                with progress_bar(f"simulate {process}", total=n_events) as advance:
                    meta = simulate_to_file(
                        output,
                        process,
                        n_events,
                        seed=seed,
                        jobs=jobs,
                        channel=channel,
                        params=params,
                        progress=advance,
                        batch_size=batch_size,
                    )
            except ValueError as exc:
                raise fail(str(exc)) from None
    wall = time.perf_counter() - start
    console.print(
        f"[green]wrote[/] {output}: {n_events} events of {process} "
        f"({meta['n_generated']} generated, sigma = {meta['sigma_fb']:.4g} fb, "
        f"weight = {meta['weight']:.4g}) in {wall:.1f} s "
        f"({n_events / wall:.1f} stored events/s, {meta['n_generated'] / wall:.1f} generated/s)"
    )
    if meta["n_truncated"]:
        console.print(
            f"[yellow]note:[/] {meta['n_truncated']} events had more than "
            f"{meta['max_objects']} objects and were cut (photons, muons, electrons dropped "
            "first, Dark Machines order)"
        )
