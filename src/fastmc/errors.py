"""The exceptions fastmc raises for problems with the user's input."""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CorruptStoreError",
    "EventFormatError",
    "FastMCError",
    "GenerationError",
    "MissingExtraError",
    "ModelOutputError",
    "OutputError",
    "StaleStoreError",
]


class FastMCError(Exception):
    """Base class of every error fastmc raises on purpose."""


class ConfigError(FastMCError, ValueError):
    """A setting is unknown, of the wrong type or out of range (names the config and field)."""


class EventFormatError(FastMCError, ValueError):
    """A line of an event file is malformed.

    The message reads ``file:line: field F: expected X, got 'Y'``, so that an editor or a
    terminal can jump to the place.  The parts are also attributes.
    """

    def __init__(
        self,
        path: str,
        line: int | None,
        field: str,
        expected: str,
        got: str | None = None,
    ) -> None:
        self.path = str(path)
        self.line = line
        self.field = field
        self.expected = expected
        self.got = got
        where = self.path if line is None else f"{self.path}:{line}"
        msg = f"{where}: field {field}: expected {expected}"
        if got is not None:
            shown = got if len(got) <= 60 else got[:57] + "..."
            msg += f", got {shown!r}"
        super().__init__(msg)

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.path, self.line, self.field, self.expected, self.got))


class GenerationError(FastMCError, RuntimeError):
    """A generator cannot produce the events asked for (e.g. it rejects nearly all it draws)."""


class StaleStoreError(FastMCError):
    """An event store was written by another schema version, or its sources changed."""


class MissingExtraError(FastMCError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional dependency, or raise :class:`MissingExtraError` naming the extra.

    >>> np = require("numpy", "core")
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            f"{module} is needed for this feature; install it with "
            f"`pip install 'fastmc[{extra}]'` (or `make install`)"
        ) from exc


class CorruptStoreError(StaleStoreError):
    """An event store's ``meta.json`` or one of its shards is damaged or was edited."""


class OutputError(FastMCError):
    """An output path cannot be written as asked: it exists (and ``--overwrite`` was not
    given), it is one of the inputs, or it is a folder where a file goes (or the reverse)."""


class ModelOutputError(FastMCError):
    """A model produced invalid events (NaN or infinite values, unknown object types)."""
