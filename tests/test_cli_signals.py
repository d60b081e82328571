"""SIGTERM cleans up like Ctrl-C (issue 15): a terminated ``fastmc convert`` leaves no hidden
``.part`` file and no output, exits 143 and says so in one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _interrupted_convert(real_files: list[Path], tmp_path: Path, sig, copies: int):
    big = tmp_path / "big.csv"
    data = b"".join(p.read_bytes() for p in real_files)
    big.write_bytes(data * copies)
    out = tmp_path / "out" / "o.parquet"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-c", "from fastmc.cli import main; main()", "convert", str(big),
         "-o", str(out), "--chunk-size", "2000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
        # a test run started in the background inherits SIGINT ignored (POSIX shells do that
        # to background jobs); give the child the default handling a terminal user has
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )

    def writing() -> bool:
        return out.parent.exists() and any(out.parent.glob(".o.parquet.*.part*"))

    deadline = time.monotonic() + 60
    while not writing() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    return proc, err, out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_leaves_no_partial_output(real_files: list[Path], tmp_path: Path, sig) -> None:
    for copies in (30, 120):  # a loaded machine may still finish the small one first
        proc, err, out = _interrupted_convert(real_files, tmp_path, sig, copies)
        if proc.returncode != 0:
            break
        out.unlink()
    assert proc.returncode == (143 if sig == signal.SIGTERM else 130), err
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert list(out.parent.iterdir()) == []
