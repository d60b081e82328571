"""Atomic file output: write to a temporary file beside the target, rename at the end."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to ``path`` on success.

    If the body raises (or the process is interrupted), the temporary file is removed and
    an existing file at ``path`` is left untouched.  The temporary name keeps the target's
    suffixes, so code that dispatches on the extension (``.csv.gz``) still works.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a folder; give a file name for the output", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suffix}",
                                   dir=path.parent)
    except OSError as err:  # name the output the user asked for, not our temporary file
        raise type(err)(err.errno, f"cannot write into {path.parent} ({err.strerror})",
                        str(path)) from None
    tmp_path = Path(tmp)
    try:  # from here on an interrupt (Ctrl-C, SIGTERM) removes the temporary file
        os.close(fd)
        # mkstemp creates the file owner-only; give it the permissions a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        yield tmp_path
        # again: a writer that replaces the file (safetensors does) creates it owner-only
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
