"""Fitting latent priors of a trained model on its training events (``fastmc fit-prior``).

Used by the CLI and by studies; only latent-variable models
(:class:`fastmc.models.base.LatentVariableMixin`, the VAEs) have priors to fit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from fastmc.data.batch import RawBatch, raw_from_events
from fastmc.errors import ConfigError
from fastmc.models.base import GenerativeModel, is_latent

__all__ = ["fit_prior", "process_batches"]


def process_batches(
    store: Any, process: str, model_index: int, max_events: int = 200_000, chunk: int = 10_000
) -> Iterator[RawBatch]:
    """RawBatches of the train split of one process, labelled with the model's process index."""
    ev = store.events("train", process)
    for s in range(0, min(len(ev), max_events), chunk):
        part = ev[s : min(s + chunk, max_events)]
        yield raw_from_events(part, process=np.full(len(part), model_index))


def fit_prior(
    model: GenerativeModel,
    store: Any,
    kind: str,
    *,
    process: str,
    components: int = 100,
    max_events: int = 200_000,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fit latent prior ``kind`` of ``model`` for ``process`` on the store's train split.

    The prior is kept in ``model.priors`` (save it with ``ModelDir.write_priors``); returns
    the fit report.  ConfigError for a model without a latent space.
    """
    if not is_latent(model):
        raise ConfigError(
            f"model {model.name!r} has no latent prior to fit (it samples from its own base "
            "distribution); fit-prior applies to the VAEs"
        )
    batches = process_batches(store, process, model.process_index(process), max_events)
    return model.fit_prior(kind, batches, process=process, components=components,
                           max_events=max_events, seed=seed, progress=progress, **options)
