"""The Python API's workflow steps, re-exported as ``fastmc.<name>``.

``write_events``, ``prepare``, ``train``, ``load_model`` and ``generate`` live here;
``read_events`` in :mod:`fastmc.data.sources`, ``simulate`` in :mod:`fastmc.simulate.api` and
``evaluate`` in :mod:`fastmc.evaluate.api` (the packages ``fastmc.simulate`` and
``fastmc.evaluate`` are callable as those functions, see :mod:`fastmc._callable`).

Every function takes paths or in-memory :class:`~fastmc.events.Events` where it takes events,
and returns Events (or the path it wrote when given an output path).  Energies and momenta
are in GeV, angles in radians.  The functions call the same workflows as the command line;
torch runs with the threads of :mod:`fastmc.threads` (one per process unless ``threads=N``)
for the duration of the call only.  See ``docs/api.md`` for a worked example.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastmc.data.sources import EventsLike
from fastmc.events import Events

if TYPE_CHECKING:
    from fastmc.models.base import GenerativeModel
    from fastmc.workflows.train_config import TrainResult

__all__ = ["generate", "load_model", "prepare", "train", "write_events"]

PathLike = str | os.PathLike[str]


def write_events(path: PathLike, events: Events | Iterable[Events], *,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write Events (or batches of them) atomically to ``path``; the format follows the
    extension (``.csv``/``.csv.gz`` Dark Machines in MeV, ``.parquet``, ``.root``).  Returns
    the path."""
    from fastmc.io import write_events as _write

    _write(path, events, meta=meta)
    return Path(path)


def prepare(events: EventsLike, output: PathLike, *, val: float = 0.1, test: float = 0.1,
            seed: int = 0, overwrite: bool = False, **kwargs: Any) -> Path:
    """An event store at ``output`` (train/val/test splits per process, fractions ``val`` and
    ``test``, drawn with ``seed``) from event files or Events; returns its path.  ``kwargs``
    go to :func:`fastmc.data.prepare.prepare` (``max_objects``, ``on_error``, ...)."""
    from fastmc.data.prepare import prepare as _prepare

    if not isinstance(events, Events):
        return _prepare(events, output, val=val, test=test, seed=seed, overwrite=overwrite,
                        **kwargs)
    with tempfile.TemporaryDirectory(prefix="fastmc-prepare-") as tmp:
        source = Path(tmp) / "events.parquet"
        write_events(source, events)
        return _prepare(source, output, val=val, test=test, seed=seed, overwrite=overwrite,
                        **kwargs)


def train(store: PathLike, output: PathLike, *, model: str = "beta-vae",
          model_config: Mapping[str, Any] | None = None, threads: int | None = None,
          resume: bool = False, progress: Callable[[int], None] | None = None,
          on_epoch: Callable[[dict[str, Any]], None] | None = None,
          **settings: Any) -> TrainResult:
    """Train generator ``model`` (``"beta-vae"``, ``"alpha-vae"``, ``"flow"``) on the event
    store ``store`` (made by :func:`prepare`) into the model directory ``output``.

    ``model_config`` sets the model's settings (e.g. ``{"beta": 0.001}``); ``settings`` are
    training settings (:class:`~fastmc.workflows.train_config.TrainConfig`: ``epochs``,
    ``batch_size``, ``batches_per_epoch``, ``lr``, ``seed``, ``device``, ``max_minutes``...).
    Returns the :class:`~fastmc.workflows.train_config.TrainResult`.
    """
    from fastmc.config import from_dict
    from fastmc.threads import torch_threads
    from fastmc.workflows.train_config import TrainConfig
    from fastmc.workflows.train_store import train_from_store

    config = from_dict(TrainConfig, settings)
    with torch_threads(threads):
        return train_from_store(store, output, model_name=model, model_config=model_config,
                                config=config, resume=resume, progress=progress,
                                on_epoch=on_epoch)


def load_model(model_dir: PathLike, *, device: str = "cpu") -> GenerativeModel:
    """The trained model in ``model_dir`` (eval mode, priors included) on ``device``."""
    from fastmc.models.modeldir import load_model as _load

    return _load(model_dir, device=device)


