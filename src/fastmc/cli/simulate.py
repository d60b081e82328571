"""``fastmc simulate``: Pythia 8 + FastJet + the Dark Machines detector response."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Literal

import typer

from fastmc.cli._app import app, console, errors_as_exit, fail, progress_bar

Channel = Literal["chan1", "chan2a", "chan2b", "chan3"]


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


def _params_text(p) -> str:
    """``m_stop=800 m_neutralino=100`` plus the channel overrides, GeV."""
    text = " ".join(f"{k}={v:g}" for k, v in p.params.items()) or "-"
    for chan, values in p.channel_params.items():
        text += f"; {chan}: " + " ".join(f"{k}={v:g}" for k, v in values.items())
    return text


def _catalogue_compact():
    """The catalogue as one compact table (process, what, parameters) that fits 80 columns."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from fastmc.simulate.processes import CATALOGUE

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, title_justify="left",
                  title="Processes fastmc simulate makes (parameters in GeV; --param KEY=VALUE)")
    table.add_column("process", no_wrap=True)
    table.add_column("what", ratio=1)
    table.add_column("parameters (defaults)", max_width=30)
    for p in CATALOGUE.values():
        params = " ".join(f"{k}={v:g}" for k, v in p.params.items()) or "-"
        what = p.description.split(" (")[0] if not p.description.startswith("Z'") else \
            p.description.replace(" (NewGaugeBoson, SM-like couplings)", "")
        table.add_row(escape(p.name), escape(what), escape(params))
    return table


def _catalogue_details(width: int) -> str:
    """Every field of every process, and the Dark Machines IDs fastmc cannot make, as text."""
    import textwrap

    from fastmc.simulate.processes import CATALOGUE, UNSUPPORTED

    out = ["Processes fastmc simulate makes (masses, cuts and parameters in GeV)", ""]
    for p in CATALOGUE.values():
        out.append(textwrap.fill(f"{p.name}: {p.description}", width, subsequent_indent="  ",
                                 break_long_words=False, break_on_hyphens=False))
        for label, text in (("parameters", _params_text(p)), ("generator cuts", p.generator_cuts),
                            ("decays", p.decays)):
            out.append(textwrap.fill(text, width, initial_indent=f"  {label + ':':<16}",
                                     subsequent_indent=" " * 18, break_long_words=False,
                                     break_on_hyphens=False))
        out.append("")
    out.append("Dark Machines IDs fastmc cannot make")
    for name, why in UNSUPPORTED.items():
        out.append(textwrap.fill(why, width, initial_indent=f"  {name + ':':<16}",
                                 subsequent_indent=" " * 18, break_long_words=False,
                                 break_on_hyphens=False))
    return "\n".join(out)


def _print_catalogue(details: bool) -> None:
    """The catalogue on stdout (requested output), words never broken."""
    import shutil

    from rich.console import Console

    from fastmc.simulate.processes import UNSUPPORTED

    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    if details:
        typer.echo(_catalogue_details(width))
        return
    out = Console(width=width, soft_wrap=False)
    out.print(_catalogue_compact())
    out.print(
        "Dark Machines IDs fastmc cannot make: " + ", ".join(UNSUPPORTED)
        + ".  `fastmc simulate --list --details` shows cuts, decays and why.",
        highlight=False, markup=False,
    )


@app.command("simulate")
def simulate_cmd(
    process: str = typer.Argument(
        None,
        help="Dark Machines process ID (ttbar, njets, z_jets, stop_02, ...); see --list.",
        show_default=False,
    ),
    n_events: int = typer.Option(
        None, "-n", "--events", min=1, help="Number of STORED events (after the storage "
        "requirement and --channel).", show_default=False,
    ),
    output: Path = typer.Option(
        None, "-o", "--output", help="Output file: .csv/.csv.gz (Dark Machines, MeV), "
        ".parquet or .root (GeV). Written atomically.", show_default=False,
    ),
    seed: int = typer.Option(0, "--seed", help="Master seed S. The output depends on S AND "
                             "--jobs: the same S and --jobs give byte-identical output."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Worker processes, each with its "
                             "own seed derived from S; part of the seed (another --jobs gives "
                             "other, equally valid events)."),
    channel: Channel = typer.Option(
        None, "--channel", help="Keep only events of a Dark Machines channel "
        "(default: the storage requirement only).", show_default=False,
    ),
    param: list[str] = typer.Option(
        [], "--param", help="Process parameter KEY=VALUE, GeV (e.g. m_stop=1000, "
        "pthat_min=300); repeatable.", show_default=False,
    ),
    batch_size: int = typer.Option(200, "--batch-size", min=1, help="Events per Pythia batch."),
    list_: bool = typer.Option(False, "--list", help="Print the process catalogue (stdout) "
                               "and exit."),
    details: bool = typer.Option(False, "--details", help="With --list: every field (cuts, "
                                 "decays, channel settings) and the IDs fastmc cannot make."),
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

    if list_ or details:
        _print_catalogue(details)
        return
    if process is None:
        raise fail("give a PROCESS (see `fastmc simulate --list`)")
    if n_events is None or output is None:
        raise fail("give the number of events with -n N and the output file with -o OUT")
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
        f"({meta['n_generated']} generated; sigma = {meta['sigma_fb']:.4g} fb; weight "
        f"{meta['weight']:.4g} per event = sigma x 10 fb^-1 / N) in {wall:.1f} s "
        f"({n_events / wall:.1f} stored events/s, {meta['n_generated'] / wall:.1f} generated/s);"
        f" --seed {seed} with --jobs {jobs} (both make the seed)",
        highlight=False,
    )
    if meta["n_truncated"]:
        console.print(
            f"[yellow]note:[/] {meta['n_truncated']} events had more than "
            f"{meta['max_objects']} objects and were cut (photons, muons, electrons dropped "
            "first, Dark Machines order)"
        )
