"""The Python API: one function per pipeline step, re-exported as ``fastmc.<name>``.

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

from fastmc.events import Events

if TYPE_CHECKING:
    from fastmc.evaluate.report import Report
    from fastmc.models.base import GenerativeModel
    from fastmc.workflows.train_config import TrainResult

__all__ = [
    "evaluate",
    "generate",
    "load_model",
    "prepare",
    "read_events",
    "simulate",
    "train",
    "write_events",
]

PathLike = str | os.PathLike[str]
EventsLike = Events | PathLike | Iterable[PathLike]


def _is_store(path: Any) -> bool:
    return isinstance(path, str | os.PathLike) and (Path(path) / "meta.json").is_file()


def read_events(source: EventsLike, *, split: str = "test", **kwargs: Any) -> Events:
    """Events from files (paths or globs: ``.csv``/``.csv.gz`` in MeV, ``.parquet``, ``.root``),
    from an event store directory (its ``split``: ``"train"``, ``"val"`` or ``"test"``), or
    Events (returned as they are).  ``kwargs`` go to :func:`fastmc.io.read_events`
    (``max_objects``, ``on_error``, ...).  Returns Events in GeV.
    """
    if isinstance(source, Events):
        return source
    if _is_store(source):
        from fastmc.data.store import open_store

        return open_store(source).events(split)
    from fastmc.io import read_events as _read

    return _read(source, **kwargs)


def write_events(path: PathLike, events: Events | Iterable[Events], *,
                 meta: dict[str, Any] | None = None) -> Path:
    """Write Events (or batches of them) atomically to ``path``; the format follows the
    extension (``.csv``/``.csv.gz`` Dark Machines in MeV, ``.parquet``, ``.root``).  Returns
    the path."""
    from fastmc.io import write_events as _write

    _write(path, events, meta=meta)
    return Path(path)


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
             seed: int = 0, process: str | None = None, channel: str | None = None,
             batch_size: int = 10_000, output: PathLike | None = None, device: str = "auto",
             threads: int | None = None,
             progress: Callable[[int], None] | None = None) -> Events | Path:
    """``n`` events generated by ``model`` (a model directory or a loaded model), GeV.

    ``prior``: the latent prior of a VAE (``"normal"``, ``"gmm"``, ... as fitted); ``process``:
    which of the model's processes (default its first); ``channel``: keep only events passing
    a Dark Machines channel.  The same ``seed`` gives the same events (at the same thread
    count).  With ``output`` the events are streamed to that file and its path is returned.
    """
    from fastmc.devices import resolve_device
    from fastmc.threads import torch_threads
    from fastmc.workflows.generate import generate as _generate
    from fastmc.workflows.generate import generate_events

    with torch_threads(threads):
        if output is not None:
            _generate(model, output, n, prior=prior, process=process, batch_size=batch_size,
                      seed=seed, device=device, channel=channel, progress=progress)
            return Path(output)
        dev = resolve_device(device)
        loaded = load_model(model, device=str(dev)) if isinstance(model, str | os.PathLike) \
            else model.to(dev).eval()
        parts = []
        for batch in generate_events(loaded, n, prior=prior, process=process,
                                     batch_size=batch_size, seed=seed, channel=channel):
            parts.append(batch)
            if progress is not None:
                progress(len(batch))
    return Events.concatenate(parts) if parts else Events.empty()


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
