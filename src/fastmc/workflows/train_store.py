"""Training from an event store: the data side of ``fastmc train``.

:func:`train_from_store` opens a store made by ``fastmc prepare``, builds the model (or reads
it back with ``resume``), fits its data-dependent state on training events, and runs
:func:`fastmc.workflows.train.train_model` with the balanced loader
(:class:`fastmc.data.loader.EventLoader`) on the ``train`` split and the ``val`` split for
validation.  The model directory records the store's provenance and each process's
training-sample weights (what :mod:`fastmc.workflows.generate` gives generated events).
Started by ``torchrun`` (``WORLD_SIZE`` > 1) it joins the other ranks first
(:mod:`fastmc.workflows.distributed`); each rank then reads its own part of the stream.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from fastmc.config import from_dict
from fastmc.data.batch import RawBatch, cat_batches, raw_from_events
from fastmc.devices import resolve_device
from fastmc.models.base import GenerativeModel, build_model
from fastmc.models.modeldir import ModelDir
from fastmc.workflows import distributed
from fastmc.workflows.resume import resume_settings
from fastmc.workflows.train import train_model
from fastmc.workflows.train_config import TrainConfig, TrainResult

__all__ = ["store_batches", "train_from_store"]


def store_batches(
    events_list: list[Any], batch_size: int, limit: int, device: torch.device | str = "cpu"
) -> Iterator[RawBatch]:
    """Sequential RawBatches over (memory-mapped) Events, at most ``limit`` events in all."""
    left = limit
    for ev in events_list:
        for s in range(0, len(ev), batch_size):
            if left <= 0:
                return
            part = ev[s : s + min(batch_size, left)]
            left -= len(part)
            yield raw_from_events(part, device=device)


def _provenance(store: Any, process: str | None) -> dict[str, Any]:
    meta = store.meta
    return {
        "store": str(Path(store.path).resolve()),
        "store_schema_version": meta.get("schema_version"),
        "store_seed": meta.get("seed"),
        "fractions": meta.get("fractions"),
        "counts": meta.get("counts"),
        "sources": [
            {k: s.get(k) for k in ("name", "sha256", "events", "size")} for s in store.sources
        ],
        "process": process,
    }


def _process_info(store: Any, processes: tuple[str, ...]) -> dict[str, Any]:
    xsec = store.meta.get("cross_section_weight", {})
    out = {}
    for p in processes:
        out[p] = {
            "train_events": store.n_events("train", p),
            "train_weight_sum": store.weight_sum("train", p),
            # sigma x 10/fb summed over every split: what a generated sample should total
            "cross_section_weight": float(xsec.get(p, store.weight_sum("train", p))),
        }
        params = (store.meta.get("process_params") or {}).get(p)
        if params:  # simulation parameters of the point (fastmc simulate, kept by prepare)
            out[p]["params"] = dict(params)
    return out


def _split_events(store: Any, split: str, processes: tuple[str, ...]) -> list[Any]:
    """Events of ``split`` per process, process codes re-indexed into ``processes``."""
    out = []
    for i, p in enumerate(processes):
        ev = store.events(split, p)
        out.append(dataclasses.replace(ev, process_code=ev.process_code * 0 + i,
                                       process_names=processes))
    return out


def _fit_quotas(events_list: list[Any], n: int) -> list[tuple[Any, int]]:
    """(events, how many of them) per process for the model's data-dependent state (pattern
    tables, standardisation): ``n`` shared evenly, what a small process leaves going to the
    others (smallest first).  Taking the first ``n`` of the store in process order instead
    left every process after a large first one out of the fit (a 1M-event first process:
    the second process's pattern table empty, its generation refused; session 13)."""
    quota = [0] * len(events_list)
    left = n
    for j, i in enumerate(sorted(range(len(events_list)), key=lambda i: len(events_list[i]))):
        quota[i] = min(len(events_list[i]), left // (len(events_list) - j))
        left -= quota[i]
    return list(zip(events_list, quota, strict=True))


def _loader_batches(store: Any, processes: tuple[str, ...], config: TrainConfig):
    """``train_batches(epoch)`` of the balanced loader, process codes -> the model's."""
    from fastmc.data.loader import EventLoader

    store_idx = [store.process_index(p) for p in processes]
    remap = torch.full((len(store.processes),), -1, dtype=torch.long)
    remap[store_idx] = torch.arange(len(processes))
    loader = EventLoader(store, "train", batch_size=distributed.local_batch(config.batch_size),
                         batches_per_epoch=config.batches_per_epoch, mode=config.loader_mode,
                         seed=config.seed, processes=list(processes))

    def train_batches(epoch: int) -> Iterator[RawBatch]:
        loader.set_epoch(epoch)
        for raw in loader:
            raw.process = remap[raw.process]
            yield raw

    return train_batches


def _build(store: Any, mdir: ModelDir, model_name: str | None,
           model_config: Mapping[str, Any] | None, config: TrainConfig | Mapping[str, Any] | None,
           resume: bool) -> tuple[GenerativeModel, TrainConfig]:
    """The model to train (fresh, or as recorded in ``mdir`` with ``resume``) and its settings."""
    saved_info: dict[str, Any] = {}
    if resume:  # the stored run wins; a request that differs from it is an error
        model_name, model_config, config = resume_settings(
            mdir.path, model_name=model_name, model_config=model_config, config=config
        )
        saved_info = dict(mdir.read_config().get("info") or {})
    elif not isinstance(config, TrainConfig):
        config = from_dict(TrainConfig, config)
    model_name = model_name or "beta-vae"
    if config.process is not None:
        store.process_index(config.process)  # ValueError for an unknown process
    processes = store.processes if config.process is None else (config.process,)
    torch.manual_seed(config.seed)
    model = build_model(model_name, dict(model_config or {}), processes=processes)
    model.info = {**saved_info, "processes": _process_info(store, processes)}
    return model, config


def train_from_store(
    store_path: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    *,
    model_name: str | None = None,
    model_config: Mapping[str, Any] | None = None,
    config: TrainConfig | Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model_name`` on an event store's ``train`` split, validate on its ``val`` split.

    ``model_name`` (default ``"beta-vae"``); ``model_config`` overrides the model's default
    settings (dict); ``config`` is a TrainConfig or a dict of its fields.  With ``resume``
    the run stored in ``model_dir`` continues exactly: its settings win, and a setting given
    here that differs from the stored one raises
    :class:`~fastmc.workflows.resume.ResumeConflictError` (``epochs`` may raise the limit).
    See :func:`fastmc.workflows.train.train_model` for the rest.
    """
    device = (config.get("device") if isinstance(config, Mapping)
              else getattr(config, "device", None)) or "auto"
    with distributed.process_group(device):
        return _train(store_path, model_dir, model_name, model_config, config, resume, progress,
                      on_epoch)


def _train(store_path: str | os.PathLike[str], model_dir: str | os.PathLike[str],
           model_name: str | None, model_config: Mapping[str, Any] | None,
           config: TrainConfig | Mapping[str, Any] | None,
           resume: bool, progress: Callable[[int], None] | None,
           on_epoch: Callable[[dict[str, Any]], None] | None) -> TrainResult:
    from fastmc.data.store import open_store

    store = open_store(store_path)
    mdir = ModelDir(model_dir)
    model, config = _build(store, mdir, model_name, model_config, config, resume)
    processes = model.processes
    if not resume:
        fit = [b for ev, k in _fit_quotas(_split_events(store, "train", processes), config.fit_events)
               for b in store_batches([ev], config.fit_events, k)]
        if fit:
            model.fit_data(cat_batches(fit))
    val_events = _split_events(store, "val", processes)
    device = resolve_device(distributed.rank_device(config.device))

    def val_batches() -> Iterable[RawBatch]:
        per = max(1, config.val_events // max(1, len(val_events)))
        for ev in val_events:
            yield from store_batches([ev], config.batch_size, per, device)

    return train_model(model, _loader_batches(store, processes, config), val_batches, config,
                       model_dir, data=_provenance(store, config.process), resume=resume,
                       progress=progress, on_epoch=on_epoch)
