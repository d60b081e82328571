"""Evaluation: observables, metrics with statistical floors, classifier test, plots, report.

Entry point: :func:`fastmc.evaluate.report.evaluate` (re-exported here), which returns a
:class:`~fastmc.evaluate.report.Report`.  The headline is the whole-event classifier test
(:mod:`fastmc.evaluate.features`, :mod:`fastmc.evaluate.wholeevent`).  The protocol is
``design.md`` section 4; the per-observable floors are explained in
:mod:`fastmc.evaluate.floors`.
"""

from __future__ import annotations

from fastmc.evaluate.features import FeatureConfig, WholeEventFeatures, whole_event_features
from fastmc.evaluate.floors import FloorConfig, Stat, compare_with_floors, make_sample
from fastmc.evaluate.metrics import physicality
from fastmc.evaluate.observables import OBSERVABLES, Observables, compute_observables
from fastmc.evaluate.report import Report, SampleSummary, evaluate, evaluation_steps
from fastmc.evaluate.wholeevent import (
    ClassifierConfig,
    WholeEventResult,
    whole_event_floor,
    whole_event_test,
)

__all__ = [
    "OBSERVABLES",
    "ClassifierConfig",
    "FeatureConfig",
    "FloorConfig",
    "Observables",
    "Report",
    "SampleSummary",
    "Stat",
    "WholeEventFeatures",
    "WholeEventResult",
    "compare_with_floors",
    "compute_observables",
    "evaluate",
    "evaluation_steps",
    "make_sample",
    "physicality",
    "summarise",
    "whole_event_features",
    "whole_event_floor",
    "whole_event_test",
]

from fastmc._callable import make_callable

# ``fastmc.evaluate(reference, generated, ...)`` (the API) is this package called as a function
make_callable(__name__, "fastmc.evaluate.api:evaluate")
