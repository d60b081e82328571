"""The ``fastmc`` command line: a thin typer app.

Each command group lives in its own module (one per pipeline stage) and registers its commands
on :data:`fastmc.cli._app.app`; every command parses options and calls one library function.
"""

from __future__ import annotations

import importlib

from fastmc.cli._app import app

__all__ = ["app", "main"]

_COMMAND_MODULES = ("io", "simulate", "data", "models", "refine", "evaluate", "pipeline")


def _load_commands() -> None:
    for name in _COMMAND_MODULES:
        try:
            importlib.import_module(f"fastmc.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fastmc.cli.{name}":
                raise


def main() -> None:
    """Entry point of the ``fastmc`` console script."""
    _load_commands()
    app()


_load_commands()
