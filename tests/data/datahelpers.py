"""Helpers of the data-pipeline tests."""

from __future__ import annotations

import numpy as np


def event_keys(batch) -> list[bytes]:
    """A content key per event of a RawBatch (process, MET, METphi and all four-vectors)."""
    arr = np.concatenate(
        [
            batch.process.numpy()[:, None].astype(np.float32),
            batch.met.numpy()[:, None],
            batch.met_phi.numpy()[:, None],
            batch.p4.reshape(len(batch), -1).numpy(),
        ],
        axis=1,
    )
    return [row.tobytes() for row in np.ascontiguousarray(arr)]
