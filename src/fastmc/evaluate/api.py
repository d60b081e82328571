"""``fastmc.evaluate(reference, generated, ...)``: paths, stores or Events in, a Report out."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastmc.data.sources import EventsLike, read_events
from fastmc.events import Events

if TYPE_CHECKING:
    from fastmc.evaluate.report import Report

__all__ = ["evaluate"]

PathLike = str | os.PathLike[str]

def _samples(generated: Any) -> dict[str, Events]:
    if isinstance(generated, Mapping):
        return {str(k): read_events(v) for k, v in generated.items()}
    if isinstance(generated, Events | str | os.PathLike):
        generated = [generated]
    out: dict[str, Events] = {}
    for i, g in enumerate(generated):
        label = Path(g).name.split(".")[0] if isinstance(g, str | os.PathLike) else ""
        label = label or f"generated{i + 1}"
        out[label if label not in out else f"{label}_{i + 1}"] = read_events(g)
    return out


def evaluate(reference: EventsLike, generated: Any, *, reference2: EventsLike | None = None,
             out_dir: PathLike | None = None, seed: int = 0, channel: str | None = None,
             classifier: bool = True, plots: bool | None = None, max_events: int | None = None,
             repeats: int = 10, progress: Callable[[int], None] | None = None) -> Report:
    """Compare generated events with reference events the model never saw; every metric with
    its statistical floor (design.md section 4).

    ``reference``: Events, event files, or an event store (its test split).  ``generated``:
    Events or a file (one sample), a list of them, or a mapping label -> Events/file.  With
    ``out_dir`` the report (metrics.json, plots, index.html) is written there; ``plots``
    defaults to ``out_dir is not None``.  Returns the
    :class:`~fastmc.evaluate.report.Report`, which a notebook displays as HTML.
    """
    from fastmc.evaluate.floors import FloorConfig
    from fastmc.evaluate.report import evaluate as _evaluate

    ref2 = read_events(reference2) if reference2 is not None else None
    return _evaluate(
        read_events(reference), _samples(generated), reference2=ref2, channel=channel,
        out_dir=out_dir, seed=seed, config=FloorConfig(repeats=repeats), classifier=classifier,
        plots=out_dir is not None if plots is None else plots, max_events=max_events,
        progress=progress,
    )
