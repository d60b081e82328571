"""RawBatch <-> Events conversion."""

from __future__ import annotations

import numpy as np
import torch

from fastmc.data.batch import RawBatch
from fastmc.events import Events


def test_round_trip_and_read_only_input_does_not_warn(rng):
    n, k = 7, 19
    types = np.zeros((n, k), np.int8)
    types[:, :3] = rng.integers(1, 8, size=(n, 3))
    p4 = np.zeros((n, k, 4), np.float32)
    p4[:, :3] = rng.uniform(1, 100, size=(n, 3, 4))
    ev = Events.from_arrays(types=types, p4=p4, met=rng.uniform(0, 100, n),
                            met_phi=rng.uniform(-3, 3, n), process="ttbar", weight=0.5)
    for arr in (ev.types, ev.p4, ev.met, ev.met_phi, ev.weight, ev.process_code):
        arr.flags.writeable = False  # like memory-mapped store arrays
    raw = RawBatch.from_events(ev, dtype=torch.float64)  # warnings are errors in the suite
    assert raw.p4.dtype == torch.float64 and raw.types.dtype == torch.int64 and len(raw) == n
    back = raw.to_events(process_names=ev.process_names)
    assert back.equals(ev, rtol=1e-7)
