"""Shared fixtures of the flow tests: events of a real Dark Machines signal file."""

from __future__ import annotations

import pytest

from fastmc.events import Events

SQSQ = "sqsq1_sq1400_neut800_chan1.csv"


@pytest.fixture(scope="module")
def real_events(data_dir) -> Events:
    """The first 1,500 events of the real sqsq1 signal file (GeV)."""
    from fastmc.io import read_events

    return read_events(data_dir / SQSQ)[:1500]