def generate(model: GenerativeModel | PathLike, n: int, *, prior: str = "normal",
             seed: int = 0, process: str | None = None,
             params: Mapping[str, float] | None = None, force: bool = False,
             cocktail: bool = False, where: str | None = None, channel: str | None = None,
             batch_size: int = 10_000, output: PathLike | None = None, device: str = "auto",
             threads: int | None = None, refine: bool | None = None, refine_mode: str = "reject",
             progress: Callable[[int], None] | None = None) -> Events | Path:
    """``n`` events generated by ``model`` (a model directory or a loaded model), GeV.

    ``prior``: the latent prior of a VAE (``"normal"``, ``"gmm"``, ... as fitted); ``process``:
    which of the model's processes (default: the training mixture), or with ``params`` (GeV,
    e.g. ``{"m_gluino": 1600}``) a parameter point of that family (``force``: also outside the
    trained range); ``cocktail``: processes in proportion to their cross sections; ``where``:
    a region expression (``"met > 500 and n_bjets >= 1"``, docs/conditioning.md); ``channel``:
    keep only events passing a Dark Machines channel.  The same ``seed`` gives the same events
    (at the same thread count).  ``refine``: use the model directory's refiner (:func:`refine`;
    None = when it has a valid one, True = it must, False = never); ``refine_mode``:
    ``"reject"`` (keep or drop whole events: unweighted), ``"reject-uncapped"`` (the kept
    events above the cap weighted w / cap), ``"weights"`` (keep every event,
    the refiner's factor min(w, cap) in its ``weight``: 3-5x faster than rejection,
    docs/models.md) or ``"weights-uncapped"`` (the factor w, not clipped at the cap).  With ``output``
    the events are streamed to that file and its path is returned.
    """
    from fastmc.devices import resolve_device
    from fastmc.threads import torch_threads
    from fastmc.workflows.generate import _refiner, generate_events
    from fastmc.workflows.generate import generate as _generate

    what = {"prior": prior, "process": process, "params": params, "force": force,
            "cocktail": cocktail, "where": where, "channel": channel, "batch_size": batch_size,
            "seed": seed}
    with torch_threads(threads):
        if output is not None:
            _generate(model, output, n, device=device, progress=progress, refine=refine,
                      refine_mode=refine_mode, **what)
            return Path(output)
        refiner = _refiner(model, refine, prior)
        dev = resolve_device(device)
        loaded = load_model(model, device=str(dev)) if isinstance(model, str | os.PathLike) \
            else model.to(dev).eval()
        parts = []
        for batch in generate_events(loaded, n, refiner=refiner, refine_mode=refine_mode, **what):
            parts.append(batch)
            if progress is not None:
                progress(len(batch))
    return Events.concatenate(parts) if parts else Events.empty()




def refine(model_dir: PathLike, training: Events | PathLike | Iterable[PathLike], *,
           events: int | None = None, held_out: int = 100_000, stages: int = 2, max_iter: int = 300,
           cap_quantile: float = 0.99, seed: int = 0, prior: str = "normal",
           threads: int | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Fit the classifier refinement of the one-process model in ``model_dir`` on its training
    events (``training``: Events, the model's event store, or event files) and store it there; :func:`generate`
    then keeps or drops whole events with it (docs/models.md, "Classifier refinement").
    ``prior``: the latent prior generation will use (a VAE's); the other keywords are
    :class:`~fastmc.workflows.refine.RefineConfig`'s.  Returns what the fit measured (kept
    share, clipped share, trees and validation log-loss of each stage, marginal closure).
    Never fit it on the sample you evaluate against."""
    from fastmc.workflows.refine import RefineConfig, refine_model_dir

    config = RefineConfig(events=events, held_out=held_out, stages=stages, max_iter=max_iter,
                          cap_quantile=cap_quantile, seed=seed, prior=prior)
    if isinstance(training, str | os.PathLike):
        training = [training]
    elif not isinstance(training, Events):
        training = list(training)
    return dict(refine_model_dir(model_dir, training, config=config, threads=threads,
                                 overwrite=overwrite).info)
