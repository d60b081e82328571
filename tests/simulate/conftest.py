"""Shared, session-scoped simulated samples for the simulation tests (small: Pythia is slow)."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def ttbar_small():
    """300 stored ttbar events, seed 11 (about 3 s of Pythia on one core)."""
    from fastmc.events import Events
    from fastmc.simulate import simulate

    return Events.concatenate(list(simulate("ttbar", 300, seed=11)))


@pytest.fixture(scope="session")
def ttbar_detector_output():
    """Detector response (with per-jet diagnostics) of 300 generated ttbar events."""
    from fastmc.simulate.detector import detector_response
    from fastmc.simulate.processes import get_process
    from fastmc.simulate.pythia import PythiaGenerator

    proc = get_process("ttbar")
    gen = PythiaGenerator(proc, proc.resolve_params(), seed=4242)
    batch = gen.next_batch(300)
    return detector_response(batch, np.random.default_rng(7))
