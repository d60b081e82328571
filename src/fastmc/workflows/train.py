"""The training loop of every :class:`~fastmc.models.base.GenerativeModel`.

:func:`train_model` is model-agnostic: Adam on :meth:`GenerativeModel.training_loss`, the
validation loss after every epoch, early stopping on it, and after every epoch the files of
the model directory (written by :class:`fastmc.models.modeldir.ModelDir`, atomically):

``weights.safetensors``     the best weights so far (lowest validation loss): what
                            ``fastmc generate`` uses
``checkpoint.*``            the latest weights and Adam state, epoch and counters (``--resume``)
``history.json``            one record per epoch: losses and their parts, seconds, lr
``config.json``             model and training settings, fastmc version, data provenance

A NaN or infinite loss stops training with :class:`TrainingDivergedError`; the files of the
last good epoch are left untouched.  The same seed gives the same weights: the initial
weights come from ``seed``, and each epoch's batches and noise from (``seed``, epoch), so a
resumed run continues exactly as an uninterrupted one would.

The data side (an event store, the balanced loader, the ``val`` split) is
:func:`fastmc.workflows.train_store.train_from_store`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from fastmc.config import derive_seed
from fastmc.data.batch import RawBatch
from fastmc.devices import resolve_device
from fastmc.errors import ConfigError
from fastmc.models.base import GenerativeModel
from fastmc.models.modeldir import ModelDir
from fastmc.workflows.train_config import TrainConfig, TrainingDivergedError, TrainResult

__all__ = ["TrainConfig", "TrainResult", "TrainingDivergedError", "epoch_seed", "train_model"]


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    """Seed of stream ``stream`` (1: training noise, 2: validation noise) of ``epoch``
    (:func:`fastmc.config.derive_seed`)."""
    return derive_seed(seed, "epoch", epoch, stream)


@dataclasses.dataclass
class _Progress:
    """Where training stands: the epochs done and the early-stopping counters."""

    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    epoch: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    bad: int = 0

    def status(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "best_val_loss": self.best_val,
                "best_epoch": self.best_epoch, "bad_epochs": self.bad, "history": self.history}


def _resume(mdir: ModelDir, model: GenerativeModel, opt: torch.optim.Optimizer,
            device: torch.device) -> _Progress:
    status = mdir.read_checkpoint(model, opt, device)
    return _Progress(history=list(status["history"]), epoch=int(status["epoch"]),
                     best_val=float(status["best_val_loss"]),
                     best_epoch=int(status["best_epoch"]), bad=int(status["bad_epochs"]))


def _train_epoch(
    model: GenerativeModel,
    opt: torch.optim.Optimizer,
    batches: Iterable[RawBatch],
    gen: torch.Generator,
    device: torch.device,
    epoch: int,
    mdir: ModelDir,
    progress: Callable[[int], None] | None,
) -> tuple[float, dict[str, float], int]:
    """One pass of Adam over ``batches``: mean loss, mean parts, events seen."""
    total, n, parts = 0.0, 0, {}
    for step, raw in enumerate(batches, start=1):
        raw = raw.to(device)
        loss, p = model.training_loss(raw, generator=gen)
        value = float(loss.detach())
        if not math.isfinite(value):
            last = (f"the last good checkpoint (epoch {epoch - 1}) is kept in {mdir.path}"
                    if epoch > 1 else "no checkpoint was written")
            raise TrainingDivergedError(
                f"training loss became {value} at epoch {epoch}, batch {step}; {last}. "
                "Try a lower --lr, a smaller --beta, or standardize: true in model_config."
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        b = len(raw)
        total += value * b
        n += b
        for k, v in p.items():
            parts[k] = parts.get(k, 0.0) + v * b
        if progress is not None:
            progress(1)
    if n == 0:
        raise ConfigError("the training loader yielded no events")
    return total / n, {k: v / n for k, v in parts.items()}, n


def _validate(
    model: GenerativeModel, batches: Iterable[RawBatch], device: torch.device, seed: int
) -> tuple[float, dict[str, float]]:
    """Event-weighted mean loss and parts over ``batches`` (eval mode, no gradients)."""
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    total, n = 0.0, 0
    parts: dict[str, float] = {}
    with torch.no_grad():
        for raw in batches:
            raw = raw.to(device)
            loss, p = model.training_loss(raw, generator=gen)
            b = len(raw)
            total += float(loss) * b
            for k, v in p.items():
                parts[k] = parts.get(k, 0.0) + v * b
            n += b
    model.train()
    if n == 0:
        raise ConfigError("no validation events; prepare the store with --val > 0")
    return total / n, {k: v / n for k, v in parts.items()}


def _run_epoch(
    model: GenerativeModel,
    opt: torch.optim.Optimizer,
    state: _Progress,
    epoch: int,
    train_batches: Callable[[int], Iterable[RawBatch]],
    val_batches: Callable[[], Iterable[RawBatch]],
    config: TrainConfig,
    mdir: ModelDir,
    device: torch.device,
    progress: Callable[[int], None] | None,
    describe: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train and validate one epoch, update ``state``, write the files (``describe()``
    writes config.json, before the checkpoint that makes the run resumable); the record."""
    te = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(epoch_seed(config.seed, epoch, 1))
    train_loss, train_parts, n = _train_epoch(
        model, opt, train_batches(epoch), gen, device, epoch, mdir, progress
    )
    val_loss, val_parts = _validate(model, val_batches(), device, epoch_seed(config.seed, 0, 2))
    if not math.isfinite(val_loss):
        raise TrainingDivergedError(
            f"validation loss became {val_loss} at epoch {epoch}; the last good checkpoint "
            f"(epoch {epoch - 1}) is kept in {mdir.path}. Try a lower --lr."
        )
    improved = val_loss < state.best_val - config.min_delta
    if improved:
        state.best_val, state.best_epoch, state.bad = val_loss, epoch, 0
        mdir.write_weights(model)
    else:
        state.bad += 1
    record = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
              "train_parts": train_parts, "val_parts": val_parts, "events": n,
              "seconds": time.perf_counter() - te, "lr": config.lr, "best": improved}
    state.history.append(record)
    state.epoch = epoch
    mdir.write_history(state.history)
    if describe is not None:
        describe()
    mdir.write_checkpoint(model, opt, state.status())
    return record


