"""Fixtures of the models tests: small synthetic events and a tiny event store."""

from __future__ import annotations

from pathlib import Path

import pytest
from modelhelpers import make_events

from fastmc.data.batch import RawBatch
from fastmc.events import Events


@pytest.fixture(scope="session")
def events() -> Events:
    return make_events(64, seed=1)


@pytest.fixture
def raw(events: Events) -> RawBatch:
    return RawBatch.from_events(events)


@pytest.fixture(scope="session")
def tiny_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An event store of 600 synthetic events of one process (train 480, val 60, test 60)."""
    from fastmc.data.store import prepare
    from fastmc.io import write_events

    root = tmp_path_factory.mktemp("models_store")
    csv = root / "tiny.csv"
    write_events(csv, make_events(600, seed=7, process="ttbar"))
    store = root / "store"
    prepare(csv, store, val=0.1, test=0.1, seed=0)
    return store


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny networks run fastest on one thread (and the 2 cores are shared): use one."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
