"""What the CLI and the Python API call: the pipeline's orchestration over the core packages.

==================  =====================================================================
``train``           the model-agnostic training loop (:func:`train_model`)
``train_config``    :class:`TrainConfig`, :class:`TrainResult`, the training YAML file
``train_store``     training from an event store (:func:`train_from_store`)
``priors``          fitting a latent-variable model's priors on its training events
``generate``        streamed, sharded, seeded generation into an event file
``conditioning``    what a run draws (process, mixture, cocktail, parameter point) and keeps
                    (channel, ``--where`` region; truncated leading observable)
``evaluate_processes``  per-process evaluation of multi-process samples
``bench``           generation (and simulation) speed
``study``           a grid of models and priors, trained, generated and evaluated
``study_summary``   the written ranking of a study
``demo``            the built-in demo study
==================  =====================================================================

Nothing below this layer imports from it.  The names below are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "StudyConfig",
    "TrainConfig",
    "TrainResult",
    "demo_config",
    "evaluate_per_process",
    "fit_prior",
    "generate",
    "generate_events",
    "process_plan",
    "run_bench",
    "run_study",
    "train_from_store",
    "train_model",
]

_WHERE = {
    "StudyConfig": "study",
    "TrainConfig": "train_config",
    "TrainResult": "train_config",
    "demo_config": "demo",
    "evaluate_per_process": "evaluate_processes",
    "fit_prior": "priors",
    "generate": "generate",
    "generate_events": "generate",
    "process_plan": "conditioning",
    "run_bench": "bench",
    "run_study": "study",
    "train_from_store": "train_store",
    "train_model": "train",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'fastmc.workflows' has no attribute {name!r}")
    return getattr(importlib.import_module(f"fastmc.workflows.{_WHERE[name]}"), name)
