"""A one-pass summary of an event sample (what ``fastmc info`` shows)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from fastmc.events import TYPE_CODES, Events
from fastmc.selection import CHANNELS, passes_channel, passes_storage

__all__ = ["QUANTILES", "summarize"]

#: Quantiles reported for MET and HT.
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)


def summarize(
    chunks: Iterable[Events], *, progress: Callable[[int], None] | None = None
) -> dict[str, Any]:
    """Summarise a stream of Events in one pass (memory: 8 bytes per event for the quantiles).

    Returns a JSON-serialisable dict:

    - ``events`` (int), ``weight_sum`` (float);
    - ``processes``: {process ID: {"events": int, "weight_sum": float}};
    - ``objects``: {type name: {"total": int, "mean": objects per event, "max": int}} for
      j, b, e-, e+, m-, m+, g, plus ``"all"``;
    - ``met_quantiles``, ``ht_quantiles``: {"q": value in GeV} at :data:`QUANTILES`
      (HT = scalar sum of jet pT); empty when there are no events;
    - ``selections``: {"chan1" | "chan2a" | "chan2b" | "chan3" | "storage":
      {"events": int passing, "share": fraction}} (:mod:`fastmc.selection`).

    ``progress`` is called with the number of events of each chunk.
    """
    n = 0
    weight_sum = 0.0
    procs: dict[str, list[float]] = {}
    names = [*TYPE_CODES, "all"]
    totals = dict.fromkeys(names, 0)
    maxima = dict.fromkeys(names, 0)
    passing = dict.fromkeys([*CHANNELS, "storage"], 0)
    mets: list[np.ndarray] = []
    hts: list[np.ndarray] = []
    for ev in chunks:
        if not len(ev):
            continue
        n += len(ev)
        weight_sum += float(ev.weight.sum())
        codes, counts = np.unique(ev.process_code, return_counts=True)
        wsum = np.bincount(ev.process_code, weights=ev.weight, minlength=len(ev.process_names))
        for code, count in zip(codes.tolist(), counts.tolist(), strict=True):
            entry = procs.setdefault(ev.process_names[code], [0, 0.0])
            entry[0] += count
            entry[1] += float(wsum[code])
        per_type = ev.counts() | {"all": ev.n_objects}
        for name in names:
            totals[name] += int(per_type[name].sum())
            maxima[name] = max(maxima[name], int(per_type[name].max()))
        for channel in CHANNELS:
            passing[channel] += int(passes_channel(ev, channel).sum())
        passing["storage"] += int(passes_storage(ev).sum())
        mets.append(ev.met.copy())
        hts.append(ev.ht().astype(np.float32))
        if progress is not None:
            progress(len(ev))

    def quantiles(parts: list[np.ndarray]) -> dict[str, float]:
        if not parts:
            return {}
        values = np.quantile(np.concatenate(parts).astype(np.float64), QUANTILES)
        return {f"{q:g}": float(v) for q, v in zip(QUANTILES, values, strict=True)}

    return {
        "events": n,
        "weight_sum": weight_sum,
        "processes": {p: {"events": int(c), "weight_sum": w} for p, (c, w) in procs.items()},
        "objects": {
            t: {"total": totals[t], "mean": totals[t] / n if n else 0.0, "max": maxima[t]}
            for t in names
        },
        "met_quantiles": quantiles(mets),
        "ht_quantiles": quantiles(hts),
        "selections": {
            s: {"events": c, "share": c / n if n else 0.0} for s, c in passing.items()
        },
    }
