"""Per-process evaluation: one :func:`fastmc.evaluate.report.evaluate` call per process.

A multi-process model's mixture (or cocktail) and a multi-process reference (a store's test
split, a Dark Machines background file) are split by their events' process names; every
process present in the reference and in at least one generated sample is evaluated on its own
(``OUT/<process>/``: metrics.json, plots, index.html), and ``OUT/per_process.json`` gathers
each process's summary rows (AUC with its floor, W1-to-floor ratios, physicality).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fastmc.errors import ConfigError
from fastmc.events import Events
from fastmc.io.atomic import atomic_path

__all__ = ["evaluate_per_process", "split_by_process"]


def split_by_process(events: Events) -> dict[str, Events]:
    """``{process name: its events}`` (names in order of :attr:`Events.process_names`)."""
    out = {}
    for code, name in enumerate(events.process_names):
        keep = events.process_code == code
        if keep.any():
            out[name] = events[keep]
    return out


def evaluate_per_process(
    reference: Events,
    generated: Mapping[str, Events],
    out_dir: str | os.PathLike[str],
    *,
    processes: list[str] | None = None,
    min_events: int = 20,
    on_process: Callable[[str], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate every process on its own; returns (and writes) ``per_process.json``'s content.

    ``processes``: the ones to evaluate (default: every process of the reference that some
    generated sample has, with at least ``min_events`` events on both sides).  ``options`` go
    to :func:`fastmc.evaluate.report.evaluate` (``seed``, ``classifier``, ``plots``,
    ``max_events``, ``channel``, ``config``).  ``on_process(name)`` is called before each one.
    Raises ConfigError when no process is common to the reference and the generated samples.
    """
    from fastmc.evaluate.report import evaluate

    ref = split_by_process(reference)
    gens = {label: split_by_process(ev) for label, ev in generated.items()}
    wanted = processes or [p for p in ref if any(p in g for g in gens.values())]
    out: dict[str, Any] = {"processes": {}, "skipped": {}}
    for proc in wanted:
        samples = {lab: g[proc] for lab, g in gens.items() if len(g.get(proc, [])) >= min_events}
        if len(ref.get(proc, [])) < min_events or not samples:
            out["skipped"][proc] = f"fewer than {min_events} events in the reference or every sample"
            continue
        if on_process is not None:
            on_process(proc)
        folder = Path(out_dir) / proc.replace(os.sep, "_")
        report = evaluate(ref[proc], samples, out_dir=folder, **options)
        whole = (report.metrics.get("whole_event") or {}).get("samples") or {}
        out["processes"][proc] = {
            "n_reference": len(ref[proc]),
            "report": str(folder),
            "summary": report.metrics["summary"],
            "whole_event_auc": {
                lab: {k: d.get(k) for k in ("auc", "auc_err", "floor_auc", "floor_auc_err")}
                for lab, d in whole.items()
            },
        }
    if not out["processes"]:
        raise ConfigError(
            f"no process to evaluate: the reference has {', '.join(ref) or 'no events'}, the "
            f"generated samples {', '.join(sorted({p for g in gens.values() for p in g})) or 'none'}"
        )
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out_dir) / "per_process.json") as tmp:
        tmp.write_text(json.dumps(out, indent=1) + "\n")
    return out
