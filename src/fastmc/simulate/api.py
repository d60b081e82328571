"""``fastmc.simulate(process, n, ...)``: simulated events in memory or in a file."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastmc.events import Events

__all__ = ["simulate"]

PathLike = str | os.PathLike[str]

def simulate(process: str, n: int, *, seed: int = 0, jobs: int = 1, channel: str | None = None,
             params: Mapping[str, Any] | None = None, output: PathLike | None = None,
             progress: Callable[[int], None] | None = None) -> Events | Path:
    """``n`` stored events of a catalogued Dark Machines ``process`` (Pythia 8 + FastJet +
    the Dark Machines detector response; needs the ``simulate`` extra), GeV.

    ``seed`` and ``jobs`` together make the seed (same pair, same events).  ``params`` are
    process parameters in GeV (``{"m_stop": 1000}``); ``channel`` keeps only events of a
    Dark Machines channel.  With ``output`` the events are streamed to that file and its
    path is returned; without, the Events are returned.
    """
    from fastmc.simulate.run import simulate as _simulate
    from fastmc.simulate.run import simulate_to_file

    if output is not None:
        simulate_to_file(output, process, n, seed=seed, jobs=jobs, channel=channel,
                         params=dict(params or {}), progress=progress)
        return Path(output)
    parts = list(_simulate(process, n, seed=seed, jobs=jobs, channel=channel,
                           params=dict(params or {}), progress=progress))
    return Events.concatenate(parts)
