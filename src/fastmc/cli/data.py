"""``fastmc prepare``: parse event files once into an event store; ``fastmc verify``: the full
integrity check of a store (see fastmc.data.store)."""

from __future__ import annotations

from pathlib import Path

import typer

from fastmc.cli._app import (
    app,
    check_on_error,
    console,
    errors_as_exit,
    on_error_option,
    progress_bar,
)


@app.command("prepare")
def prepare_cmd(
    inputs: list[str] = typer.Argument(
        ...,
        help="Event files or globs: Dark Machines CSV (.csv/.csv.gz, MeV), .parquet or .root.",
        show_default=False,
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Store directory to create.", show_default=False
    ),
    val: float = typer.Option(0.1, "--val", help="Fraction of each process held out for validation."),
    test: float = typer.Option(0.1, "--test", help="Fraction of each process held out for testing."),
    seed: int = typer.Option(0, "--seed", help="Seed of the train/val/test split."),
    max_objects: int = typer.Option(
        19, "--max-objects", help="Object slots per event (K); events with more objects fail."
    ),
    truncate: bool = typer.Option(
        False, "--truncate", help="Cut events with more than --max-objects objects instead of failing."
    ),
    on_error: str = on_error_option(),
    chunk_size: int = typer.Option(
        100_000, "--chunk-size", help="Events parsed at a time (bounds memory)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing store."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Processes parsing files in parallel; the store is the same whatever the number. "
        "[default: every core for 64 MB of input or more, else 1]",
    ),
) -> None:
    """Parse event files once into a memory-mappable event store with train/val/test splits.

    Energies are stored in GeV (Dark Machines CSV files are in MeV and converted on reading).
    The split is drawn per process, reproducibly for --seed.  `fastmc info STORE` summarises it.
    """
    from fastmc.data.store import prepare, summary_table

    check_on_error(on_error)
    with errors_as_exit(), progress_bar("prepare", total=None) as advance:
        path = prepare(
            inputs,
            output,
            val=val,
            test=test,
            seed=seed,
            max_objects=max_objects,
            chunk_size=chunk_size,
            on_error=on_error,
            truncate=truncate,
            overwrite=overwrite,
            progress=advance,
            workers=workers,
        )
    console.print(summary_table(path))
    console.print(f"[green]wrote[/] {path}")


@app.command("verify")
def verify_cmd(
    store: Path = typer.Argument(..., help="Event store directory (with meta.json).",
                                 show_default=False),
) -> None:
    """Check an event store completely: meta.json, every shard's size, header and CRC-32, the
    SHA-256 of the source files still present, and every stored value (known object types,
    finite numbers).  Exit 0 if all is well; otherwise one line naming what is wrong.
    """
    from fastmc.data.store import verify_store

    out = verify_store(store)
    console.print(
        f"[green]ok[/]: {store}: {out['events']:,} events in {out['shards']} shards "
        f"({out['bytes'] / 1e6:.1f} MB), checksums and values verified"
        + (f"; {len(out['missing_sources'])} source file(s) no longer present"
           if out["missing_sources"] else ""),
        highlight=False, soft_wrap=True,
    )
