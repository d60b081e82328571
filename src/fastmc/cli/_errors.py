"""The one exception map at the CLI boundary.

Every expected failure (fastmc's own errors, OSError, damaged-file errors of pyarrow, uproot,
safetensors, gzip, bad argument values) becomes one line on stderr,
``error: <file>: <what>, <what to try>``, and exit status 1; the traceback is shown only with
``fastmc --debug ...``.  An interrupt (Ctrl-C, or SIGTERM, which is turned into the same
exception so that every ``finally`` and atomic writer cleans up) exits with 130 or 143.
"""

from __future__ import annotations

import errno
import signal
import zlib
from typing import Any

import typer
from typer.core import TyperGroup

from fastmc.errors import FastMCError

__all__ = ["ErrorMappingGroup", "Terminated", "current_context", "debug_enabled", "describe"]


def current_context() -> Any:
    """The running command's context (typer vendors click from 0.29 on), or ``None``."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import get_current_context
    return get_current_context(silent=True)


def debug_enabled() -> bool:
    """True when ``fastmc --debug`` was given."""
    ctx = current_context()
    return bool(ctx is not None and ctx.meta.get("fastmc.debug"))


def _usage_errors() -> tuple[type[BaseException], ...]:
    out: list[type[BaseException]] = [typer.Exit, typer.Abort]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # pragma: no cover
        from click import ClickException
    out.append(ClickException)
    return tuple(out)

_OS_HINTS = {
    errno.ENOENT: "check the path",
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EISDIR: "give a file name, not a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENOSPC: "free disk space or write elsewhere",
    errno.EROFS: "the file system is read-only: write elsewhere",
    errno.EEXIST: "pass --overwrite or choose another path",
}


class Terminated(KeyboardInterrupt):
    """Raised in the main thread on SIGTERM, so that cleanup runs as for Ctrl-C."""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or ``None`` for a bug (traceback)."""
    if isinstance(exc, FastMCError):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and not _is_library_error(exc):
        what = (exc.strerror or str(exc) or type(exc).__name__).rstrip(".")
        hint = _OS_HINTS.get(exc.errno or -1, "check the path")
        if exc.filename:
            where = exc.filename
            if exc.filename2:
                where = f"{exc.filename} -> {exc.filename2}"
            return _one_line(f"{where}: {what[0].lower() + what[1:] if what else what}, {hint}")
        return _one_line(f"{what}, {hint}")
    if isinstance(exc, EOFError | zlib.error):
        return _one_line(
            f"unexpected end of data or damaged compressed data ({exc}), the input file is "
            "truncated or damaged: check it or produce it again"
        )
    if _is_library_error(exc):
        return _one_line(
            f"{type(exc).__name__}: {exc}, the file being read is damaged or not what its "
            "name says: check it or produce it again (fastmc --debug shows where)"
        )
    if isinstance(exc, MemoryError):
        return "out of memory, try a smaller --batch-size or --chunk-size"
    if isinstance(exc, ValueError):
        return _one_line(str(exc) or type(exc).__name__)
    return None


def _is_library_error(exc: BaseException) -> bool:
    names = {f"{c.__module__}.{c.__name__}" for c in type(exc).__mro__}
    return bool(
        names
        & {
            "pyarrow.lib.ArrowException",
            "builtins.SafetensorError",
            "safetensors_rust.SafetensorError",
            "uproot.deserialization.DeserializationError",
        }
    ) or type(exc).__name__ == "SafetensorError"


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


class ErrorMappingGroup(TyperGroup):
    """A TyperGroup that maps exceptions of its commands through :func:`describe`."""

    def invoke(self, ctx: Any) -> Any:
        previous = None
        try:
            previous = signal.signal(signal.SIGTERM, _raise_terminated)
        except ValueError:  # not the main thread
            pass
        try:
            return super().invoke(ctx)
        except _usage_errors():
            raise
        except KeyboardInterrupt as exc:
            if ctx.meta.get("fastmc.debug"):
                raise
            name = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            typer.echo(f"error: {name}; outputs in progress were removed", err=True)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except Exception as exc:
            message = describe(exc)
            if message is None or ctx.meta.get("fastmc.debug"):
                raise
            typer.echo(f"error: {message}", err=True)
            raise typer.Exit(1) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
