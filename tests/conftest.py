"""Shared fixtures: paths to the real Dark Machines files and a seeded RNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared/data/darkmachines beside the checkout (CI lays shared/ beside the clone)
DATA_DIR = ROOT.parent / "shared" / "data" / "darkmachines"
REAL_FILES = sorted(p for p in DATA_DIR.glob("*.csv") if p.name != "real_small.csv")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA_DIR.is_dir():
        pytest.skip(f"real Dark Machines files not found in {DATA_DIR}")
    return DATA_DIR


@pytest.fixture(scope="session")
def real_files(data_dir: Path) -> list[Path]:
    """The real Dark Machines files (without the hand-made real_small.csv)."""
    return REAL_FILES


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)