def train_model(
    model: GenerativeModel,
    train_batches: Callable[[int], Iterable[RawBatch]],
    val_batches: Callable[[], Iterable[RawBatch]],
    config: TrainConfig,
    model_dir: str | os.PathLike[str],
    *,
    data: Mapping[str, Any] | None = None,
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train ``model`` and keep the best weights in ``model_dir`` (see the module docstring).

    ``train_batches(epoch)`` returns the RawBatches of one epoch (deterministic per epoch);
    ``val_batches()`` the validation batches.  ``progress(1)`` is called after each training
    batch, ``on_epoch(record)`` after each epoch with the history record (``epoch``,
    ``train_loss``, ``val_loss``, their parts, ``seconds``, ``best``).  ``model.fit_data``
    must already have been called.  With ``resume=True`` training continues from the
    checkpoint in ``model_dir`` (the model must have been built with the same config).
    Raises :class:`TrainingDivergedError` on a NaN/infinite loss.
    """
    mdir = ModelDir(model_dir)
    created = not mdir.path.exists()
    mdir.create()
    try:
        return _train(model, train_batches, val_batches, config, mdir, data=data, resume=resume,
                      progress=progress, on_epoch=on_epoch)
    except BaseException:
        # a run that fails before its first checkpoint leaves nothing behind (no config.json
        # without weights); a later failure keeps the last good epoch's files
        if created and not any(mdir.path.iterdir()):
            mdir.path.rmdir()
        raise


def _train(
    model: GenerativeModel,
    train_batches: Callable[[int], Iterable[RawBatch]],
    val_batches: Callable[[], Iterable[RawBatch]],
    config: TrainConfig,
    mdir: ModelDir,
    *,
    data: Mapping[str, Any] | None,
    resume: bool,
    progress: Callable[[int], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
) -> TrainResult:
    device = resolve_device(config.device)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    state = _resume(mdir, model, opt, device) if resume else _Progress()
    if resume:  # the stored settings, with an explicitly raised epoch limit
        mdir.write_config(model, train_config=config, data=data)
    t0 = time.perf_counter()
    stopped = "epochs"
    start = state.epoch + 1
    if resume and config.patience and state.bad >= config.patience:
        stopped, start = "early_stopping", config.epochs + 1
    for epoch in range(start, config.epochs + 1):
        # config.json only once there are weights to describe (a failed run leaves none)
        describe = (lambda: mdir.write_config(model, train_config=config, data=data)) if (
            epoch == start and not resume) else None
        record = _run_epoch(model, opt, state, epoch, train_batches, val_batches, config, mdir,
                            device, progress, describe)
        if on_epoch is not None:
            on_epoch(record)
        if config.patience and state.bad >= config.patience:
            stopped = "early_stopping"
            break
        if config.max_minutes is not None and time.perf_counter() - t0 > 60 * config.max_minutes:
            stopped = "time"
            break
    # the model directory ends with the best weights loaded into the returned model
    if mdir.has_weights():
        mdir.read_weights(model, device)
    model.eval()
    return TrainResult(model, state.history, state.best_epoch, state.best_val, stopped,
                       time.perf_counter() - t0)
