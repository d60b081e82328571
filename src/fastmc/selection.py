"""Event selections of the Dark Machines data (``docs/detector.md``), vectorised.

Every function takes :class:`~fastmc.events.Events` (GeV) and returns a boolean mask [N].
"""

from __future__ import annotations

import numpy as np

from fastmc.events import ETA, PT, Events

__all__ = ["CHANNELS", "passes_channel", "passes_storage"]

#: Channels of the anomaly-detection challenge and their cuts (GeV).
CHANNELS: dict[str, str] = {
    "chan1": "HT >= 600, MET >= 200, MET/HT >= 0.2, >= 4 jets pT > 50, >= 1 jet pT > 200",
    "chan2a": "MET >= 50, >= 3 leptons pT > 15",
    "chan2b": "MET >= 50, HT >= 50, >= 2 leptons",
    "chan3": "HT >= 600, MET >= 100",
}


def _count(events: Events, types: tuple[str, ...], pt_min: float) -> np.ndarray:
    return (events.mask(*types) & (events.pt > pt_min)).sum(axis=1)


def passes_channel(events: Events, channel: str) -> np.ndarray:
    """Boolean [N]: events passing a Dark Machines channel selection (see :data:`CHANNELS`).

    HT is the scalar sum of jet (j, b) pT; leptons are e-, e+, m-, m+.
    """
    if channel not in CHANNELS:
        raise ValueError(f"unknown channel {channel!r}; choose one of {', '.join(CHANNELS)}")
    met = events.met.astype(np.float64)
    ht = events.ht()
    leptons = ("e-", "e+", "m-", "m+")
    if channel == "chan1":
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(ht > 0, met / np.where(ht > 0, ht, 1), np.inf)
        return (
            (ht >= 600)
            & (met >= 200)
            & (ratio >= 0.2)
            & (_count(events, ("j", "b"), 50) >= 4)
            & (_count(events, ("j", "b"), 200) >= 1)
        )
    if channel == "chan2a":
        return (met >= 50) & (_count(events, leptons, 15) >= 3)
    if channel == "chan2b":
        return (met >= 50) & (ht >= 50) & (_count(events, leptons, 0) >= 2)
    return (ht >= 600) & (met >= 100)  # chan3


def passes_storage(events: Events) -> np.ndarray:
    """Boolean [N]: the Dark Machines storage requirement (at least one trigger-like object).

    A jet or b-jet with pT > 60 and |eta| < 2.8; an electron with pT > 25 and |eta| < 2.47
    outside 1.37 < |eta| < 1.52; a muon with pT > 25 and |eta| < 2.7; or a photon with
    pT > 25 and |eta| < 2.37.
    """
    pt, aeta = events.p4[..., PT], np.abs(events.p4[..., ETA])
    jet = events.mask("j", "b") & (pt > 60) & (aeta < 2.8)
    ele = events.mask("e-", "e+") & (pt > 25) & (aeta < 2.47) & ~((aeta > 1.37) & (aeta < 1.52))
    muo = events.mask("m-", "m+") & (pt > 25) & (aeta < 2.7)
    pho = events.mask("g") & (pt > 25) & (aeta < 2.37)
    return (jet | ele | muo | pho).any(axis=1)
