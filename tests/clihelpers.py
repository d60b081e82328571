"""Helpers of the command-line tests: run a command that must fail cleanly."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from fastmc.cli import app


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def run_bad(args: list[str], root: Path, *, contains: str = "") -> str:
    """Run ``fastmc args`` and check the promise: exit 1, one line on stderr starting with
    ``error:``, no traceback, nothing under ``root`` created, changed or removed."""
    before = snapshot(root)
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 1, (res.exit_code, res.output)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    assert "Traceback" not in res.output
    assert contains in lines[0], lines[0]
    assert snapshot(root) == before
    return lines[0]
