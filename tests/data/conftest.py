"""Fixtures of the data-pipeline tests: stores prepared from the real Dark Machines files."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastmc.data.store import prepare


@pytest.fixture(scope="session")
def store_all(real_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of all real files (6 files, 17 processes), default split."""
    return prepare(real_files, tmp_path_factory.mktemp("stores") / "all")


@pytest.fixture(scope="session")
def store_signals(real_files: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of the five one-process signal files (every process has >= 1000 events)."""
    files = [f for f in real_files if not f.name.startswith("background")]
    return prepare(files, tmp_path_factory.mktemp("stores") / "signals")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
