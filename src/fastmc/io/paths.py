"""One overwrite policy for every command: :func:`check_output`.

An existing output is never replaced unless ``overwrite`` is given; an output is never one of
the inputs (nor, for an output folder, a folder that holds one); a file never replaces a
folder or the reverse.  Checked before any work starts, so a refused command leaves nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from fastmc.errors import OutputError

__all__ = ["check_output"]


def check_output(
    output: str | os.PathLike[str],
    *,
    inputs: Iterable[str | os.PathLike[str]] = (),
    overwrite: bool = False,
    kind: Literal["file", "folder"] = "file",
) -> Path:
    """Return ``output`` as a Path, or raise :class:`~fastmc.errors.OutputError`.

    ``inputs`` are the files (or folders) the command reads; ``kind`` says what the command
    writes at ``output``.  A folder output that exists is only accepted with ``overwrite``
    (the command then replaces only what it wrote there, see :func:`fastmc.data.prepare`).
    """
    out = Path(output)
    res = out.resolve()
    for inp in inputs:
        p = Path(inp).resolve()
        if p == res:
            raise OutputError(
                f"{out}: the output is also an input; writing it would destroy what is being "
                "read: choose another output path"
            )
        if kind == "folder" and res in p.parents:
            raise OutputError(
                f"{out}: the output folder holds the input {inp}; replacing the folder would "
                "destroy what is being read: choose another output path"
            )
    if kind == "file" and out.is_dir():
        raise OutputError(f"{out}: is a folder; give a file name for the output")
    if kind == "folder" and out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another output path")
    if out.exists() and not overwrite:
        if kind == "folder" and not any(out.iterdir()):
            return out
        raise OutputError(f"{out}: exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    probe = parent
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise OutputError(f"{out}: {probe} is a file, not a folder; choose another output path")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(
            f"{out}: the folder {probe} is not writable; choose another output path or fix "
            "its permissions"
        )
    return out
