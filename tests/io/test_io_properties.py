"""Property tests: random Events survive CSV (to 6 significant digits), Parquet and ROOT (exactly)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastmc.events import Events
from fastmc.io import read_events, write_events
from fastmc.io.darkmachines import format_events

SETTINGS = settings(
    max_examples=30, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
F32 = st.floats(-1e5, 1e5, width=32, allow_nan=False, allow_subnormal=False)


@st.composite
def events_strategy(draw, max_k: int = 8) -> Events:
    n = draw(st.integers(0, 12))
    k = draw(st.integers(1, max_k))
    counts = np.array(draw(st.lists(st.integers(0, k), min_size=n, max_size=n)), np.int64)
    slot = np.arange(k)[None, :] < counts[:, None]
    codes = draw(hnp.arrays(np.int8, (n, k), elements=st.integers(1, 7)))
    types = np.where(slot, codes, 0).astype(np.int8)
    raw = draw(hnp.arrays(np.float32, (n, k, 4), elements=F32))
    raw[np.abs(raw) < 1e-30] = 0
    p4 = raw.copy()
    p4[..., :2] = np.abs(raw[..., :2])  # E, pt >= 0 (GeV)
    p4[..., 2] = raw[..., 2] / 2e4  # eta in [-5, 5]
    p4[..., 3] = raw[..., 3] / 3.2e4  # phi
    p4[~slot] = 0
    met = np.abs(draw(hnp.arrays(np.float32, (n,), elements=F32)))
    met_phi = draw(hnp.arrays(np.float32, (n,), elements=F32)) / np.float32(3.2e4)
    weight = draw(hnp.arrays(np.float64, (n,), elements=st.floats(1e-12, 1e6)))
    event_id = draw(hnp.arrays(np.int64, (n,), elements=st.integers(-(2**63), 2**63 - 1)))
    name = st.text("abcxyz_0123.", min_size=1, max_size=8)
    process = draw(st.lists(name, min_size=n, max_size=n)) if n else "p"
    return Events.from_arrays(
        types=types, p4=p4, met=met, met_phi=met_phi, event_id=event_id, process=process,
        weight=weight, meta={"seed": draw(st.integers(0, 99))},
    ).sorted()


def _round_trip(events: Events, suffix: str, **read_kwargs) -> Events:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"ev{suffix}"
        write_events(path, events)
        return read_events(path, **read_kwargs)


@SETTINGS
@given(events_strategy())
def test_csv_round_trip_six_digits(events: Events) -> None:
    back = _round_trip(events, ".csv", max_objects=events.max_objects)
    assert len(back) == len(events)
    if len(events):
        assert back.equals(events, rtol=6e-6)  # %g keeps 6 significant digits
    # and the text is a fixed point: writing what was read gives the same bytes
    assert format_events(back) == format_events(events)


@SETTINGS
@given(events_strategy())
def test_csv_written_twice_is_stable(events: Events) -> None:
    once = _round_trip(events, ".csv.gz", max_objects=events.max_objects)
    twice = _round_trip(once, ".csv", max_objects=events.max_objects)
    assert twice.equals(once)


@SETTINGS
@given(events_strategy(max_k=25))
def test_parquet_exact(events: Events) -> None:
    back = _round_trip(events, ".parquet", chunk_size=5, max_objects=None)
    assert back.max_objects == events.max_objects
    assert back.equals(events)
    assert back.process_names[: len(events.process_names)] == events.process_names
    assert np.array_equal(back.process_code, events.process_code)
    assert back.meta == events.meta


@SETTINGS
@given(events_strategy(max_k=25))
def test_root_exact(events: Events) -> None:
    back = _round_trip(events, ".root", chunk_size=5, max_objects=None)
    assert back.max_objects == events.max_objects
    assert back.equals(events)
    assert np.array_equal(back.process_code, events.process_code)
    assert back.meta == events.meta
